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
        self.val_metrics = nn.ModuleList()  # one (loss, accuracy) pair per validation set, made in setup

    def setup(self, stage: str) -> None:
        super().setup(stage)
        # metrics are made here, not lazily inside the (inference-mode) validation loop
        datamodule = getattr(self.trainer, "datamodule", None)
        for split in ("val", "test"):
            count = len(datamodule.names(split)) if hasattr(datamodule, "names") else 1
            while len(self.val_metrics) < count:
                self.val_metrics.append(nn.ModuleList([MeanMetric(), MeanMetric()]))

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
        loss_metric, accuracy_metric = self.metrics_for(dataloader_idx)
        loss_metric.update(loss, weight=count)
        accuracy_metric.update(correct)
        prefix = self.val_prefix(dataloader_idx)
        self.log(f"{prefix}/loss", loss_metric, prog_bar=True, add_dataloader_idx=False)
        self.log(f"{prefix}/acc", accuracy_metric, add_dataloader_idx=False)

    def on_validation_epoch_start(self) -> None:
        # states reset inside `trainer.validate` would be inference tensors that a later `fit` cannot update
        with torch.inference_mode(False):
            for metric in self.modules():  # subclasses' metrics too
                if isinstance(metric, Metric):
                    metric.reset()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        for index in range(len(self.val_metrics)):
            loss = self.trainer.callback_metrics.get(f"{self.val_prefix(index)}/loss")
            if loss is not None:
                self.log(f"{self.val_prefix(index)}/ppl", torch.exp(loss), add_dataloader_idx=False, sync_dist=True)

    test_step = validation_step

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Per-sample summed log-probability of the labelled tokens and their count (for scoring data)."""
        logprobs, counts = sequence_logprobs(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])
        return {"logprob": logprobs, "tokens": counts}

    def metrics_for(self, dataloader_idx: int) -> nn.ModuleList:
        """The (loss, accuracy) metrics of one validation set."""
        return self.val_metrics[dataloader_idx]

    def val_prefix(self, dataloader_idx: int) -> str:
        """'val', or 'val_<name>' when the datamodule names its validation sets."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = datamodule.names("val") if hasattr(datamodule, "names") else [""]
        name = names[dataloader_idx] if dataloader_idx < len(names) else str(dataloader_idx)
        stage = "test" if self._trainer is not None and self.trainer.testing else "val"
        return f"{stage}_{name}" if name else stage
