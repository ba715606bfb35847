"""Learning-rate schedules that YAML can name (optimizers are torch's or bitsandbytes', named directly)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine(LambdaLR):
    """Linear warmup from 0 to the optimizer's lr over `warmup_steps`, then cosine decay to `min_ratio` x lr.

    Args:
        optimizer: the optimizer whose lr is scheduled.
        warmup_steps: steps of linear warmup.
        total_steps: the step at which the cosine reaches its floor (usually trainer.max_steps).
        min_ratio: final lr as a fraction of the peak.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 0, total_steps: int = 1000, min_ratio: float = 0.1):
        def factor(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        super().__init__(optimizer, factor)
