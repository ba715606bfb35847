"""Self-Rewarding Language Models (Yuan et al. 2024): the policy judges its own candidates with the additive
5-point LLM-as-a-judge rubric, and DPO trains on best-vs-worst pairs, iteration after iteration inside one `fit`.

The judge is `LLMJudge` with no checkpoint (it is handed the current policy at each boundary), the pair rule is
`BestVsWorst` (ties dropped), and the boundary lives in `IterativeDataModule`; this module is DPO (beta 0.1,
no NLL term) plus the end-of-run evaluation.

Departures from the paper:
    1. The seed model's IFT + EFT fine-tuning is a separate `fit` (SFT data with both solving and judging examples,
       `SelfRewardSeedDataModule`, configs/self_reward/seed.yaml); the self-rewarding run starts from its exported
       checkpoint (`LocalCheckpoint`).
    2. The optimizer state carries over between iterations instead of restarting from M_t.
"""

from __future__ import annotations

from litforge.lightning_modules.dpo_nll import DPONLL

from litforge.iterative import IterativeMixin


class SelfRewarding(IterativeMixin, DPONLL):
    """DPO on pairs the policy generated and judged itself (alpha defaults to 0: the paper's plain DPO).

    Args:
        beta: inverse temperature of DPO (0.1 as in the paper).
        alpha: weight of an NLL term on the chosen response (0 in the paper).
        **kwargs: see `DPONLL`.
    """

    def __init__(self, beta: float = 0.1, alpha: float = 0.0, **kwargs):
        super().__init__(beta=beta, alpha=alpha, **kwargs)
