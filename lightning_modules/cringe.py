"""Pairwise Cringe (Xu et al. 2023, "Some things are more CRINGE than others").

L = NLL(chosen) + alpha * g * Cringe(rejected), g = sigma((b - M) / tau), M = log P(chosen) - log P(rejected).

Departures from the paper:
1. b = 2, tau = 1, alpha = 1, k = 5 are defaults the public sources leave unsaid (unsure); all are config fields.
2. Whether the gate's gradient is stopped is unstated; `stop_gate_gradient` (default True) chooses.
3. NLL and Cringe are per-token means within each sequence, then averaged over pairs.
4. No reference model is used (the paper's loss has none); one iteration only, iterations reuse the base's loop.
"""

from __future__ import annotations

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
        **kwargs: see `PreferenceModule`.
    """

    needs_reference = False

    def __init__(self, alpha: float = 1.0, b: float = 2.0, tau: float = 1.0, k: int = 5,
                 stop_gate_gradient: bool = True, **kwargs):
        require(alpha >= 0, "alpha", f"must be >= 0, got {alpha}")
        require(b >= 0, "b", f"must be >= 0 (a margin in nats), got {b}")
        require(tau > 0, "tau", f"must be > 0, got {tau}")
        require(k >= 1, "k", f"must be >= 1, got {k}")
        super().__init__(**kwargs)
        self.alpha, self.b, self.tau, self.k = alpha, b, tau, k
        self.stop_gate_gradient = stop_gate_gradient

    def loss(self, policy_chosen, policy_rejected, ref_chosen, ref_rejected, pair):
        half = len(policy_chosen)
        chosen_nll = -policy_chosen / pair.chosen_tokens.clamp(min=1)
        rejected = pair.rows >= half
        per_token = cringe_loss(pair.logits[rejected], pair.targets[rejected], self.k)
        cringe = torch.zeros_like(policy_rejected).index_add(0, pair.rows[rejected] - half, per_token)
        cringe = cringe / pair.rejected_tokens.clamp(min=1)
        loss, gate = pairwise_cringe_loss(policy_chosen, policy_rejected, chosen_nll, cringe, self.alpha, self.b,
                                          self.tau, self.stop_gate_gradient)
        self.log("train/gate" if self.training else "val/gate", gate.mean(), batch_size=half,
                 add_dataloader_idx=False, sync_dist=not self.training)
        return loss.mean()
