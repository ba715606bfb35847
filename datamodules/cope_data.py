"""DataModules of the CoPE tasks (`datamodules/cope_tasks.py`): counting, Flip-Flop and selective copy.

Examples are generated in memory from a seed and also writable as JSONL `{"prompt", "response"}` lines that
`SFTDataModule` reads back. Validation sets are named, so each is logged under its own name (e.g.
`val_ood_sparse/error`).
"""

from __future__ import annotations

import os
import random
from typing import Any

from litforge.datamodules.base import LMDataModule
from litforge.datamodules.cope_tasks import counting_example, flipflop_example, selective_copy_example

from litforge.data import encode_prompt_response, write_jsonl
from litforge.errors import require


class SyntheticTaskDataModule(LMDataModule):
    """Base of the CoPE tasks: `make(rng, settings)` writes one example; subclasses name the settings per set.

    Args:
        num_train: training examples.
        num_val: examples in each validation (and test) set.
        task_seed: seed of the examples (the shuffle seed is `seed`); train, val and test use different streams.
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, num_train: int = 5000, num_val: int = 300, task_seed: int = 0, **kwargs):
        kwargs.setdefault("max_length", 256)
        super().__init__(**kwargs)
        self.num_train, self.num_val, self.task_seed = num_train, num_val, task_seed

    def make(self, rng: random.Random, settings: dict[str, Any]) -> dict[str, str]:
        """One {"prompt", "response"} example."""
        raise NotImplementedError

    def train_settings(self) -> dict[str, Any]:
        """Generator settings of the training data."""
        return {}

    def eval_settings(self) -> dict[str, dict[str, Any]]:
        """Generator settings of each named evaluation set."""
        return {"in_dist": self.train_settings()}

    def examples(self, split: str) -> dict[str, list[dict[str, str]]]:
        """The text examples of a split, by set name ("train" for the training split)."""
        sets = {"train": self.train_settings()} if split == "train" else self.eval_settings()
        count = self.num_train if split == "train" else self.num_val
        out = {}
        for name, settings in sets.items():
            rng = random.Random(f"{type(self).__name__}-{self.task_seed}-{split}-{name}")
            out[name] = [self.make(rng, settings) for _ in range(count)]
        return out

    def load(self, split):
        sets = {name: [self.encode(example) for example in examples]
                for name, examples in self.examples(split).items()}
        return sets["train"] if split == "train" else sets

    def encode(self, example: dict[str, str]) -> dict[str, list[int]]:
        """Tokens of one example, refused if longer than `max_length`."""
        sample = encode_prompt_response(self.tokenizer, example["prompt"], example["response"])
        require(len(sample["input_ids"]) <= self.max_length, "max_length",
                f"{type(self).__name__}: an example has {len(sample['input_ids'])} tokens, more than "
                f"max_length={self.max_length}; raise max_length or shorten the task")
        return sample

    def write_jsonl(self, folder: str | os.PathLike) -> list[str]:
        """Write every split and set as `<folder>/<split>[_<set>].jsonl` (prompt/response lines); returns the paths."""
        paths = []
        for split in ("train", "val", "test"):
            for name, examples in self.examples(split).items():
                path = os.path.join(folder, split if split == "train" else f"{split}_{name}") + ".jsonl"
                write_jsonl(path, examples)
                paths.append(path)
        return paths


class CountingDataModule(SyntheticTaskDataModule):
    """Counting: the value of a variable after a program of `pass;`, `x ++;`, `x = 0 ;` (1, 3 or 5 variables).

    Args:
        num_vars: number of variables.
        min_statements: fewest statements after the initial resets.
        max_statements: most statements (test sets also use this range).
        max_value: cap on any variable's value.
        **kwargs: see `SyntheticTaskDataModule`.
    """

    def __init__(self, num_vars: int = 1, min_statements: int = 8, max_statements: int = 24, max_value: int = 10,
                 **kwargs):
        super().__init__(**kwargs)
        self.settings = {"num_vars": num_vars, "min_statements": min_statements,
                         "max_statements": max_statements, "max_value": max_value}

    def make(self, rng, settings):
        return counting_example(rng, **settings)

    def train_settings(self):
        return self.settings


class FlipFlopDataModule(SyntheticTaskDataModule):
    """Flip-Flop: recall the last written bit; validated in distribution and at a sparser and a denser ignore rate.

    Args:
        length: instructions per sequence.
        p_ignore: probability of an ignore instruction in training (and `in_dist`).
        p_ignore_sparse: ignore probability of the `ood_sparse` set (rarer writes and reads).
        p_ignore_dense: ignore probability of the `ood_dense` set.
        **kwargs: see `SyntheticTaskDataModule`.
    """

    def __init__(self, length: int = 32, p_ignore: float = 0.8, p_ignore_sparse: float = 0.98,
                 p_ignore_dense: float = 0.1, **kwargs):
        require(length >= 2, "length", f"must be >= 2, got {length}")
        for field, rate in [("p_ignore", p_ignore), ("p_ignore_sparse", p_ignore_sparse),
                            ("p_ignore_dense", p_ignore_dense)]:
            require(0 <= rate <= 1, field, f"must be in [0, 1], got {rate}")
        super().__init__(**kwargs)
        self.length, self.rates = length, {"in_dist": p_ignore, "ood_sparse": p_ignore_sparse,
                                           "ood_dense": p_ignore_dense}

    def make(self, rng, settings):
        return flipflop_example(rng, self.length, **settings)

    def train_settings(self):
        return {"p_ignore": self.rates["in_dist"]}

    def eval_settings(self):
        return {name: {"p_ignore": rate} for name, rate in self.rates.items()}


class SelectiveCopyDataModule(SyntheticTaskDataModule):
    """Selective copy: copy the letters of a mostly blank sequence; validated at other blank densities.

    Args:
        num_tokens: letters to copy.
        length: sequence length in training (the `in_dist` set).
        length_sparse: length of the `ood_sparse` set (more blanks between the same number of letters).
        length_dense: length of the `ood_dense` set (fewer blanks).
        **kwargs: see `SyntheticTaskDataModule`.
    """

    def __init__(self, num_tokens: int = 8, length: int = 32, length_sparse: int = 64, length_dense: int = 16,
                 **kwargs):
        require(num_tokens >= 1, "num_tokens", f"must be >= 1, got {num_tokens}")
        for field, length_of in [("length", length), ("length_sparse", length_sparse), ("length_dense", length_dense)]:
            require(length_of >= num_tokens, field, f"must be >= num_tokens={num_tokens}, got {length_of}")
        super().__init__(**kwargs)
        self.num_tokens = num_tokens
        self.lengths = {"in_dist": length, "ood_sparse": length_sparse, "ood_dense": length_dense}

    def make(self, rng, settings):
        return selective_copy_example(rng, num_tokens=self.num_tokens, **settings)

    def train_settings(self):
        return {"length": self.lengths["in_dist"]}

    def eval_settings(self):
        return {name: {"length": length} for name, length in self.lengths.items()}
