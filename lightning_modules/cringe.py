"""Pairwise Cringe (Xu et al. 2023, "Some things are more CRINGE than others").

L = NLL(chosen) + alpha * g * Cringe(rejected), g = sigma((b - M) / tau), M = log P(chosen) - log P(rejected).

Departures from the paper:
1. b = 2, tau = 1, alpha = 1, k = 5 are defaults the public sources leave unsaid (unsure); all are config fields.
2. Whether the gate's gradient is stopped is unstated; `stop_gate_gradient` (default True) chooses.
3. NLL and Cringe are per-token means within each sequence, then averaged over pairs.
4. No reference model is used (the paper's loss has none); one iteration only, iterations reuse the base's loop.
5. The positive token of each rejected position is sampled from a generator of its own pair, seeded by
   (`cringe_seed`, stage, global step, the pair's index in its split): the draws do not depend on the rank or the
   batch a pair lands in, so 2 ranks x batch B sample what 1 process x batch 2B samples, and a resumed run repeats them.
"""

from __future__ import annotations

import hashlib

import torch

from litforge.errors import require
from litforge.lightning_modules.preference import PreferenceModule
from litforge.losses import cringe_loss, pairwise_cringe_loss


class PairwiseCringe(PreferenceModule):
    """Likelihood on the chosen response plus a gated binary Cringe loss on the rejected one.

    Args:
        alpha: weight of the Cringe term.
        b: margin (nats) beyond which the gate closes.
        tau: temperature of the gate.
        k: top-k from which the positive token is sampled at each rejected position.
        stop_gate_gradient: treat the gate as a constant in the backward pass.
        cringe_seed: seed of the positive-token draws (each pair's own generator also takes its index and the step).
        **kwargs: see `PreferenceModule`.
    """

    needs_reference = False
    metric_names = (*PreferenceModule.metric_names, "gate")

    def __init__(self, alpha: float = 1.0, b: float = 2.0, tau: float = 1.0, k: int = 5,
                 stop_gate_gradient: bool = True, cringe_seed: int = 0, **kwargs):
        require(alpha >= 0, "alpha", f"must be >= 0, got {alpha}")
        require(b >= 0, "b", f"must be >= 0 (a margin in nats), got {b}")
        require(tau > 0, "tau", f"must be > 0, got {tau}")
        require(k >= 1, "k", f"must be >= 1, got {k}")
        super().__init__(**kwargs)
        self.alpha, self.b, self.tau, self.k = alpha, b, tau, k
        self.stop_gate_gradient = stop_gate_gradient
        self.cringe_seed = cringe_seed

    def loss(self, policy_chosen, policy_rejected, ref_chosen, ref_rejected, pair):
        half = len(policy_chosen)
        chosen_nll = -policy_chosen / pair.chosen_tokens.clamp(min=1)
        rejected = pair.rows >= half
        logits, targets, rows = pair.logits[rejected], pair.targets[rejected], pair.rows[rejected] - half
        sums = []
        for row in range(half):  # each pair's positions, sampled with that pair's generator
            at = rows == row
            if at.any():
                sums.append(cringe_loss(logits[at], targets[at], self.k, self.generator(pair, row)).sum())
            else:
                sums.append(torch.zeros((), device=logits.device))
        cringe = torch.stack(sums).to(policy_rejected.dtype) / pair.rejected_tokens.clamp(min=1)
        loss, gate = pairwise_cringe_loss(policy_chosen, policy_rejected, chosen_nll, cringe, self.alpha, self.b,
                                          self.tau, self.stop_gate_gradient)
        self.extra_values["gate"] = gate.detach()  # logged as train/gate and val/gate with the other metrics
        return loss.mean()

    def generator(self, pair, row: int) -> torch.Generator:
        """The generator of one pair's draws at this step: seeded by its index in its split, not by rank or batch."""
        index = int(pair.index[row]) if pair.index is not None else row
        key = f"{self.cringe_seed}-{'train' if self.training else 'eval'}-{self.global_step}-{index}"
        seed = int(hashlib.sha1(key.encode()).hexdigest()[:15], 16)
        return torch.Generator(device=pair.logits.device).manual_seed(seed)
