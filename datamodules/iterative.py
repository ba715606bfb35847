"""Prompts for an iterative objective, and the training rows it hands back at each iteration boundary.

The objective (lightning_modules/iterative.py) generates, scores and builds rows; a datamodule with `GeneratedRows`
only serves: `prompts` (the generation pool, and held-out prompts under "val"), `iteration_prompts(k)` (the slice
iteration k generates for), `graded(count)` (fixed responses with true grades, where the task can grade) and the
rows the objective handed over with `set_rows`. It never calls the model. `IterativeDataModule` serves them as
preference pairs; an objective that builds other rows (SFT targets, say) mixes `GeneratedRows` into its own
datamodule.

Departure from the papers (Yuan et al. 2024; Pang et al. 2024): the prompts of an iteration are either all prompts
every iteration (iterative RPO) or a fresh slice of `prompts_per_iteration` per iteration (self-rewarding's "new
prompts"); the papers draw new prompts from a larger pool, which a fixed synthetic set imitates by slicing.
"""

from __future__ import annotations

from typing import Any

from litforge.datamodules.arithmetic import arithmetic_questions, graded_responses
from litforge.datamodules.preference import PreferenceDataModule

from litforge.data import read_jsonl
from litforge.errors import ConfigError, require


class GeneratedRows:
    """Mixed in before an `LMDataModule` subclass: prompts to generate for, and training rows taken from the
    objective. The subclass gives `prompts(split)` and turns `self.rows` into samples in `load("train")`.

    Args:
        prompts_per_iteration: None = every prompt each iteration; else a fresh slice of this many per iteration.
        **kwargs: see the datamodule this is mixed into.
    """

    def __init__(self, prompts_per_iteration: int | None = None, **kwargs):
        require(prompts_per_iteration is None or prompts_per_iteration >= 1, "prompts_per_iteration",
                f"must be >= 1 (or left out), got {prompts_per_iteration}")
        super().__init__(**kwargs)
        self.prompts_per_iteration = prompts_per_iteration
        self.rows: list[dict[str, Any]] | None = None

    def prompts(self, split: str) -> list[dict[str, Any]]:
        """`{"prompt": str, "reference": str | None}` of a split ("train" = the generation pool, "val" = held out)."""
        raise NotImplementedError

    def graded(self, count: int) -> list[dict[str, Any]]:
        """`count` fixed held-out `{"prompt", "response", "grade", "reference"}` rows with true grades, for the
        objective's `num_judge_heldout` (subclasses whose task can grade a response provide them)."""
        raise ConfigError("num_judge_heldout", f"{type(self).__name__} has no graded responses to measure the "
                                               "judge's agreement on; set it to 0")

    def iteration_prompts(self, k: int) -> list[dict[str, Any]]:
        """The prompts iteration k generates for."""
        if self.prompts_per_iteration is None:
            return self.pool
        start = k * self.prompts_per_iteration
        return [self.pool[(start + i) % len(self.pool)] for i in range(self.prompts_per_iteration)]

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        """Take the objective's training rows for the coming epochs."""
        self.rows = rows
        self.splits["train"] = self.load("train")

    def setup(self, stage: str) -> None:
        self.pool = self.prompts("train")
        if not self.pool:
            raise ConfigError("data", f"{type(self).__name__} has no training prompts")
        if stage != "fit":  # the training rows come from the objective at each iteration boundary
            super().setup(stage)

    def train_dataloader(self):
        if self.rows is None:
            raise ConfigError("model", f"{type(self).__name__} serves the rows an iterative objective hands it "
                                       "(IterativeRPO, IterativeCringe, SelfRewarding); none were handed")
        return super().train_dataloader()


class IterativeDataModule(GeneratedRows, PreferenceDataModule):
    """Self-generated preference pairs `{"prompt", "chosen", "rejected", ...}`: subclasses give prompts (and
    references) with `prompts(split)`.

    Args:
        truncate: cut generated responses that overflow `max_length` (with a warning) instead of failing.
        **kwargs: see `GeneratedRows` (prompts_per_iteration) and `PreferenceDataModule` (tokenizer, max_length,
            batch sizes).
    """

    def __init__(self, truncate: bool = True, **kwargs):
        super().__init__(truncate=truncate, **kwargs)

    def pairs(self, split):
        return self.rows if split == "train" else None


class ArithmeticIterativeDataModule(IterativeDataModule):
    """The arithmetic questions of `datamodules/arithmetic.py` as prompts, their sums as reference answers (and
    graded responses to test questions for `num_judge_heldout`).

    Args:
        num_train: questions the policy generates for.
        num_val: held-out questions (the objective answers `num_heldout` of them).
        num_terms: numbers added per question.
        min_operand: smallest operand.
        max_operand: largest operand.
        task_seed: seed of the questions.
        max_length: the context length of a pair (a question and its answer fit in 64 tokens).
        **kwargs: see `IterativeDataModule`.
    """

    def __init__(self, num_train: int = 200, num_val: int = 100, num_terms: int = 3, min_operand: int = 10,
                 max_operand: int = 99, task_seed: int = 0, max_length: int = 64, **kwargs):
        require(num_train >= 1, "num_train", f"must be >= 1 (the prompts the policy generates for), got {num_train}")
        require(num_val >= 0, "num_val", f"must be >= 0, got {num_val}")
        super().__init__(max_length=max_length, **kwargs)
        self.counts = {"train": num_train, "val": num_val, "test": num_val}
        self.task = dict(num_terms=num_terms, min_operand=min_operand, max_operand=max_operand)
        self.task_seed = task_seed

    def prompts(self, split):
        return [{"prompt": q["prompt"], "reference": str(q["answer"])}
                for q in arithmetic_questions(self.counts[split], split, self.task_seed, **self.task)]

    def graded(self, count):
        """Test-split questions (disjoint from the training pool and the held-out prompts) answered by correct and
        corrupted responses with their true grades (`grade_points`), balanced over grades 0-5."""
        return graded_responses(arithmetic_questions(count, "test", self.task_seed, **self.task), count,
                                seed=self.task_seed, balanced=True)


class JSONLIterativeDataModule(IterativeDataModule):
    """Prompts from JSONL lines `{"prompt": str, "reference": str (optional)}`.

    Args:
        prompts_path: the generation pool.
        heldout_path: held-out prompts (optional).
        **kwargs: see `IterativeDataModule`.
    """

    def __init__(self, prompts_path: str, heldout_path: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.paths = {"train": prompts_path, "val": heldout_path}

    def prompts(self, split):
        if self.paths.get(split) is None:
            return []
        rows = []
        for record in read_jsonl(self.paths[split]):
            reference = record.get_typed("reference", (str, int, float), required=False)
            rows.append({"prompt": record.get_text("prompt"),
                         "reference": None if reference is None else str(reference)})
        return rows
