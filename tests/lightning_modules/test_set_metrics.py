"""Per-set metrics: one running mean per metric and evaluation set, named after the set, fresh at each epoch."""

from __future__ import annotations

import lightning as L
import torch
from litforge.datamodules import MixedDomainDataModule, SyntheticTextDataModule
from litforge.lightning_modules import CausalLM
from litforge.lightning_modules.set_metrics import kept_rows, reset_metrics, select_rows
from torchmetrics import MeanMetric


def validate(module, data):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=1)
    return trainer.validate(module, datamodule=data, verbose=False)


def test_named_sets_get_their_own_metrics_and_an_unnamed_set_logs_under_val(tiny_backbone):
    named = MixedDomainDataModule(num_train=4, num_val=2, max_length=32, batch_size=2)
    module = CausalLM(backbone=tiny_backbone, tokenizer=named.tokenizer)
    logged = {key for result in validate(module, named) for key in result}
    sets = named.names("val")
    assert len(sets) > 1 and {f"val_{name}/{metric}" for name in sets for metric in ("loss", "acc", "ppl")} <= logged
    assert [len(module.set_metrics[name]) for name in ("loss", "acc")] == [len(sets)] * 2

    plain = SyntheticTextDataModule(num_train=4, num_val=2, max_length=32, batch_size=2)
    module = CausalLM(backbone=tiny_backbone, tokenizer=plain.tokenizer)
    assert {"val/loss", "val/acc", "val/ppl"} <= {key for result in validate(module, plain) for key in result}


def test_reset_gives_states_a_fit_can_update_after_inference_mode():
    metric = MeanMetric()
    with torch.inference_mode():
        metric.update(torch.tensor([1.0, 3.0]))
        metric.reset()  # what a reset inside `trainer.validate` makes: inference tensors
    assert metric.mean_value.is_inference()
    reset_metrics(torch.nn.ModuleList([metric]))
    assert not metric.mean_value.is_inference()
    metric.update(torch.tensor(5.0))  # outside inference mode, as a later fit's loop does
    assert metric.compute().item() == 5.0


def test_select_rows_picks_per_row_entries_and_keeps_the_rest():
    batch = {"input_ids": torch.arange(12).view(3, 4), "index": torch.tensor([5, 6, 7]), "prompt": ["a", "b", "c"],
             "scale": torch.tensor(2.0), "pair": [1, 2]}
    picked = select_rows(batch, torch.tensor([0, 2]), 3)
    assert picked["input_ids"].tolist() == [[0, 1, 2, 3], [8, 9, 10, 11]] and picked["index"].tolist() == [5, 7]
    assert picked["prompt"] == ["a", "c"] and picked["pair"] == [1, 2] and picked["scale"] == 2.0


def test_without_a_trainer_every_row_is_kept(tiny_backbone):
    assert kept_rows(CausalLM(backbone=tiny_backbone), 0, 0, 3).tolist() == [0, 1, 2]
