"""Iterative Reasoning Preference Optimization (Pang et al. 2024), and the same loop with the pairwise Cringe loss
(Xu et al. 2023, §3.3, "iterative").

Algorithm (Pang et al. 2024, §2), M_0 = the SFT model, t = 1 .. iterations, inside one `fit`:
    1. for each training question x_i, sample N chains of thought and answers from M_{t-1} (`candidates`);
    2. mark each correct or incorrect by its final answer (`AnswerJudge`);
    3. pair correct against incorrect samples of the same question, up to K pairs (`CorrectVsIncorrect`);
    4. train M_t from M_{t-1} on the pairs with DPO + NLL on the chosen (`DPONLL`), the reference being M_{t-1}.
The loop itself (files, resume, DDP shards, re-anchoring) is `IterativePreference` (lightning_modules/); the loss is
`DPONLL` (alpha = 0: iterative plain DPO) or `PairwiseCringe` (no reference).

Departures from the paper:
    1. The optimizer state carries over between iterations instead of restarting.
    2. N, K, temperature and epochs per iteration are config fields; the miniature uses far smaller values than the
       paper's 30 candidates and ~10 pairs per question.
    3. Identical candidates of one question are judged once, and empty ones are dropped before judging.
"""

from __future__ import annotations

from litforge.lazy import lazy_default
from litforge.lightning_modules.cringe import PairwiseCringe
from litforge.lightning_modules.dpo_nll import DPONLL
from litforge.lightning_modules.iterative_preference import IterativePreference
from litforge.plugins.judges import AnswerJudge, Judge
from litforge.plugins.pair_rules import CorrectVsIncorrect, PairRule


class IterativeRPO(IterativePreference, DPONLL):
    """DPO+NLL on correct-vs-incorrect pairs the policy sampled itself, re-anchored every iteration.

    Args:
        judge: marks candidates correct (1) or incorrect (0) (`AnswerJudge`).
        pair_rule: pairs correct against incorrect candidates (`CorrectVsIncorrect`).
        candidates: samples per question (N; the paper: 30).
        **kwargs: see `IterativePreference` (iterations, generation, held-out) and `DPONLL` (beta, alpha).
    """

    def __init__(self, judge: Judge = lazy_default(AnswerJudge),
                 pair_rule: PairRule = lazy_default(CorrectVsIncorrect), candidates: int = 8, **kwargs):
        super().__init__(judge=judge, pair_rule=pair_rule, candidates=candidates, **kwargs)


class IterativeCringe(IterativePreference, PairwiseCringe):
    """Pairwise Cringe on correct-vs-incorrect pairs the policy sampled itself, one round of sampling per iteration.

    Args:
        judge: marks candidates correct (1) or incorrect (0) (`AnswerJudge`).
        pair_rule: pairs correct against incorrect candidates (`CorrectVsIncorrect`).
        candidates: samples per question.
        **kwargs: see `IterativePreference` and `PairwiseCringe`.
    """

    def __init__(self, judge: Judge = lazy_default(AnswerJudge),
                 pair_rule: PairRule = lazy_default(CorrectVsIncorrect), candidates: int = 8, **kwargs):
        super().__init__(judge=judge, pair_rule=pair_rule, candidates=candidates, **kwargs)
