"""Datamodules of ToolVerifier (Mekala et al. 2024): SFT on the synthetic task's rows (seen tools only), the task's
seen and unseen evaluation inputs, and a ToolSelect-shaped CSV file, served to `ToolInference` for `validate`.

Departures from the paper: see `datamodules/tool_tasks.py` and `plugins/tools/library.py`.
"""

from __future__ import annotations

import random
from typing import Any

from litforge.data import Collator
from litforge.datamodules.base import LMDataModule
from litforge.datamodules.system2_distill import encode_rows
from litforge.datamodules.system2_inputs import System2InputsDataModule, as_list
from litforge.datamodules.tool_tasks import ToolTask
from litforge.plugins.tools.library import read_toolselect_csv
from litforge.tokenizer import trained_tokenizer

from litforge.errors import require

SPLITS = ("seen", "unseen")


def evaluation_inputs(task: ToolTask, num_seen: int, num_unseen: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The task's evaluation inputs `{"seen": [...], "unseen": [...]}`, seeded by `seed`; `line` numbers them."""
    inputs = {}
    for offset, (split, count) in enumerate(zip(SPLITS, (num_seen, num_unseen)), start=1):
        items = task.inputs(split, count, random.Random(seed * 1000 + offset))
        inputs[split] = [dict(item, line=k) for k, item in enumerate(items, start=1)]
    return inputs


class ToolSFTDataModule(LMDataModule):
    """SFT (loss on the response) on the task's rows of every program step, seen tools only; a row whose request is
    an evaluation input's is dropped.

    Args:
        task: the synthetic tool task.
        num_train: rows drawn for training (fewer remain when some are dropped).
        num_val: rows drawn for validation (teacher-forced loss; 0 = none).
        num_seen: seen evaluation inputs the rows are kept apart from (the evaluation config's, same task_seed).
        num_unseen: unseen evaluation inputs (their gold tools are never in a row anyway).
        task_seed: seed of the rows and of the evaluation inputs.
        vocab_size: None reads bytes (or the `tokenizer` directory); a number trains a byte-level BPE of that many
            tokens on the task's text (`ToolTask.corpus`: the whole library's descriptions, seen and unseen, as a
            pretrained model's vocabulary covers words it was not tuned on), so that each word of the task is one
            token (`litforge.tokenizer.trained_tokenizer`). It is saved with the checkpoint and the export.
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, task: ToolTask, num_train: int = 8000, num_val: int = 0, num_seen: int = 200,
                 num_unseen: int = 200, task_seed: int = 0, vocab_size: int | None = None, **kwargs):
        kwargs.setdefault("max_length", 320)
        require(num_train >= 1, "num_train", f"must be >= 1, got {num_train}")
        require(vocab_size is None or kwargs.get("tokenizer") is None, "vocab_size",
                "trains its own tokenizer: give vocab_size or tokenizer, not both")
        super().__init__(**kwargs)
        if vocab_size is not None:
            require(vocab_size > 259, "vocab_size", f"must exceed the 256 bytes and 3 special tokens, got {vocab_size}")
            self.tokenizer = trained_tokenizer(task.corpus(), vocab_size)
            self.collate = Collator(self.tokenizer.pad_token_id)
        self.task, self.task_seed = task, task_seed
        self.counts = {"train": num_train, "val": num_val}
        self.num_seen, self.num_unseen = num_seen, num_unseen

    def rows(self, split: str) -> list[dict[str, str]]:
        """The SFT rows of a split ("train", "val"), none of them about an evaluation input's request."""
        held = {item["question"] for items in evaluation_inputs(self.task, self.num_seen, self.num_unseen,
                                                                 self.task_seed).values() for item in items}
        rng = random.Random(self.task_seed * 1000 + (3 if split == "train" else 4))
        return [row for row in self.task.sft_rows(self.counts[split], rng) if row["question"] not in held]

    def load(self, split):
        if not self.counts.get(split):
            return None
        return encode_rows(self.tokenizer, self.rows(split), self.max_length)


class ToolEvalDataModule(LMDataModule):
    """Serves the task's evaluation inputs as two named sets, "seen" and "unseen" (validate: `val_seen/*`,
    `val_unseen/*`), to `ToolInference`.

    Args:
        task: the synthetic tool task (the SFT config's).
        num_seen: inputs whose gold tool was trained on.
        num_unseen: inputs whose gold tool is held out (an unseen family, or an unseen sibling in a seen family).
        task_seed: seed of the inputs (the SFT config's, so its rows are kept apart from them).
        batch_size: inputs per step; the program batches each generation step over them.
        **kwargs: see `LMDataModule` (tokenizer: the model's local tokenizer directory).
    """

    def __init__(self, task: ToolTask, num_seen: int = 200, num_unseen: int = 200, task_seed: int = 0,
                 batch_size: int = 64, **kwargs):
        require(num_seen >= 1 and num_unseen >= 1, "num_seen", "num_seen and num_unseen must both be >= 1")
        super().__init__(batch_size=batch_size, **kwargs)
        self.task, self.task_seed = task, task_seed
        self.num_seen, self.num_unseen = num_seen, num_unseen
        self.collate = as_list

    def load(self, split):
        if split == "train":
            return None  # evaluation only
        return evaluation_inputs(self.task, self.num_seen, self.num_unseen, self.task_seed)


class ToolSelectDataModule(System2InputsDataModule):
    """Serves a ToolSelect-shaped CSV (`query,tools,tool,arguments`, see `plugins/tools/library.py`) for `validate`
    (as "val") and `predict`/`test` (as "test"); every row is checked before any generation.

    Args:
        path: the CSV file.
        **kwargs: see `System2InputsDataModule` (batch_size: inputs per step; tokenizer: the model's local tokenizer
            directory).
    """

    def load(self, split):
        if split == "train":
            return None
        return read_toolselect_csv(self.path)
