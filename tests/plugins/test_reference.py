"""Reference sources (plugins/reference/): what `bind` makes or checks once the policy is built.

Their log-probs, reuse and re-anchoring run inside a preference objective: tests/lightning_modules/test_preference.py.
"""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from litforge.datamodules import JSONLPreferenceDataModule
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
