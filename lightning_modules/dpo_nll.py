"""DPO + NLL — Iterative Reasoning Preference Optimization (Pang et al. 2024); alpha = 0 is plain DPO.

Departures from the paper:
1. beta = 0.1 is a default the paper leaves unsaid (unsure); alpha = 1 as in the paper.
2. One iteration only; the iterative loop (generate, judge, pair, re-anchor) lives in its own module and calls
   `reanchor_reference()` between iterations.
"""

from __future__ import annotations

from litforge.errors import require
from litforge.lightning_modules.preference import PreferenceModule
from litforge.losses import dpo_nll_loss


class DPONLL(PreferenceModule):
    """L = -log sigma(beta * margin) + alpha * NLL(chosen) / |chosen| (sequence log-probs over response tokens).

    Args:
        beta: inverse temperature of the DPO term (0.1, unsure).
        alpha: weight of the length-normalised NLL on the chosen response (1; 0 = plain DPO).
        **kwargs: see `PreferenceModule`.
    """

    def __init__(self, beta: float = 0.1, alpha: float = 1.0, **kwargs):
        require(beta > 0, "beta", f"must be > 0, got {beta}")
        require(alpha >= 0, "alpha", f"must be >= 0, got {alpha}")
        super().__init__(**kwargs)
        self.beta = beta
        self.alpha = alpha

    def loss(self, policy_chosen, policy_rejected, ref_chosen, ref_rejected, pair):
        loss, _ = dpo_nll_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, pair.chosen_tokens,
                               self.beta, self.alpha)
        return loss.mean()
