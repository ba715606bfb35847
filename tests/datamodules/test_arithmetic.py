"""The synthetic arithmetic task: chain-of-thought solutions, answers, disjoint splits, and the true grade."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from litforge.datamodules.arithmetic import (
    CORRUPTIONS,
    arithmetic_questions,
    corrupt_solution,
    cot_solution,
    extract_answer,
    grade_points,
    grade_reply,
    graded_responses,
    incorrect_solution,
    split_of,
    true_grade,
)
from litforge.plugins.judges.llm import parse_score

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


def test_arithmetic_task_solutions_answers_and_splits():
    assert cot_solution([12, 34, 56]) == "46+56=102"
    assert cot_solution([1, 2, 3, 4]) == "3+3+4=6+4=10"
    assert extract_answer("46+56=102") == 102 and extract_answer("46+56") is None
    assert extract_answer("46+56=102 junk=7") == 7
    rng = random.Random(0)
    for _ in range(200):
        wrong = incorrect_solution([12, 34, 56], rng)
        assert extract_answer(wrong) != 102 and wrong.count("=") == 1
    train = arithmetic_questions(300, "train", seed=0)
    test = arithmetic_questions(100, "test", seed=0)
    assert train == arithmetic_questions(300, "train", seed=0)  # deterministic
    assert not {q["prompt"] for q in train} & {q["prompt"] for q in test}
    assert all(split_of(q["prompt"]) == "test" and q["answer"] == sum(q["operands"]) for q in test)
    assert len({q["prompt"] for q in train}) == 300
