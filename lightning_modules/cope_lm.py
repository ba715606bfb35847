"""The CoPE LM (Golovneva et al. 2024): a causal LM whose YAML picks the position encoding, scored by exact answers.

The encoding is the `position` plugin of `LitforgeModule` (RoPE, NoPE, Absolute, CoPE ...); this module adds the
paper's metric: the share of validation/test examples whose answer is not reproduced exactly (teacher-forced
argmax over every labelled token), one torchmetrics `MeanMetric` per named set, logged as `val_<name>/error`.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric

from litforge.data import IGNORE_INDEX
from litforge.lightning_modules.causal_lm import CausalLM
from litforge.losses import shift


class CoPELM(CausalLM):
    """Next-token training; validation adds the exact-answer error of each named set.

    Args: see `LitforgeModule` (choose the encoding with `position: {class_path: CoPE, init_args: {npos_max: 64}}`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.answer_errors = nn.ModuleList()  # one MeanMetric per validation set, made in setup

    def setup(self, stage: str) -> None:
        super().setup(stage)
        while len(self.answer_errors) < len(self.val_metrics):
            self.answer_errors.append(MeanMetric())

    def score(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        super().score(logits, batch, dataloader_idx)
        metric = self.answer_errors[dataloader_idx]
        metric.update(answer_errors(logits, batch["labels"]))
        self.log(f"{self.val_prefix(dataloader_idx)}/error", metric, prog_bar=True, add_dataloader_idx=False)


def answer_errors(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per example, 1.0 if any labelled token's argmax prediction is wrong, else 0.0; shape (batch,)."""
    logits, targets = shift(logits, labels)
    labelled = targets != IGNORE_INDEX
    wrong = (logits.argmax(-1) != targets) & labelled
    return wrong.any(-1).float()
