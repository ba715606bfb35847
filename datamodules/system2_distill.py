"""Datamodules of System 2 distillation (Yu et al. 2024) on the synthetic tasks of `datamodules/system2_tasks.py`:
the seed SFT stage (labelled skill data) and the distillation stage (unlabeled inputs, and the rows the objective
builds from them).

Departures from the paper: see `datamodules/system2_tasks.py`.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

from litforge.datamodules.base import LMDataModule
from litforge.datamodules.iterative import GeneratedRows
from litforge.datamodules.system2_tasks import System2Task, task_inputs

from litforge.data import encode_prompt_response
from litforge.errors import require


class System2SeedDataModule(LMDataModule):
    """SFT on a task's seed rows (loss on the response): the skills the program's steps use and System 1's planted
    weakness. Rows whose prompt is the System 1 prompt of a distillation or test input are dropped.

    Args:
        task: the synthetic task (S2ATask, RaRTask, BSMTask, CoTTask).
        num_train: seed rows drawn for training (fewer remain when some are dropped).
        num_val: seed rows drawn for validation (teacher-forced loss; 0 = none).
        num_distill: distillation inputs the seed rows are kept apart from (the distill config's, same task_seed).
        num_test: test inputs the seed rows are kept apart from.
        task_seed: seed of the rows and of the inputs.
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, task: System2Task, num_train: int = 4000, num_val: int = 0, num_distill: int = 200,
                 num_test: int = 200, task_seed: int = 0, **kwargs):
        kwargs.setdefault("max_length", 96)
        require(num_train >= 1, "num_train", f"must be >= 1, got {num_train}")
        super().__init__(**kwargs)
        self.task, self.task_seed = task, task_seed
        self.counts = {"train": num_train, "val": num_val}
        self.num_distill, self.num_test = num_distill, num_test

    def rows(self, split: str) -> list[dict[str, str]]:
        """The seed rows of a split ("train", "val"), none of them a distillation or test input's prompt."""
        hard = task_inputs(self.task, self.num_distill, self.num_test, self.task_seed)
        held = {self.task.system1_prompt(item) for items in hard.values() for item in items}
        rng = random.Random(self.task_seed * 1000 + (3 if split == "train" else 4))
        return [row for row in self.task.seed_rows(self.counts[split], rng) if row["prompt"] not in held]

    def load(self, split):
        if not self.counts.get(split):
            return None
        return encode_rows(self.tokenizer, self.rows(split), self.max_length)


class System2DistillDataModule(GeneratedRows, LMDataModule):
    """Serves a task's unlabeled distillation inputs (`prompts("train")`) and labelled test inputs
    (`prompts("val")`) to `System2Distillation`, and trains on the `{"prompt", "response"}` rows it hands back. It
    never calls the model; an input's label is there for the objective's diagnostics only.

    Args:
        task: the synthetic task (the seed config's, with the same task_seed).
        num_distill: distillation inputs.
        num_test: held-out test inputs.
        task_seed: seed of the inputs.
        **kwargs: see `GeneratedRows` (prompts_per_iteration) and `LMDataModule`.
    """

    def __init__(self, task: System2Task, num_distill: int = 200, num_test: int = 200, task_seed: int = 0,
                 **kwargs):
        kwargs.setdefault("max_length", 96)
        require(num_distill >= 1, "num_distill", f"must be >= 1, got {num_distill}")
        super().__init__(**kwargs)
        self.task, self.task_seed = task, task_seed
        self.num_distill, self.num_test = num_distill, num_test

    def prompts(self, split):
        inputs = task_inputs(self.task, self.num_distill, self.num_test, self.task_seed)
        items = inputs["distill" if split == "train" else "test"]
        # "prompt" (System 1's) and "reference" follow GeneratedRows' shape; the program reads the input fields
        return [dict(item, prompt=self.task.system1_prompt(item), reference=item["label"]) for item in items]

    def load(self, split):
        if split != "train" or self.rows is None:
            return None
        return encode_rows(self.tokenizer, self.rows, self.max_length)


def encode_rows(tokenizer, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, list[int]]]:
    """Tokenized `{"prompt", "response"}` rows (bos + prompt + response + eos, loss on the response); rows longer
    than `max_length` are dropped with a warning."""
    samples = [encode_prompt_response(tokenizer, row["prompt"], row["response"]) for row in rows]
    kept = [sample for sample in samples if len(sample["input_ids"]) <= max_length]
    if len(kept) < len(samples):
        warnings.warn(f"{len(samples) - len(kept)} of {len(samples)} rows are longer than max_length={max_length} "
                      "tokens and were dropped")
    return kept
