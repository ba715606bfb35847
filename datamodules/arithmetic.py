"""Synthetic multi-step arithmetic with chain of thought: the task of the DPO+NLL, Cringe and iterative miniatures.

A question adds `num_terms` numbers ("12+34+56="); the chain-of-thought solution folds the first two terms one step
at a time ("46+56=102"), so the last number after "=" is the final answer. Which split a question belongs to is a
function of the question itself (a CRC of its text), so train, val and test never share a question, whatever the
counts asked for.
"""

from __future__ import annotations

import random
import re
import zlib
from typing import Any

from litforge.data import encode_prompt_response
from litforge.datamodules.base import LMDataModule

SPLITS = ("train", "val", "test")
_ANSWER = re.compile(r"=\s*(-?\d+)")


def split_of(prompt: str) -> str:
    """The split a question belongs to: 10% test, 10% val, 80% train, fixed by the question's text."""
    bucket = zlib.crc32(prompt.encode()) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def question_prompt(operands: list[int]) -> str:
    """The question text: "12+34+56="."""
    return "+".join(str(x) for x in operands) + "="


def cot_solution(operands: list[int], partial_sums: list[int] | None = None) -> str:
    """The chain of thought "S1+ef=S2": after each step the running sum replaces the first two terms.

    `partial_sums` overrides the running sums (used to write incorrect solutions); by default they are correct.
    """
    sums = partial_sums if partial_sums is not None else running_sums(operands)
    steps = []
    for step, total in enumerate(sums):
        rest = operands[step + 2:]
        steps.append("+".join(str(x) for x in [total, *rest]))
    return "=".join(steps)


def running_sums(operands: list[int]) -> list[int]:
    """The correct running sums after each addition step (len = number of terms - 1)."""
    sums, total = [], operands[0]
    for x in operands[1:]:
        total += x
        sums.append(total)
    return sums


def extract_answer(text: str) -> int | None:
    """The final answer of a generated solution: the last integer after an "=" (None when there is none).

    Apply it to the completion only (the prompt ends with "=" and no number).
    """
    found = _ANSWER.findall(text)
    return int(found[-1]) if found else None


def incorrect_solution(operands: list[int], rng: random.Random) -> str:
    """A plausible wrong chain of thought: one step is off by a small amount and later steps carry the error on."""
    sums = running_sums(operands)
    step = rng.randrange(len(sums))
    error = rng.choice([-10, -2, -1, 1, 2, 10, rng.randint(-20, 20) or 3])
    wrong = sums[:step] + [s + error for s in sums[step:]]
    return cot_solution(operands, wrong)


def arithmetic_questions(count: int, split: str = "train", seed: int = 0, num_terms: int = 3,
                         min_operand: int = 10, max_operand: int = 99) -> list[dict[str, Any]]:
    """`count` distinct questions of one split: dicts with "prompt", "operands", "answer" (int) and "solution".

    The same (seed, split, sizes) always give the same questions; no question appears in two splits.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    space = (max_operand - min_operand + 1) ** num_terms
    if count > space // 20:
        raise ValueError(f"{count} questions asked from a space of {space}; widen the operand range")
    rng = random.Random(f"{seed}-{split}-{num_terms}")
    questions, seen = [], set()
    while len(questions) < count:
        operands = [rng.randint(min_operand, max_operand) for _ in range(num_terms)]
        prompt = question_prompt(operands)
        if prompt in seen or split_of(prompt) != split:
            continue
        seen.add(prompt)
        questions.append({"prompt": prompt, "operands": operands, "answer": sum(operands),
                          "solution": cot_solution(operands)})
    return questions


class ArithmeticSFTDataModule(LMDataModule):
    """SFT on arithmetic questions: prompt "12+34+56=", response the chain of thought "46+56=102" (+ eos).

    Args:
        num_train: training questions.
        num_val: validation questions (teacher-forced loss on their solutions).
        num_test: held-out test questions.
        num_terms: numbers added per question.
        min_operand: smallest operand.
        max_operand: largest operand.
        task_seed: seed of the questions (the shuffle seed is `seed`).
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, num_train: int = 2000, num_val: int = 200, num_test: int = 200, num_terms: int = 3,
                 min_operand: int = 10, max_operand: int = 99, task_seed: int = 0, **kwargs):
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)
        self.counts = {"train": num_train, "val": num_val, "test": num_test}
        self.task = {"num_terms": num_terms, "min_operand": min_operand, "max_operand": max_operand}
        self.task_seed = task_seed

    def questions(self, split: str) -> list[dict[str, Any]]:
        """The questions of a split (with their reference answers), for evaluation by generation."""
        return arithmetic_questions(self.counts[split], split, self.task_seed, **self.task)

    def load(self, split):
        if not self.counts[split]:
            return None
        return [encode_prompt_response(self.tokenizer, q["prompt"], q["solution"]) for q in self.questions(split)]
