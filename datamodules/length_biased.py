"""DataModules of the synthetic list task (`LengthBiasedTask`): its preference pairs and its demonstrations."""

from __future__ import annotations

from typing import Any

from litforge.datamodules.base import LMDataModule
from litforge.datamodules.lift import SPLIT_SEEDS
from litforge.datamodules.list_task import LengthBiasedTask
from litforge.datamodules.preference import PreferenceDataModule

from litforge.data import encode_prompt_response
from litforge.errors import require
from litforge.length import DEFAULT_TEMPLATE, LengthInstruction


class LengthBiasedPreferenceDataModule(PreferenceDataModule):
    """The synthetic `LengthBiasedTask` as a preference source: long-biased pairs, and held-out length prompts.

    Args:
        num_train: training pairs.
        num_val: validation pairs.
        num_length_prompts: held-out length-instructed prompts per evaluation split.
        num_topics: see `LengthBiasedTask`.
        min_words: see `LengthBiasedTask`.
        max_words: see `LengthBiasedTask`.
        long_bias: see `LengthBiasedTask`.
        error_rate: see `LengthBiasedTask`.
        task_seed: seed of the pairs and prompts.
        **kwargs: see `PreferenceDataModule`.
    """

    def __init__(self, num_train: int = 2000, num_val: int = 200, num_length_prompts: int = 200, num_topics: int = 8,
                 min_words: int = 2, max_words: int = 12, long_bias: float = 0.9, error_rate: float = 0.5,
                 task_seed: int = 0, **kwargs):
        kwargs.setdefault("max_length", 96)
        super().__init__(**kwargs)
        self.task = LengthBiasedTask(num_topics, min_words, max_words, long_bias, error_rate)
        self.counts = {"train": num_train, "val": num_val, "test": num_val}
        self.num_length_prompts = num_length_prompts
        self.task_seed = task_seed

    def pairs(self, split):
        count = self.counts.get(split)
        return self.task.pairs(count, 1000 * self.task_seed + SPLIT_SEEDS[split]) if count else None

    def length_prompts(self, split: str, instruction: LengthInstruction) -> list[dict[str, Any]] | None:
        """Held-out length-instructed prompts (seeded apart from the pairs)."""
        if not self.num_length_prompts:
            return None
        seed = 1000 * self.task_seed + 10 + SPLIT_SEEDS.get(split, 3)
        return self.task.length_prompts(self.num_length_prompts, seed, instruction)


class LengthBiasedSFTDataModule(LMDataModule):
    """Demonstrations of the synthetic task, to train the starting model (see `LengthBiasedTask.demonstrations`).

    Args:
        num_train: training demonstrations.
        num_val: validation demonstrations.
        instructed_share: share of prompts carrying a length instruction that the response ignores.
        template: the length instruction.
        num_topics: see `LengthBiasedTask`.
        min_words: see `LengthBiasedTask`.
        max_words: see `LengthBiasedTask`.
        task_seed: seed of the demonstrations.
        **kwargs: see `LMDataModule`.
    """

    def __init__(self, num_train: int = 3000, num_val: int = 200, instructed_share: float = 0.5,
                 template: str = DEFAULT_TEMPLATE, num_topics: int = 8, min_words: int = 2, max_words: int = 12,
                 task_seed: int = 0, **kwargs):
        require(0 <= instructed_share <= 1, "instructed_share", f"must be in [0, 1], got {instructed_share}")
        kwargs.setdefault("max_length", 96)
        super().__init__(**kwargs)
        self.task = LengthBiasedTask(num_topics, min_words, max_words)
        self.counts = {"train": num_train, "val": num_val}
        self.instructed_share = instructed_share
        self.instruction = LengthInstruction(template)
        self.task_seed = task_seed

    def load(self, split):
        if not self.counts.get(split):
            return None
        demos = self.task.demonstrations(self.counts[split], 1000 * self.task_seed + SPLIT_SEEDS[split],
                                         self.instruction, self.instructed_share)
        return [encode_prompt_response(self.tokenizer, d["prompt"], d["response"]) for d in demos]
