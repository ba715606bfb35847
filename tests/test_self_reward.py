"""Self-rewarding's pieces on the arithmetic task: the true grade, EFT examples that parse back to it, the seed
datamodule, the judge-agreement metric, and the configs' judge template matching the seed's EFT format."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import yaml
from litforge.datamodules.arithmetic import (
    CORRUPTIONS,
    GRADE_TEMPLATE,
    SelfRewardSeedDataModule,
    arithmetic_questions,
    corrupt_solution,
    grade_points,
    grade_reply,
    graded_responses,
    true_grade,
)
from litforge.lightning_modules.iterative_preference import agreement, judge_agreement
from litforge.plugins.judges.base import Judge
from litforge.plugins.judges.llm import parse_score

from helpers import REPO

# 12+34+56: the correct chain is "46+56=102"; (form, steps, consistent, answer) worked out by hand
GRADES = [
    ("46+56=102", (1, 2, 1, 1), 5),
    ("46+56=102=102", (0, 2, 1, 1), 4),  # extra step: not the right form
    ("48+56=102", (1, 1, 0, 1), 3),  # right answer, wrong working
    ("48+56=104", (1, 0, 1, 0), 2),  # first step off, carried on consistently
    ("46+56=103", (1, 1, 0, 0), 2),  # last step off
    ("46+65=111", (1, 0, 1, 0), 2),  # wrong term carried
    ("4x+56=102", (0, 1, 0, 1), 2),  # garbled working
    ("46+56", (0, 1, 0, 0), 1),  # stopped after one step
    ("46+56=", (0, 1, 0, 0), 1),
    ("46+5", (0, 0, 0, 0), 0),
    ("102", (0, 0, 0, 0), 0),  # an answer with no "=" is no answer
    ("", (0, 0, 0, 0), 0),
]


@pytest.mark.parametrize("response,points,grade", GRADES)
def test_true_grade_on_a_hand_made_table(response, points, grade):
    assert tuple(grade_points([12, 34, 56], response).values()) == points
    assert true_grade([12, 34, 56], response) == grade


def test_eft_reply_parses_back_to_the_true_grade_and_every_grade_occurs():
    questions = arithmetic_questions(50, "train", max_operand=49)
    rows = graded_responses(questions, 600, seed=0)
    for row, question in zip(rows, questions * 12):
        reply = grade_reply(question["operands"], row["response"])
        assert reply.startswith(question["solution"] + "; points ")
        assert parse_score(reply) == row["grade"] == true_grade(question["operands"], row["response"])
    assert set(Counter(row["grade"] for row in rows)) == set(range(6))
    assert grade_reply([12, 34, 56], "46+56=103") == "46+56=102; points 1+1+0+0; Score: 2"
    kinds = {kind: true_grade([12, 34, 56], corrupt_solution([12, 34, 56], kind, random.Random(1)))
             for kind in ("correct", "incorrect", "wrong_work", "repeated")}
    assert kinds == {"correct": 5, "incorrect": 2, "wrong_work": 3, "repeated": 4}
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_solution([1, 2, 3], "shuffled", random.Random(0))
    assert len(CORRUPTIONS) == 6


def test_balanced_graded_responses_cover_each_grade_equally():
    rows = graded_responses(arithmetic_questions(60, "test", max_operand=49), 60, seed=3, balanced=True)
    assert Counter(row["grade"] for row in rows) == {grade: 10 for grade in range(6)}
    assert rows == graded_responses(arithmetic_questions(60, "test", max_operand=49), 60, seed=3, balanced=True)


def test_seed_datamodule_is_deterministic_and_mixes_ift_with_eft():
    def built(seed):
        data = SelfRewardSeedDataModule(num_train=40, num_eft=30, num_val=5, num_test=0, max_operand=49,
                                        eft_seed=seed)
        data.setup("fit")
        return data

    data = built(0)
    train, val = data.splits["train"], data.splits["val"]
    assert len(train) == 70 and len(val) == 10 and max(len(s["input_ids"]) for s in train) <= data.max_length
    assert train == built(0).splits["train"] and train != built(1).splits["train"]
    text = data.tokenizer.decode(train[-1]["input_ids"], skip_special_tokens=True)
    prompt, reply = text.split("\n", 1)
    assert prompt.startswith("Grade 0-5: ") and parse_score(reply) is not None
    labelled = [t for t, label in zip(train[-1]["input_ids"], train[-1]["labels"]) if label != -100]
    assert data.tokenizer.decode(labelled, skip_special_tokens=True) == reply  # the loss is on the reply only
    first = data.tokenizer.decode(train[0]["input_ids"], skip_special_tokens=True)
    assert "Grade" not in first and first.count("=") == 2  # an IFT example: question + chain of thought


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


def test_a_seed_template_without_a_response_slot_is_refused():
    with pytest.raises(ValueError, match="response"):
        SelfRewardSeedDataModule(template="Grade: {prompt}\n")

