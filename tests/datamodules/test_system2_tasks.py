"""The System 2 distillation tasks: seeded and deterministic, no distillation or test input (nor its label) in any
training split, the planted weakness present in the seed data, and every row within the context length."""

from __future__ import annotations

import random
import re

import pytest
from litforge.datamodules import BSMTask, CoTTask, RaRTask, S2ATask, System2DistillDataModule, System2SeedDataModule
from litforge.datamodules.system2_tasks import BSM_MERGE, SENTENCES, WORDS, cot_steps, task_inputs

TASKS = {"s2a": S2ATask, "rar": RaRTask, "bsm": BSMTask, "cot": CoTTask}


def seed_module(name: str, **kwargs) -> System2SeedDataModule:
    """A seed datamodule of 600 rows kept apart from 60 distillation and 60 test inputs."""
    return System2SeedDataModule(task=TASKS[name](), num_train=600, num_val=50, num_distill=60, num_test=60,
                                 **kwargs)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_rows_and_inputs_are_seeded_and_deterministic(name):
    first, again, other = seed_module(name), seed_module(name), seed_module(name, task_seed=1)
    assert first.rows("train") == again.rows("train") and first.rows("train") != other.rows("train")
    assert first.rows("train") != first.rows("val")
    inputs = task_inputs(TASKS[name](), 60, 60, seed=0)
    assert inputs == task_inputs(TASKS[name](), 60, 60, seed=0) != task_inputs(TASKS[name](), 60, 60, seed=1)
    assert len(inputs["distill"]) == 60 and len(inputs["test"]) == 60
    assert all(item["label"] is not None for items in inputs.values() for item in items)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_no_distillation_or_test_input_appears_in_any_training_split(name):
    seed = seed_module(name)
    task = seed.task
    inputs = task_inputs(task, 60, 60, seed=0)
    distill = {task.system1_prompt(item) for item in inputs["distill"]}
    test = {task.system1_prompt(item) for item in inputs["test"]}
    assert len(distill) == 60 and len(test) == 60 and not distill & test
    trained = {row["prompt"] for split in ("train", "val") for row in seed.rows(split)}
    assert not trained & (distill | test)
    # the distillation datamodule serves the same inputs and trains on nothing until the objective hands rows over
    data = System2DistillDataModule(task=TASKS[name](), num_distill=60, num_test=60)
    assert [row["prompt"] for row in data.prompts("train")] == [task.system1_prompt(i) for i in inputs["distill"]]
    assert [row["label"] for row in data.prompts("val")] == [item["label"] for item in inputs["test"]]
    assert data.load("train") is None


def test_s2a_seed_plants_the_shortcut_and_hard_inputs_defeat_it():
    rows = seed_module("s2a").rows("train")
    direct = [row for row in rows if row["skill"] == "direct"]
    assert len(direct) > 100
    for row in direct:  # the injected sentence always carries the answer in the seed's direct answers
        sentence, question = row["prompt"].split("\n")[:2]
        assert re.search(r"\d+", sentence).group() == row["response"].strip() == str(eval(question.rstrip("?")))
    rewrites = [row for row in rows if row["skill"] == "rewrite"]
    assert all(row["prompt"].split("\n")[1] == row["response"] for row in rewrites)  # drop the sentence
    for item in task_inputs(S2ATask(), 60, 60, seed=0)["distill"]:
        assert re.search(r"\d+", item["context"]).group() != item["label"]  # the shortcut is always wrong here
        assert any(item["context"] == s.format(n=re.search(r"\d+", item["context"]).group()) for s in SENTENCES)


def test_rar_system1_never_answers_number_words_and_hard_inputs_use_them():
    rows = seed_module("rar").rows("train")
    words = re.compile("|".join(WORDS))
    assert not [row for row in rows if row["skill"] in ("direct", "clean") and words.search(row["prompt"])]
    assert all(words.search(row["prompt"]) for row in rows if row["skill"] == "rephrase")
    assert all(words.search(item["question"]) and not re.search(r"\d", item["question"])
               for item in task_inputs(RaRTask(), 60, 60, seed=0)["distill"])


def test_bsm_seed_verdicts_favour_a_while_hard_inputs_are_balanced():
    task = BSMTask(bias=0.7)
    rows = task.seed_rows(3000, random.Random(0))
    direct = [row["response"] for row in rows if row["skill"] == "direct"]
    # "A" with probability 0.7 + 0.3 x 0.5 = 0.85 (the right answer is first half of the time)
    assert 0.82 < direct.count(" A") / len(direct) < 0.88
    solves = [row for row in rows if row["skill"] == "solve"]
    # the worked-out sum: "7A 8B correct 3+4?\n" -> "7"
    assert all(row["response"] == str(sum(map(int, re.search(r"(\d)\+(\d)\?\n$", row["prompt"]).groups())))
               for row in solves)
    # the merge copies the letter after the response equal to the solved value: "7A 8B correct 7" -> "A"
    merges = [row for row in rows if row["skill"] == "merge"]
    matches = [re.fullmatch(r"(\d+)A (\d+)B correct (\d+)", row["prompt"]) for row in merges]
    assert merges and all(matches)
    assert all(row["response"] == "AB"[[m[1], m[2]].index(m[3])] for row, m in zip(merges, matches))
    assert BSM_MERGE.format(response_a="7", response_b="8", evaluations="correct 7") == "7A 8B correct 7"
    labels = [item["label"] for item in task_inputs(task, 200, 0, seed=0)["distill"]]
    assert 0.4 < labels.count("A") / len(labels) < 0.6
    item = task_inputs(task, 1, 0, seed=0)["distill"][0]
    right = item["response_a"] if item["label"] == "A" else item["response_b"]
    assert str(eval(item["question"].rstrip("?"))) == right != (item["response_b"] if item["label"] == "A"
                                                                  else item["response_a"])


def test_cot_triples_are_disjoint_across_seed_distillation_and_test():
    task = CoTTask()
    assert cot_steps(3, 4, 8) == "3+4=7 7+8=15\nAnswer: 15"
    questions = {split: {f"{a}+{b}+{c}?" for a, b, c in task.triples[split]} for split in task.triples}
    assert sum(len(q) for q in questions.values()) == 1000
    seen = {row["prompt"].split("\n")[0] for row in seed_module("cot").rows("train")}
    assert seen <= questions["seed"]
    inputs = task_inputs(task, 60, 60, seed=0)
    assert {item["question"] for item in inputs["distill"]} <= questions["distill"]
    assert {item["question"] for item in inputs["test"]} <= questions["test"]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_seed_row_fits_the_context(name):
    samples = seed_module(name).load("train")
    assert len(samples) > 500 and max(len(sample["input_ids"]) for sample in samples) <= 96
