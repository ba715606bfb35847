"""Metrics per evaluation set, made one way for every objective: `<stage>_<set>/<name>` running means.

A datamodule that names its validation sets (`names("val")`) gets one torchmetrics `MeanMetric` per metric name and
set; one without names logs `val/<name>`. Metrics are reset at each evaluation epoch's start outside inference mode:
states made or reset inside `trainer.validate` would be inference tensors that a later `fit` could not update.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric, Metric


def reset_metrics(module: nn.Module) -> None:
    """Reset every torchmetrics `Metric` inside `module` to fresh states that any later loop may update."""
    with torch.inference_mode(False):
        for metric in module.modules():
            if isinstance(metric, Metric):
                metric.reset()


class PerSetMetrics:
    """Mixed in before a `LitforgeModule` subclass: `log_per_set` keeps and logs a running mean per evaluation set."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_metrics = nn.ModuleDict()  # metric name -> one MeanMetric per evaluation set

    def log_per_set(self, name: str, values: torch.Tensor, dataloader_idx: int, weight: torch.Tensor | float = 1.0,
                    **kwargs) -> None:
        """Add `values` to the running mean `name` of one evaluation set and log it as `<set>/<name>`.

        The metric is made on first use, outside inference mode; `kwargs` go to `self.log` (e.g. `prog_bar`).
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

    def val_prefix(self, dataloader_idx: int) -> str:
        """'val' (or 'test'), or 'val_<name>' when the datamodule names its validation sets."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = datamodule.names("val") if hasattr(datamodule, "names") else [""]
        name = names[dataloader_idx] if dataloader_idx < len(names) else str(dataloader_idx)
        stage = "test" if self._trainer is not None and self.trainer.testing else "val"
        return f"{stage}_{name}" if name else stage

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        reset_metrics(self.set_metrics)

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        reset_metrics(self.set_metrics)
