"""Reference sources (plugins/reference/): what `bind` makes or checks once the policy is built.

Their log-probs, reuse and re-anchoring run inside a preference objective: tests/lightning_modules/test_preference.py.
"""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from litforge.datamodules import ArithmeticPreferenceDataModule, JSONLPreferenceDataModule
from litforge.lightning_modules import DPONLL
from litforge.plugins.reference import AdaptersDisabled, FrozenCopy, PrecomputedReference

from litforge.errors import ConfigError


def test_frozen_copy_binds_one_frozen_copy_equal_to_the_policy(tiny_backbone):
    module = DPONLL(backbone=tiny_backbone, reference=FrozenCopy())
    module.configure_model()
    copy = module.reference_model
    assert copy is not module.model and not any(p.requires_grad for p in copy.parameters()) and not copy.training
    probe = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(copy(probe).logits, module.model(probe).logits)
    module.reference.bind(module)  # configure_model may run again (a resumed run): the copy is kept
    assert module.reference_model is copy


def test_precomputed_reference_keeps_no_second_model(tiny_backbone):
    module = DPONLL(backbone=tiny_backbone, reference=PrecomputedReference())
    module.configure_model()
    assert module.reference_model is None


def test_adapters_disabled_needs_a_lora_policy(tiny_backbone):
    module = DPONLL(backbone=tiny_backbone, reference=AdaptersDisabled())
    with pytest.raises(ConfigError, match="^reference: AdaptersDisabled needs a LoRA policy") as caught:
        module.configure_model()
    assert caught.value.field == "reference"


def test_precomputed_reference_refuses_a_streamed_split(tiny_backbone, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"{i}+1=", "chosen": str(i + 1), "rejected": str(i)}) + "\n"
                            for i in range(8)))
    data = JSONLPreferenceDataModule(train_path=str(path), streaming=True, batch_size=4)
    module = DPONLL(backbone=tiny_backbone, tokenizer=data.tokenizer, reference=PrecomputedReference())
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(ConfigError, match="^reference: PrecomputedReference needs a train split with a length"):
        trainer.fit(module, datamodule=data)


def test_the_precompute_batches_a_length_grouped_loader_by_its_batch_size():
    from litforge.plugins.reference.precomputed import in_order

    data = ArithmeticPreferenceDataModule(num_train=24, num_val=8, batch_size=8, max_length=32, group_by_length=True)
    data.setup("fit")
    loader = data.train_dataloader()
    assert loader.batch_size is None  # the grouped sampler hands out whole batches
    ordered = in_order(loader)
    sizes = [len(batch["index"]) for batch in ordered]
    assert sizes == [8, 8, 8] and torch.equal(torch.cat([batch["index"] for batch in ordered]), torch.arange(24))


def test_a_token_budget_batch_scales_its_loss(tiny_backbone):
    data = ArithmeticPreferenceDataModule(num_train=24, num_val=8, batch_size=8, max_length=32)
    data.setup("fit")
    module = DPONLL(backbone=tiny_backbone, tokenizer=data.tokenizer)
    module.configure_model()
    batch = next(iter(data.train_dataloader()))
    module.log = lambda *args, **kwargs: None  # no trainer to log to
    plain = module.training_step(batch, 0)
    scaled = module.training_step({**batch, "loss_scale": 0.5}, 0)
    assert torch.allclose(scaled, plain * 0.5)
