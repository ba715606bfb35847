"""CoPELM: the exact-answer error of each named validation set is 1 - the shared exact-match metric."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from litforge.datamodules import CountingDataModule
from litforge.lightning_modules import CoPELM
from litforge.lightning_modules.causal_lm import exact_matches
from litforge.plugins.position import CoPE


def test_each_set_logs_the_share_of_answers_not_reproduced_exactly(tiny_backbone):
    data = CountingDataModule(num_train=8, num_val=6, batch_size=4, val_batch_size=4)
    module = CoPELM(backbone=tiny_backbone, tokenizer=data.tokenizer, position=CoPE(npos_max=16))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.validate(module, datamodule=data, verbose=False)[0]
    for index, name in enumerate(data.names("val")):
        hits = torch.cat([exact_matches(module(b["input_ids"], b["attention_mask"]), b["labels"])
                          for b in data.val_dataloader()[index]])
        assert logged[f"val_{name}/error"] == pytest.approx(1 - hits.mean().item())
        assert {f"val_{name}/loss", f"val_{name}/acc", f"val_{name}/ppl"} <= set(logged)
