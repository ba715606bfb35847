"""Causal language modelling: pretraining on all tokens, or SFT with the loss on response tokens only.

Which tokens carry loss is decided by the data (labels of -100 are skipped), so one module serves both.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric, Metric

from litforge.data import IGNORE_INDEX
from litforge.losses import sequence_logprobs, shift, token_cross_entropy
from litforge.module import LitforgeModule


class CausalLM(LitforgeModule):
    """Next-token prediction; validation reports loss, perplexity and next-token accuracy per validation set.

    Args: see `LitforgeModule`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_metrics = nn.ModuleDict()  # metric name -> one MeanMetric per evaluation set (`log_per_set`)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss, _ = token_cross_entropy(logits, batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.score(self(batch["input_ids"], batch["attention_mask"]), batch, dataloader_idx)

    def score(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        """Update and log one evaluation set's metrics from the batch's logits (subclasses add their own)."""
        loss, count = token_cross_entropy(logits, batch["labels"])
        logits, targets = shift(logits, batch["labels"])
        labelled = targets != IGNORE_INDEX
        correct = (logits.argmax(-1) == targets)[labelled].float()
        self.log_per_set("loss", loss, dataloader_idx, weight=count, prog_bar=True)
        self.log_per_set("acc", correct, dataloader_idx)

    def log_per_set(self, name: str, values: torch.Tensor, dataloader_idx: int, weight: torch.Tensor | float = 1.0,
                    **kwargs) -> None:
        """Add `values` to the running mean `name` of one evaluation set and log it as `<set>/<name>`.

        The one way per-set metrics are made: a torchmetrics `MeanMetric` per (name, set), made on first use outside
        inference mode (so a `fit` after a `validate` can still update it) and reset at each evaluation epoch's start.
        """
        if name not in self.set_metrics:
            self.set_metrics[name] = nn.ModuleList()
        metrics = self.set_metrics[name]
        with torch.inference_mode(False):
            while len(metrics) <= dataloader_idx:
                metrics.append(MeanMetric().to(self.device))
        metrics[dataloader_idx].update(values, weight)
        self.log(f"{self.val_prefix(dataloader_idx)}/{name}", metrics[dataloader_idx], add_dataloader_idx=False,
                 metric_attribute=f"set_metrics.{name}.{dataloader_idx}", **kwargs)

    def on_validation_epoch_start(self) -> None:
        # states reset inside `trainer.validate` would be inference tensors that a later `fit` cannot update
        with torch.inference_mode(False):
            for metric in self.modules():
                if isinstance(metric, Metric):
                    metric.reset()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        for index in range(len(self.set_metrics["loss"]) if "loss" in self.set_metrics else 0):
            loss = self.trainer.callback_metrics.get(f"{self.val_prefix(index)}/loss")
            if loss is not None:
                self.log(f"{self.val_prefix(index)}/ppl", torch.exp(loss), add_dataloader_idx=False, sync_dist=True)

    test_step = validation_step

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Per-sample summed log-probability of the labelled tokens and their count (for scoring data)."""
        logprobs, counts = sequence_logprobs(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])
        return {"logprob": logprobs, "tokens": counts}

    def val_prefix(self, dataloader_idx: int) -> str:
        """'val', or 'val_<name>' when the datamodule names its validation sets."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = datamodule.names("val") if hasattr(datamodule, "names") else [""]
        name = names[dataloader_idx] if dataloader_idx < len(names) else str(dataloader_idx)
        stage = "test" if self._trainer is not None and self.trainer.testing else "val"
        return f"{stage}_{name}" if name else stage


def exact_matches(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per example with a labelled token, 1.0 when every labelled token is the argmax (greedy decoding would write the
    answer exactly), else 0.0; shape (examples with labels,). Teacher-forced, from one forward."""
    logits, targets = shift(logits, labels)
    labelled = targets != IGNORE_INDEX  # (batch, T - 1)
    hit = ((logits.argmax(-1) == targets) | ~labelled).all(-1)
    return hit[labelled.any(-1)].float()
