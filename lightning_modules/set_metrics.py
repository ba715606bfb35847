"""Metrics per evaluation set, made one way for every objective: `<stage>_<set>/<name>` running means.

A datamodule that names its validation sets (`names("val")`) gets one torchmetrics `MeanMetric` per metric name and
set; one without names logs `val/<name>`. Metrics are reset at each evaluation epoch's start outside inference mode:
states made or reset inside `trainer.validate` would be inference tensors that a later `fit` could not update.

Under any strategy the logged value is the whole set's: the metrics are torchmetrics objects (sums of value x weight
and of weights, added over ranks once when the epoch's value is computed), and the rows a distributed sampler repeats
to even out the ranks' shares are left out of every update (`kept_rows`), so no sample counts twice.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric, Metric

from litforge.sampling import padding_rows


def reset_metrics(module: nn.Module) -> None:
    """Reset every torchmetrics `Metric` inside `module` to fresh states that any later loop may update."""
    with torch.inference_mode(False):
        for metric in module.modules():
            if isinstance(metric, Metric):
                metric.reset()


def kept_rows(module, batch_idx: int, dataloader_idx: int, rows: int) -> torch.Tensor:
    """Indices of the rows of an evaluation batch that count (all but a distributed sampler's padding repeats)."""
    trainer = module._trainer
    loaders = None
    if trainer is not None:
        loaders = trainer.test_dataloaders if trainer.testing else trainer.val_dataloaders
    loader = loaders[dataloader_idx] if isinstance(loaders, (list, tuple)) else loaders
    padding = padding_rows(loader, batch_idx, rows)
    return torch.tensor([row for row in range(rows) if not padding[row]], dtype=torch.long)


def select_rows(batch: dict, keep: torch.Tensor, rows: int) -> dict:
    """The rows `keep` of a batch whose tensors and lists have `rows` rows first (other entries kept whole)."""
    picked = {}
    for key, value in batch.items():
        if torch.is_tensor(value) and value.dim() and value.size(0) == rows:
            value = value[keep.to(value.device)]
        elif isinstance(value, list) and len(value) == rows:
            value = [value[row] for row in keep.tolist()]
        picked[key] = value
    return picked


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
