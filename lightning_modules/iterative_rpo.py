"""Iterative reasoning preference optimisation (Pang et al. 2024): DPO+NLL on correct-vs-incorrect chains of
thought that the model itself sampled, repeated for several iterations inside one `fit`; and the same loop with
the pairwise Cringe loss (Xu et al. 2023, §3.3, "iterative").

The loss is `DPONLL` / `PairwiseCringe`; the iteration boundary (sample N candidates, AnswerJudge, up to K
correct-vs-incorrect pairs, write `iterations/iter_<k>.jsonl`, re-anchor the reference) is
`IterativeDataModule` with `pair_rule: CorrectVsIncorrect`. These classes only add the end-of-run evaluation.

Departures from the paper:
    1. Iterations run inside one `fit` and train from the previous iteration's weights (as the paper), but the
       optimizer state carries over between iterations instead of restarting.
    2. N, K, temperature and epochs per iteration are YAML fields; the miniature uses far smaller values than the
       paper's 30 candidates and ~10 pairs per question.
"""

from __future__ import annotations

from litforge.lightning_modules.cringe import PairwiseCringe
from litforge.lightning_modules.dpo_nll import DPONLL

from litforge.iterative import IterativeMixin


class IterativeRPO(IterativeMixin, DPONLL):
    """DPO+NLL over self-generated pairs, re-anchored every iteration (alpha = 0 gives iterative plain DPO).

    Args: see `DPONLL`.
    """


class IterativeCringe(IterativeMixin, PairwiseCringe):
    """Pairwise Cringe over self-generated pairs, one round of generation and judging per iteration.

    Args: see `PairwiseCringe`.
    """
