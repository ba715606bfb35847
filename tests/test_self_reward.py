"""Self-rewarding's pieces: the judge-agreement metric, and the configs' judge template matching the seed's EFT format.

The true grade and the seed datamodule are tested in tests/datamodules/test_arithmetic.py and
test_arithmetic_data.py."""

from __future__ import annotations

import math

import pytest
import yaml
from litforge.datamodules.arithmetic import GRADE_TEMPLATE, grade_reply
from litforge.lightning_modules.iterative_preference import agreement, judge_agreement
from litforge.plugins.judges.base import Judge

from helpers import REPO


def test_agreement_on_fixed_scores():
    stats = agreement([5.0, 2.6667, 0.4, None, 4.0], [5, 3, 1, 2, 4])
    assert stats["judge_agreement"] == 3 / 5  # 5, round(2.67) = 3 and 4 agree; 0.4 -> 0 misses; no verdict misses
    assert stats["judge_mae"] == pytest.approx((0 + 0.3333 + 0.6 + 0) / 4, abs=1e-4)
    assert stats["judge_heldout_mean"] == pytest.approx((5 + 2.6667 + 0.4 + 4) / 4)
    assert stats["judge_heldout_failures"] == 1
    assert stats["judge_histogram"] == {"0": 1, "3": 1, "4": 1, "5": 1}
    assert stats["judge_mean_by_grade"]["1"] == 0.4 and math.isnan(stats["judge_mean_by_grade"]["2"])
    saturated = agreement([5.0] * 6, list(range(6)))
    assert saturated["judge_agreement"] == pytest.approx(1 / 6) and saturated["judge_histogram"] == {"5": 6}
    assert math.isnan(agreement([None], [3])["judge_mae"])


def test_judge_agreement_reads_the_judge_and_counts_its_failures():
    class Constant(Judge):
        def score(self, prompts, responses, references=None):
            self.failures += 1
            return [3.0 if r else None for r in responses]

    stats = judge_agreement(None, None, Constant(), ["q"] * 3, ["a", "", "b"], [3, 0, 5], [None] * 3)
    assert stats["judge_agreement"] == 1 / 3 and stats["judge_heldout_reply_failures"] == 1


def test_the_configs_judge_with_the_seed_s_eft_template():
    seed = yaml.safe_load((REPO / "configs/self_reward/seed.yaml").read_text())
    run = yaml.safe_load((REPO / "configs/self_reward/self_reward.yaml").read_text())
    judge = run["model"]["init_args"]["judge"]["init_args"]
    assert seed["data"]["init_args"]["template"] == judge["template"] == GRADE_TEMPLATE
    first_line = (REPO / "configs/self_reward/seed.yaml").read_text().splitlines()[0]
    assert first_line.split()[-1] == run["model"]["init_args"]["backbone"]["init_args"]["path"]  # exported there
    assert len(grade_reply([99, 99, 99], "198+99=297")) <= judge["max_new_tokens"]  # a whole reply fits
