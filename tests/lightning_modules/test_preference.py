"""PreferenceModule: the concatenated and shared-prompt forwards, reference sources, re-anchoring, LoRA."""

import math
from contextlib import nullcontext
from functools import partial

import lightning as L
import pytest
import torch
from preference_helpers import fit, make

from litforge.errors import ConfigError
from litforge.lightning_modules import DPONLL
from litforge.shared_prompt import share_prompts
from litforge.losses import sequence_logprobs
from litforge.plugins.position import Absolute, CoPE
from litforge.plugins.reference import AdaptersDisabled, PrecomputedReference

def test_concatenated_forward_equals_separate_forwards(tiny_backbone):
    module, data = make(backbone=tiny_backbone)
    samples = data.splits["train"][:3]
    batch = data.collate(samples)
    out = module.pair_logprobs(module.model, batch)
    for i, sample in enumerate(samples):
        for side, value in (("chosen", out.chosen[i]), ("rejected", out.rejected[i])):
            ids = torch.tensor([sample[f"{side}_input_ids"]])
            logits = module.model(input_ids=ids).logits
            expected, count = sequence_logprobs(logits, torch.tensor([sample[f"{side}_labels"]]))
            assert torch.allclose(value, expected[0], atol=1e-4)
            tokens = out.chosen_tokens[i] if side == "chosen" else out.rejected_tokens[i]
            assert tokens == count[0]


@pytest.mark.parametrize("attention", ["sdpa", "eager", "cope", "absolute", "lora"])
def test_shared_prompt_forward_equals_concatenated_forward(tiny_backbone, attention):
    """sdpa (also under a LoRA wrapper) takes the two-block path; eager and CoPE read the full 4-D mask; Absolute
    reads the position ids."""
    position = {"cope": CoPE(npos_max=16), "absolute": Absolute()}.get(attention)
    if attention in ("sdpa", "eager"):
        tiny_backbone.attn_implementation = attention
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]} if attention == "lora" else None
    module, data = make(backbone=tiny_backbone, position=position, lora=lora, padding_free=False)
    if attention == "cope":  # a trained-looking table, so positions matter
        for layer in module.model.model.layers:
            torch.nn.init.normal_(layer.self_attn.cope.pos_emb, std=1.0)
    raw = [("1+1=", "2", "three"), ("What is 12 + 30?", "42 it is", "24"), ("x", "a longer answer", "b"),
           ("Say hi.", "hi", "hello there")]  # prompts and responses of unequal lengths: padding in both layouts
    samples = [data.encode_pair({"prompt": p, "chosen": c, "rejected": r}) for p, c, r in raw]
    for index, sample in enumerate(samples):
        sample["index"] = index
    batch = data.collate(samples)
    assert share_prompts(batch) is not None
    shared = module.pair_logprobs(module.model, batch)
    module.shared_prompt = False
    plain = module.pair_logprobs(module.model, batch)
    for name in ("chosen", "rejected"):
        assert torch.allclose(getattr(shared, name), getattr(plain, name), atol=1e-5, rtol=0)
        assert torch.equal(getattr(shared, f"{name}_tokens"), getattr(plain, f"{name}_tokens"))
    order = lambda pair: torch.argsort(pair.rows * 10_000 + torch.arange(len(pair.rows)))  # noqa: E731
    assert torch.equal(shared.targets[order(shared)], plain.targets[order(plain)])
    assert torch.allclose(shared.logits[order(shared)], plain.logits[order(plain)], atol=1e-5)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_shared_prompt_gradients_equal_concatenated_gradients(tiny_backbone, checkpointing):
    module, data = make(backbone=tiny_backbone, gradient_checkpointing=checkpointing, padding_free=False)
    batch = data.collate(data.splits["train"][:4])
    grads = []
    for shared in (True, False):
        module.shared_prompt = shared
        module.model.zero_grad()
        out = module.pair_logprobs(module.model, batch)
        (out.chosen.sum() - 2 * out.rejected.sum()).backward()
        grads.append([p.grad.clone() for p in module.model.parameters()])
    assert module.model.config._attn_implementation == "sdpa"  # the two-block attention was selected only inside
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_two_block_path_falls_back_to_the_mask_when_attention_never_reads_it(tiny_backbone, monkeypatch):
    module, data = make(backbone=tiny_backbone, padding_free=False)
    batch = data.collate(data.splits["train"][:4])
    expected = module.pair_logprobs(module.model, batch)
    assert module.model.config._attn_implementation == "sdpa"
    # a model whose attention layers read a config the context manager does not switch
    monkeypatch.setattr("litforge.shared_prompt.pair_attention", lambda model: nullcontext())
    with pytest.warns(UserWarning, match="two-block attention was not reached"):
        got = module.pair_logprobs(module.model, batch)
    assert torch.allclose(got.chosen, expected.chosen, atol=1e-5) and torch.allclose(got.rejected, expected.rejected,
                                                                                         atol=1e-5)


def test_pairs_with_different_prompts_fall_back_to_the_concatenated_forward(tiny_backbone):
    module, data = make(backbone=tiny_backbone)
    first, second = data.splits["train"][:2]
    mixed = dict(first, rejected_input_ids=second["rejected_input_ids"], rejected_labels=second["rejected_labels"])
    batch = data.collate([mixed])
    assert share_prompts(batch) is None
    out = module.pair_logprobs(module.model, batch)
    ids = torch.tensor([second["rejected_input_ids"]])
    expected, _ = sequence_logprobs(module.model(input_ids=ids).logits, torch.tensor([second["rejected_labels"]]))
    assert torch.allclose(out.rejected, expected, atol=1e-4)


class CountingReference(PrecomputedReference):
    """A PrecomputedReference that counts the pairs it runs through the model."""

    def __init__(self, cache_dir: str):
        super().__init__(cache_dir)
        self.computed_pairs = 0

    def compute(self, module, loader):
        self.computed_pairs += len(loader.dataset)
        return super().compute(module, loader)


def test_precomputed_reference_equals_frozen_copy_and_is_reused(tiny_backbone, tmp_path):
    frozen, data = make(backbone=tiny_backbone)
    batch = data.collate(data.splits["train"][:8])
    expected = frozen.reference.logprobs(frozen, batch, "train")

    module, data = make(backbone=tiny_backbone, reference=CountingReference(str(tmp_path / "cache")))
    assert module.reference_model is None  # no second model in memory
    fit(module, data, tmp_path, max_epochs=2, limit_val_batches=1)
    source = module.reference
    assert source.computed_pairs == 24 + 8  # train + val, once, not again on epoch 2
    got = source.table["train"][batch["index"]]
    assert torch.allclose(got[:, 0], expected[0], atol=1e-4) and torch.allclose(got[:, 1], expected[1], atol=1e-4)
    assert len(list((tmp_path / "cache").glob("train-anchor0-*.pt"))) == 1

    again = CountingReference(str(tmp_path / "cache"))  # a resumed run reads the files back
    module2, data2 = make(backbone=tiny_backbone, reference=again)
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=tmp_path).validate(module2, datamodule=data2, verbose=False)
    assert again.computed_pairs == 0 and torch.equal(again.table["train"], source.table["train"])

    module.reanchor_reference()  # a new anchor: the cache is dropped and recomputed on the next lookup
    assert source.table is None and source.anchor == 1
    module.trainer.datamodule.setup("fit")
    source.logprobs(module, batch, "train")
    assert source.computed_pairs == 2 * (24 + 8)


def test_reanchor_makes_the_frozen_copy_equal_the_trained_policy(tiny_backbone, tmp_path):
    module, data = make(backbone=tiny_backbone, alpha=0.0, optimizer=partial(torch.optim.AdamW, lr=1e-2))
    fit(module, data, tmp_path, max_steps=4, limit_val_batches=0)
    batch = data.collate(data.splits["train"][:8])
    module.eval()

    def dpo_loss():
        pair = module.pair_logprobs(module.model, batch)
        return module.loss(pair.chosen, pair.rejected, *module.reference.logprobs(module, batch, "train"), pair)

    assert abs(dpo_loss().item() - math.log(2)) > 1e-3  # trained away from the reference
    module.reanchor_reference()
    assert math.isclose(dpo_loss().item(), math.log(2), rel_tol=1e-5)
    assert not any(p.requires_grad for p in module.reference_model.parameters())


def test_lora_policy_with_adapters_disabled_as_reference(tiny_backbone, tmp_path):
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    module, data = make(backbone=tiny_backbone, reference=AdaptersDisabled(), lora=lora,
                         optimizer=partial(torch.optim.AdamW, lr=1e-2))
    batch = data.collate(data.splits["train"][:8])
    policy = module.pair_logprobs(module.model, batch)
    reference = module.reference.logprobs(module, batch, "train")
    assert torch.allclose(policy.chosen, reference[0])  # fresh adapters (B = 0): policy = base
    fit(module, data, tmp_path, max_steps=3, limit_val_batches=0)
    module.eval()
    trained = module.pair_logprobs(module.model, batch).chosen.detach()
    assert not torch.allclose(trained, module.reference.logprobs(module, batch, "train")[0], atol=1e-4)
    module.reanchor_reference()
    assert torch.allclose(module.pair_logprobs(module.model, batch).chosen, trained, atol=1e-4)  # policy unchanged
    assert torch.allclose(module.reference.logprobs(module, batch, "train")[0], trained, atol=1e-4)


@pytest.mark.parametrize("lora, message", [({"rr": 4}, "lora: .*'rr'"),
                                           ({"r": 0}, "lora: r must be a positive integer")])
def test_a_bad_lora_mapping_fails_when_declared(lora, message):
    pytest.importorskip("peft", reason="peft is the lora extra")
    with pytest.raises(ConfigError, match=f"^{message}"):
        DPONLL(lora=lora)

