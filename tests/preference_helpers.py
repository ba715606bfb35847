"""Shared by the preference-module tests: a tiny module on arithmetic pairs, a quiet trainer, a hand-made batch."""

from __future__ import annotations

import lightning as L
import torch
from litforge.datamodules import ArithmeticPreferenceDataModule
from litforge.lightning_modules import DPONLL

from litforge.data import IGNORE_INDEX


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


def hand_made_pairs() -> dict:
    """Pair 0: prompt [1, 2], chosen [11, 12, 13], rejected [21, 22]; pair 1: prompt [3, 4, 5], chosen [14],
    rejected [23, 24, 25]; as `PairCollator` lays them out (chosen rows, then rejected rows; pad id 0)."""
    x = IGNORE_INDEX
    rows = [([1, 2, 11, 12, 13], [x, x, 11, 12, 13]), ([3, 4, 5, 14], [x, x, x, 14]),
            ([1, 2, 21, 22], [x, x, 21, 22]), ([3, 4, 5, 23, 24, 25], [x, x, x, 23, 24, 25])]
    return {"input_ids": torch.tensor([ids + [0] * (6 - len(ids)) for ids, _ in rows]),
            "labels": torch.tensor([labels + [x] * (6 - len(labels)) for _, labels in rows]),
            "attention_mask": torch.tensor([[1] * len(ids) + [0] * (6 - len(ids)) for ids, _ in rows])}
