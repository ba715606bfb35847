"""Shared by the preference-module tests: a tiny module on arithmetic pairs, and a quiet trainer."""

from __future__ import annotations

import lightning as L
from litforge.datamodules import ArithmeticPreferenceDataModule
from litforge.lightning_modules import DPONLL


def make(cls=DPONLL, backbone=None, **kwargs):
    data = ArithmeticPreferenceDataModule(num_train=24, num_val=8, batch_size=8, max_length=32)
    data.setup("fit")
    module = cls(backbone=backbone, tokenizer=data.tokenizer, **kwargs)
    module.configure_model()
    return module, data


def fit(module, data, root, **trainer):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=root, **trainer)
    trainer.fit(module, datamodule=data)
    return trainer
