"""The byte-level tokenizer, the locally trained BPE, and the backbone specs."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from litforge.backbones import LocalCheckpoint, TinyModel
from litforge.tokenizer import (
    byte_level_tokenizer,
    has_own_chat_template,
    load_tokenizer,
    trained_tokenizer,
    turn_end,
    user_turn,
)


def test_byte_tokenizer_round_trips_any_text(tokenizer):
    text = "héllo, wörld! 数字 123\n\ttabs"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))  # one token per byte, id = byte value
    assert tokenizer.decode(ids) == text
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (256, 257, 258)
    assert len(tokenizer) == 259


CORPUS = ["weather tomorrow by city: 2\nRequest: weather in Lima next day?", "Thought: Lima is a city; tomorrow"] * 20


def test_trained_tokenizer_makes_frequent_words_one_token_and_still_round_trips_any_text(tmp_path):
    tokenizer = trained_tokenizer(CORPUS, 400)
    ids = tokenizer("weather tomorrow by city: 2", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["weather", "Ġ", "tomorrow", "Ġ", "by", "Ġ", "city", ":", "Ġ", "2"]
    # a word is the same token at the start of a line as after a space
    ids = tokenizer("weather\n weather", add_special_tokens=False)["input_ids"]
    assert ids[0] == ids[3] and len(ids) == 4
    text = "zebra héllo 数字 Lima\t!"  # unseen words and characters: byte by byte
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text and len(ids) > len(text.split())
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert len(tokenizer) <= 400 and tokenizer.pad_token_id == len(tokenizer) - 1
    assert tokenizer.chat_template == byte_level_tokenizer().chat_template
    assert trained_tokenizer(CORPUS, 400).get_vocab() == tokenizer.get_vocab()  # deterministic
    tokenizer.save_pretrained(tmp_path)
    assert load_tokenizer(tmp_path).get_vocab() == tokenizer.get_vocab()


def test_trained_tokenizer_tokenizes_a_prompt_and_its_continuation_as_the_whole_text():
    tokenizer = trained_tokenizer(CORPUS, 400)
    whole = tokenizer("Request: weather in Lima next day?\nAction: 2", add_special_tokens=False)["input_ids"]
    for cut in ("Request:", "Request: weather", "Request: weather in Lima next day?\nAction:"):
        text = "Request: weather in Lima next day?\nAction: 2"
        head = tokenizer(cut, add_special_tokens=False)["input_ids"]
        tail = tokenizer(text[len(cut):], add_special_tokens=False)["input_ids"]
        assert head + tail == whole


def test_trained_tokenizer_refuses_a_vocabulary_without_room_for_merges():
    with pytest.raises(ValueError, match="vocab_size must exceed"):
        trained_tokenizer(CORPUS, 259)


def test_chat_template_marks_roles_and_ends_turns_with_eos(tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<|bos|><user>\nhi<|eos|>\n<assistant>\nyo<|eos|>\n"
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<assistant>\n")


def test_tokenizer_saves_and_loads_from_disk(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again("abc")["input_ids"] == tokenizer("abc")["input_ids"]
    assert again.chat_template == tokenizer.chat_template
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")


def test_tiny_model_is_seeded_and_sized(tokenizer, tiny_backbone):
    build = lambda spec: spec.build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                                    tokenizer.eos_token_id)
    first, second = build(tiny_backbone), build(tiny_backbone)
    assert type(first).__name__ == "LlamaForCausalLM"
    assert first.config.vocab_size == 259 and first.config.hidden_size == 32
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    other = build(TinyModel(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, seed=1))
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)


@pytest.mark.parametrize("model_type, attention", [("llama", "sdpa"), ("mistral", "sdpa"), ("qwen2", "sdpa"),
                                                   ("qwen3", "sdpa"), ("gemma2", "eager"), ("gemma3_text", "sdpa"),
                                                   ("phi3", "sdpa")])
def test_tiny_model_builds_other_families(tokenizer, model_type, attention):
    model = TinyModel(model_type=model_type, hidden_size=32, num_hidden_layers=1, num_attention_heads=2).build(
        len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    assert model.config.model_type == model_type
    assert model.config._attn_implementation == attention  # the family's own default (Gemma 2 has no SDPA)
    assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 259)


def test_unknown_model_type_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match="unknown model_type 'lama'"):
        TinyModel(model_type="lama").build(259, 258, 256, 257)


def test_local_checkpoint_loads_without_network(tiny_model, tokenizer, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    loaded = LocalCheckpoint(str(tmp_path)).build(len(tokenizer), tokenizer.pad_token_id, None, None)
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.allclose(loaded(ids).logits, tiny_model(ids).logits)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        LocalCheckpoint(str(tmp_path / "nothing")).build(259, 258, None, None)
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), type(tiny_model))


def test_local_checkpoint_model_trains_with_dropout_active(tokenizer, tmp_path):
    """from_pretrained returns a model in eval mode; a LocalCheckpoint backbone is handed over in train mode."""
    TinyModel(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, config={"attention_dropout": 0.5}).build(
        len(tokenizer), tokenizer.pad_token_id, None, None).save_pretrained(tmp_path)
    model = LocalCheckpoint(str(tmp_path)).build(len(tokenizer), tokenizer.pad_token_id, None, None)
    assert all(module.training for module in model.modules())
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    torch.manual_seed(0)
    assert not torch.equal(model(ids).logits, model(ids).logits)  # dropout draws a new mask each pass


@pytest.mark.parametrize("name, end", [("llama", "<|eot_id|>"), ("qwen2", "<|im_end|>"), ("mistral", "</s>"),
                                       ("gemma3", "<end_of_turn>"), ("phi3", "<|end|>")])
def test_turn_end_is_what_the_template_writes_after_an_assistant_turn(name, end, tmp_path_factory):
    from family_helpers import family_checkpoint

    tokenizer = load_tokenizer(family_checkpoint(name, tmp_path_factory))
    assert turn_end(tokenizer) == end
    assert has_own_chat_template(tokenizer)
    text = user_turn(tokenizer, "hi")
    assert text == tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                                 tokenize=False)


def test_the_byte_level_template_is_not_a_models_own(tokenizer):
    assert not has_own_chat_template(tokenizer) and turn_end(tokenizer) == "<|eos|>"
    tokenizer = byte_level_tokenizer()
    tokenizer.chat_template = "{{ messages[0]['content'] }}"  # renders no assistant turn end
    assert has_own_chat_template(tokenizer) and turn_end(tokenizer) is None
    tokenizer.chat_template = "{{ raise_exception('user and assistant roles must alternate') }}"
    assert turn_end(tokenizer) is None


def test_local_checkpoint_takes_the_familys_attention(tmp_path_factory):
    from family_helpers import family_checkpoint

    for name, expected in [("llama", "sdpa"), ("gemma2", "eager")]:
        folder = family_checkpoint(name, tmp_path_factory)
        tokenizer = load_tokenizer(folder)
        model = LocalCheckpoint(str(folder)).build(len(tokenizer), tokenizer.pad_token_id, None, None)
        assert model.config._attn_implementation == expected
        eager = LocalCheckpoint(str(folder), attn_implementation="eager").build(len(tokenizer), 0, None, None)
        assert eager.config._attn_implementation == "eager"


def im_end_tokenizer():
    """The byte-level tokenizer with a Qwen-style template whose turn end (`<|im_end|>`) is not its eos."""
    tokenizer = byte_level_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    tokenizer.chat_template = ("{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|im_end|>\\n' }}"
                               "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")
    return tokenizer


def test_a_response_ends_with_the_templates_turn_end_then_eos():
    from litforge.data import encode_prompt_response
    from litforge.tokenizer import response_end_ids

    tokenizer = im_end_tokenizer()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert response_end_ids(tokenizer) == [im_end, tokenizer.eos_token_id]
    sample = encode_prompt_response(tokenizer, "q", "ab")
    assert sample["input_ids"][-4:] == [ord("a"), ord("b"), im_end, tokenizer.eos_token_id]
    assert sample["labels"][-4:] == sample["input_ids"][-4:]  # the model learns to close its turn
    plain = byte_level_tokenizer()
    assert response_end_ids(plain) == [plain.eos_token_id]  # its template ends a turn with eos: eos once


def test_preference_responses_end_with_the_turn_end_too(tmp_path):
    from litforge.datamodules import JSONLPreferenceDataModule

    data = JSONLPreferenceDataModule(train_path=str(tmp_path / "x.jsonl"))
    data.tokenizer = im_end_tokenizer()
    sample = data.encode_pair({"prompt": "q", "chosen": "a", "rejected": "b"})
    end = [data.tokenizer.convert_tokens_to_ids("<|im_end|>"), data.tokenizer.eos_token_id]
    assert sample["chosen_input_ids"][-3:] == [ord("a"), *end] and sample["rejected_input_ids"][-3:] == [ord("b"), *end]
