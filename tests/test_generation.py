"""Generation: cache equals no cache, stop strings, n samples and seeds, left padding, sharding."""

from __future__ import annotations

import torch

from litforge.generation import generate, shard

PROMPTS = ["12+34=", "hello world, this is longer", "a"]


def test_greedy_with_cache_equals_without(tiny_model, tokenizer):
    cached = generate(tiny_model, tokenizer, PROMPTS, temperature=0, max_new_tokens=12)
    plain = generate(tiny_model, tokenizer, PROMPTS, temperature=0, max_new_tokens=12, use_cache=False)
    assert cached.token_ids == plain.token_ids
    assert cached.new_tokens == plain.new_tokens == sum(len(ids[0]) for ids in cached.token_ids)


def test_left_padding_does_not_change_a_prompt_s_continuation(tiny_model, tokenizer):
    batched = generate(tiny_model, tokenizer, PROMPTS, temperature=0, max_new_tokens=10)
    for index, prompt in enumerate(PROMPTS):
        alone = generate(tiny_model, tokenizer, [prompt], temperature=0, max_new_tokens=10)
        assert alone.token_ids[0] == batched.token_ids[index]


def test_greedy_matches_hf_generate(tiny_model, tokenizer):
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]])
    tiny_model.generation_config.pad_token_id = tokenizer.pad_token_id
    reference = tiny_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
                                    eos_token_id=tokenizer.eos_token_id)[0, ids.size(1):].tolist()
    ours = generate(tiny_model, tokenizer, PROMPTS[:1], temperature=0, max_new_tokens=10).token_ids[0][0]
    assert ours == reference[:len(ours)]


def test_stop_string_cuts_text_and_tokens(tiny_model, tokenizer):
    free = generate(tiny_model, tokenizer, PROMPTS[:1], temperature=0, max_new_tokens=16)
    text = free.texts[0][0]
    start = next(k for k in range(2, len(text) - 1) if text[k:k + 2].isascii())
    stop = text[start:start + 2]  # a string the greedy continuation is known to produce
    cut = generate(tiny_model, tokenizer, PROMPTS[:1], temperature=0, max_new_tokens=16, stop=[stop, "never-there"])
    assert cut.stopped[0][0] == "stop"
    assert cut.texts[0][0] == text[:text.find(stop)]
    assert cut.texts[0][0].startswith(tokenizer.decode(cut.token_ids[0][0]))
    assert len(cut.token_ids[0][0]) < len(free.token_ids[0][0])


def test_eos_ends_a_row_and_is_not_returned(tokenizer):
    from litforge.backbones import TinyModel

    model = TinyModel(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).build(
        len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    with torch.no_grad():  # make eos the argmax everywhere
        model.lm_head = torch.nn.Linear(32, len(tokenizer), bias=True)
        model.lm_head.weight.zero_()
        model.lm_head.bias.zero_()
        model.lm_head.bias[tokenizer.eos_token_id] = 1.0
    out = generate(model, tokenizer, PROMPTS, temperature=0, max_new_tokens=5)
    assert all(ids == [[]] for ids in out.token_ids) and out.stopped == [["eos"]] * 3 and out.new_tokens == 0


def test_n_samples_seeded_and_varied(tiny_model, tokenizer):
    first = generate(tiny_model, tokenizer, PROMPTS, n=4, temperature=1.0, top_p=0.9, max_new_tokens=8, seed=3)
    again = generate(tiny_model, tokenizer, PROMPTS, n=4, temperature=1.0, top_p=0.9, max_new_tokens=8, seed=3)
    other = generate(tiny_model, tokenizer, PROMPTS, n=4, temperature=1.0, top_p=0.9, max_new_tokens=8, seed=4)
    assert first.texts == again.texts and first.texts != other.texts
    assert [len(texts) for texts in first.texts] == [4, 4, 4]
    assert len(set(first.texts[0])) > 1  # samples of one prompt differ
    assert tiny_model.training  # the model's mode is restored


def test_top_p_tiny_keeps_only_the_argmax(tiny_model, tokenizer):
    greedy = generate(tiny_model, tokenizer, PROMPTS, temperature=0, max_new_tokens=8)
    nucleus = generate(tiny_model, tokenizer, PROMPTS, temperature=1.0, top_p=1e-6, max_new_tokens=8, seed=9)
    assert nucleus.token_ids == greedy.token_ids


def test_shards_are_disjoint_and_cover_everything(tiny_model, tokenizer):
    prompts = [f"{i}+{i}=" for i in range(7)]
    shards = [shard(prompts, rank, 3) for rank in range(3)]
    assert sorted(i for part in shards for i in part) == list(range(7))


def test_continuation_logprobs_sum_the_continuation_tokens_batched_and_by_hand(tokenizer):
    import math

    import pytest
    from tool_helpers import HIDDEN, bigram_llama

    from litforge.generation import continuation_logprobs

    model = bigram_llama(tokenizer, {":": {" ": 5.0}, " ": {"a": 3.0, "c": 2.0}, "a": {"b": 5.0}})
    prompts, continuations = ["Tool:", "a longer prompt Tool:", "x:", "Tool:"], [" ab", " c", "", " ab"]
    batched = continuation_logprobs(model, tokenizer, prompts, continuations, batch_size=3)
    single = [continuation_logprobs(model, tokenizer, [p], [c])[0] for p, c in zip(prompts, continuations)]
    assert batched == pytest.approx(single, abs=1e-5) and batched[2] == 0.0 and batched[0] == batched[3]
    # the final RMSNorm scales a one-hot state by s = 1 / sqrt(1/HIDDEN + eps); V - k tokens keep logit 0
    s, vocab = 1 / math.sqrt(1 / HIDDEN + 1e-6), len(tokenizer)
    space = 5 * s - math.log(math.exp(5 * s) + vocab - 1)
    a = 3 * s - math.log(math.exp(3 * s) + math.exp(2 * s) + vocab - 2)
    c = 2 * s - math.log(math.exp(3 * s) + math.exp(2 * s) + vocab - 2)
    b = 5 * s - math.log(math.exp(5 * s) + vocab - 1)
    assert batched[0] == pytest.approx(space + a + b, abs=1e-3) and batched[1] == pytest.approx(space + c, abs=1e-3)
