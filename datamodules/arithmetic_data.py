"""DataModules of the synthetic arithmetic task (`datamodules/arithmetic.py`): SFT, the self-rewarding seed, pairs."""

from __future__ import annotations

import random
from typing import Any

from litforge.data import encode_prompt_response
from litforge.datamodules.arithmetic import (GRADE_TEMPLATE, arithmetic_questions, grade_reply, graded_responses,
                                             incorrect_solution)
from litforge.datamodules.base import LMDataModule
from litforge.datamodules.preference import PreferenceDataModule
from litforge.errors import require
from litforge.plugins.judges.llm import fill


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


class SelfRewardSeedDataModule(ArithmeticSFTDataModule):
    """The seed of self-rewarding (Yuan et al. 2024, §2.2): SFT on solving (IFT) and grading (EFT) arithmetic at once.

    IFT examples are `ArithmeticSFTDataModule`'s (question -> chain of thought). EFT examples are the judge prompt
    (`template` filled with a question and a correct or corrupted response) -> `grade_reply` (the working, the
    rubric's points, "Score: N"), drawn over the same questions. Samples are built in memory, the same for the same
    seeds; the shuffle order mixes the two kinds.

    Args:
        num_eft: grading examples in the training split.
        num_val_eft: grading examples in the validation split besides its `num_val` questions (None = `num_val`;
            0 = validate on solving only, e.g. to stop at a target accuracy).
        template: the judge prompt with `{prompt}` and `{response}` slots; the self-rewarding `LLMJudge` must use the
            same.
        eft_seed: seed of the responses and their corruptions.
        **kwargs: see `ArithmeticSFTDataModule`.
    """

    def __init__(self, num_eft: int = 2000, num_val_eft: int | None = None, template: str = GRADE_TEMPLATE,
                 eft_seed: int = 0, **kwargs):
        kwargs.setdefault("max_length", 128)
        require("{response}" in template, "template",
                f"needs a {{response}} slot (and usually {{prompt}}), got {template!r}")
        super().__init__(**kwargs)
        require(num_val_eft is None or num_val_eft >= 0, "num_val_eft", f"must be >= 0 (or null), got {num_val_eft}")
        self.num_eft, self.num_val_eft, self.template, self.eft_seed = num_eft, num_val_eft, template, eft_seed

    def eft(self, split: str) -> list[dict[str, Any]]:
        """The grading examples of a split: {"prompt" (the filled judge prompt), "response" (the reply), "grade"}."""
        questions = self.questions(split)
        count = {"train": self.num_eft, "val": self.num_val_eft}.get(split)
        count = self.counts[split] if count is None else count
        operands = {q["prompt"]: q["operands"] for q in questions}
        return [{"prompt": fill(self.template, row["prompt"], row["response"]),
                 "response": grade_reply(operands[row["prompt"]], row["response"]), "grade": row["grade"]}
                for row in graded_responses(questions, count, self.eft_seed)] if questions and count else []

    def load(self, split):
        ift = super().load(split)
        if ift is None:
            return None
        return ift + [encode_prompt_response(self.tokenizer, row["prompt"], row["response"]) for row in self.eft(split)]


class ArithmeticPreferenceDataModule(PreferenceDataModule):
    """Synthetic pairs: an arithmetic question, its correct chain of thought (chosen) and a wrong one (rejected).

    Each pair keeps the question's reference "answer" as an extra key.

    Args:
        num_train: training questions.
        num_val: validation questions.
        num_test: held-out test questions.
        pairs_per_question: incorrect solutions drawn per question (each paired with the correct one).
        num_terms: numbers added per question.
        min_operand: smallest operand.
        max_operand: largest operand.
        task_seed: seed of the questions and of the wrong solutions.
        **kwargs: see `PreferenceDataModule`.
    """

    def __init__(self, num_train: int = 1000, num_val: int = 100, num_test: int = 0, pairs_per_question: int = 1,
                 num_terms: int = 3, min_operand: int = 10, max_operand: int = 99, task_seed: int = 0, **kwargs):
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)
        self.counts = {"train": num_train, "val": num_val, "test": num_test}
        self.pairs_per_question = pairs_per_question
        self.task = {"num_terms": num_terms, "min_operand": min_operand, "max_operand": max_operand}
        self.task_seed = task_seed

    def pairs(self, split):
        if not self.counts.get(split):
            return None
        rng = random.Random(f"pairs-{self.task_seed}-{split}")
        pairs = []
        for question in arithmetic_questions(self.counts[split], split, self.task_seed, **self.task):
            wrong = set()
            while len(wrong) < self.pairs_per_question:
                wrong.add(incorrect_solution(question["operands"], rng))
            for rejected in sorted(wrong):
                pairs.append({"prompt": question["prompt"], "chosen": question["solution"], "rejected": rejected,
                              "answer": question["answer"]})
        return pairs
