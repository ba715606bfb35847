"""The padding-free layout (`litforge.packing`): hand-made packing, and log-probs and gradients equal the padded
forwards on a tiny Llama, for shared-prompt and different-prompt batches of very different lengths."""

from contextlib import nullcontext

import pytest
import torch
from litforge.plugins.position import CoPE
from litforge.plugins.reference import AdaptersDisabled, PrecomputedReference
from preference_helpers import hand_made_pairs, make

from litforge.errors import ConfigError
from litforge.packing import BlockGroups, pack_pairs, packed_sdpa_attention, packing_refusal


def test_shared_prompt_pairs_pack_into_one_row_by_hand():
    packed = pack_pairs(hand_made_pairs())
    assert packed.input_ids.tolist() == [[1, 2, 11, 12, 13, 21, 22, 3, 4, 5, 14, 23, 24, 25]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 2, 3, 0, 1, 2, 3, 3, 4, 5]]
    assert packed.blocks == [(0, 2, 5, 7), (7, 3, 4, 7)]
    # row-major over the 2B rows: chosen 0, chosen 1, rejected 0, rejected 1
    assert packed.targets.tolist() == [11, 12, 13, 14, 21, 22, 23, 24, 25]
    assert packed.rows.tolist() == [0, 0, 0, 1, 2, 2, 3, 3, 3]
    # each response's first token is predicted by its prompt's last token
    assert packed.source.tolist() == [1, 2, 3, 9, 1, 5, 9, 11, 12]


def test_different_prompts_pack_each_sequence_alone():
    packed = pack_pairs(hand_made_pairs(), shared_prompt=False)
    assert packed.input_ids.tolist() == [[1, 2, 11, 12, 13, 3, 4, 5, 14, 1, 2, 21, 22, 3, 4, 5, 23, 24, 25]]
    assert packed.blocks == [(0, 0, 5, 5), (5, 0, 4, 4), (9, 0, 4, 4), (13, 0, 6, 6)]
    assert packed.source.tolist() == [1, 2, 3, 7, 10, 11, 15, 16, 17]
    mixed = hand_made_pairs()
    mixed["input_ids"][2, 0] = 7  # rejected 0 has another prompt: no pair shares
    assert pack_pairs(mixed).blocks == packed.blocks


def block_diagonal_mask(packed) -> torch.Tensor:
    """The (N, N) mask the packed attention stands for, built the slow way."""
    n = packed.input_ids.size(1)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for start, prompt, split, length in packed.blocks:
        for query in range(length):
            for key in range(query + 1):
                rejected_sees_chosen = query >= split and prompt <= key < split
                mask[start + query, start + key] = not rejected_sees_chosen
    return mask


@pytest.mark.parametrize("shared", [True, False])
def test_packed_attention_equals_one_masked_attention(shared):
    packed = pack_pairs(hand_made_pairs(), shared_prompt=shared)
    packed.groups = BlockGroups.of(packed)
    n = packed.input_ids.size(1)
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 4, generator=generator, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    got, _ = packed_sdpa_attention(None, q, k, v, None, packed_pairs=packed)
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=block_diagonal_mask(packed))
    full = full.transpose(1, 2)
    assert torch.allclose(got, full, atol=1e-12)
    weights = torch.randn(full.shape, generator=generator, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((got * weights).sum(), (q, k, v)),
                    torch.autograd.grad((full * weights).sum(), (q, k, v))):
        assert torch.allclose(a, b, atol=1e-12)


def uneven_batch(data, shared: bool) -> dict:
    """Four pairs of very different prompt and response lengths (1 to 24 characters)."""
    raw = [("1+1=", "2", "three hundred and one"), ("What is 12+30?", "forty-two", "24"),
           ("x", "a longer answer than all", "b"), ("Say hi.", "hi", "hello there")]
    samples = [data.encode_pair({"prompt": p, "chosen": c, "rejected": r}) for p, c, r in raw]
    if not shared:  # pair 0's rejected answers pair 1's prompt
        samples[0] = dict(samples[0], rejected_input_ids=samples[1]["rejected_input_ids"],
                          rejected_labels=samples[1]["rejected_labels"])
    for index, sample in enumerate(samples):
        sample["index"] = index
    return data.collate(samples)


@pytest.mark.parametrize("shared", [True, False])
def test_padding_free_logprobs_and_gradients_equal_the_padded_forwards(tiny_backbone, shared):
    module, data = make(backbone=tiny_backbone)
    batch = uneven_batch(data, shared)
    results = {}
    for padding_free, shared_prompt in ((True, True), (False, True), (False, False)):
        module.padding_free, module.shared_prompt = padding_free, shared_prompt
        module.model.zero_grad()
        out = module.pair_logprobs(module.model, batch)
        (out.chosen.sum() - 2 * out.rejected.sum()).backward()
        results[padding_free, shared_prompt] = out, [p.grad.clone() for p in module.model.parameters()]
    assert module.model.config._attn_implementation == "sdpa"  # the packed attention was selected only inside
    (packed, packed_grads), *padded = results.values()
    for out, grads in padded:
        assert torch.allclose(packed.chosen, out.chosen, atol=1e-5, rtol=0)
        assert torch.allclose(packed.rejected, out.rejected, atol=1e-5, rtol=0)
        assert torch.equal(packed.chosen_tokens, out.chosen_tokens)
        assert torch.equal(packed.rejected_tokens, out.rejected_tokens)
        for a, b in zip(packed_grads, grads):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    concatenated = results[False, False][0]  # the same token order: row-major over the 2B rows
    assert torch.equal(packed.targets, concatenated.targets) and torch.equal(packed.rows, concatenated.rows)
    assert torch.allclose(packed.logits, concatenated.logits, atol=1e-5)


def test_equal_blocks_run_as_one_batched_call():
    batch = hand_made_pairs()
    batch = {key: torch.cat([value[:1], value[:1], value[2:3], value[2:3]]) for key, value in batch.items()}
    packed = pack_pairs(batch)  # two identical pairs: one group, back to back
    groups = BlockGroups.of(packed)
    assert groups.shapes == [(2, 5, 7)] and groups.members == [[0, 1]] and groups.lengths == [7, 7]


def test_models_that_cannot_pack_say_why_and_take_padded_rows(tiny_backbone):
    module, _ = make(backbone=tiny_backbone)
    assert packing_refusal(module.model, 64) is None
    checkpointed, _ = make(backbone=tiny_backbone, gradient_checkpointing=True)
    assert "checkpointing" in packing_refusal(checkpointed.model, 64)
    cope, data = make(backbone=tiny_backbone, position=CoPE(npos_max=16))
    assert "CoPE" in packing_refusal(cope.model, 64)
    batch = uneven_batch(data, True)
    padded = cope.pair_logprobs(cope.model, batch)  # falls back: the same numbers as without padding_free
    cope.padding_free = False
    assert torch.allclose(padded.chosen, cope.pair_logprobs(cope.model, batch).chosen)
    assert len(cope.refusals) == 1


def test_a_model_whose_attention_never_reads_the_blocks_takes_padded_rows(tiny_backbone, monkeypatch):
    module, data = make(backbone=tiny_backbone)
    batch = uneven_batch(data, True)
    expected = module.pair_logprobs(module.model, batch)
    monkeypatch.setattr("litforge.packing.packed_attention", lambda model: nullcontext())
    with pytest.warns(UserWarning, match="packed attention was not reached"):
        got = module.pair_logprobs(module.model, batch)
    assert torch.allclose(got.chosen, expected.chosen, atol=1e-5)
    assert torch.allclose(got.rejected, expected.rejected, atol=1e-5)


def test_precomputed_reference_table_equals_the_padded_one(tiny_backbone, tmp_path):
    tables = []
    for padding_free in (True, False):
        module, data = make(backbone=tiny_backbone, padding_free=padding_free,
                            reference=PrecomputedReference(str(tmp_path / str(padding_free))))
        tables.append(module.reference.compute(module, data.train_dataloader()))
    assert torch.allclose(*tables, atol=1e-5)


def test_a_lora_policy_packs_and_its_adapters_disabled_reference_too(tiny_backbone):
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    module, data = make(backbone=tiny_backbone, lora=lora, reference=AdaptersDisabled())
    for parameter in module.model.parameters():  # adapters that change the output
        if parameter.requires_grad:
            torch.nn.init.normal_(parameter, std=0.5)
    batch = uneven_batch(data, True)
    packed = module.pair_logprobs(module.model, batch)
    packed_reference = module.reference.logprobs(module, batch, "train")
    module.padding_free = False
    padded = module.pair_logprobs(module.model, batch)
    assert torch.allclose(packed.chosen, padded.chosen, atol=1e-5)
    assert torch.allclose(packed_reference[1], module.reference.logprobs(module, batch, "train")[1], atol=1e-5)
    assert not torch.allclose(packed_reference[1], padded.rejected, atol=1e-3)  # the adapters were off


@pytest.mark.parametrize("padding_free", [True, False])
def test_lm_head_in_chunks_gives_the_same_logprobs_gradients_and_lazy_logits(tiny_backbone, padding_free):
    module, data = make(backbone=tiny_backbone, padding_free=padding_free)
    batch = uneven_batch(data, True)
    results = []
    for chunk in (None, 7):  # 7 does not divide the number of response positions
        module.lm_head_chunk = chunk
        module.model.zero_grad()
        out = module.pair_logprobs(module.model, batch)
        (out.chosen.sum() - 2 * out.rejected.sum()).backward()
        results.append((out, [p.grad.clone() for p in module.model.parameters()]))
    (whole, whole_grads), (chunked, chunked_grads) = results
    assert chunked.computed_logits is None  # not built unless a loss reads them
    assert torch.allclose(chunked.chosen, whole.chosen, atol=1e-5) and torch.allclose(chunked.rejected,
                                                                                      whole.rejected, atol=1e-5)
    for a, b in zip(chunked_grads, whole_grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert torch.allclose(chunked.logits, whole.logits, atol=1e-6)


def test_lm_head_chunk_must_be_positive(tiny_backbone):
    with pytest.raises(ConfigError, match="lm_head_chunk: must be >= 1"):
        make(backbone=tiny_backbone, lm_head_chunk=0)


def test_cringe_reads_the_logits_of_a_chunked_head(tiny_backbone):
    from litforge.lightning_modules import PairwiseCringe

    module, data = make(PairwiseCringe, backbone=tiny_backbone, lm_head_chunk=5)
    batch = uneven_batch(data, True)
    chunked = module.step(batch, "val", "val0", record=False)
    module.lm_head_chunk = None
    assert torch.allclose(chunked, module.step(batch, "val", "val0", record=False), atol=1e-5)


def test_a_batch_without_padding_stays_in_its_dense_layout(tiny_backbone, monkeypatch):
    module, data = make(backbone=tiny_backbone)
    sample = data.encode_pair({"prompt": "1+1=", "chosen": "two", "rejected": "six"})  # equal lengths
    batch = data.collate([dict(sample, index=0), dict(sample, index=1)])
    expected = module.pair_logprobs(module.model, uneven_batch(data, True))  # packs

    def refuse(*args):
        raise AssertionError("packed a batch without padding")

    monkeypatch.setattr("litforge.lightning_modules.preference.pack_pairs", refuse)
    assert module.pair_logprobs(module.model, batch).chosen.shape == (2,)
    assert expected.chosen.shape == (4,)
