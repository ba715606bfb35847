"""LIFT data (Yuan et al. 2024, "Following Length Constraints in Instructions"): length-instructed preference pairs.

`augment_pairs` turns any list of raw preference pairs into LIFT training data: each augmented pair gets a word limit
(picked by a `LimitRule`), the limit is written into its prompt with the `LengthInstruction` template, and the pair is
relabelled (`litforge.length.relabel`); augmented pairs are mixed with the originals at a configured ratio.
`LengthInstructedDataModule` applies it to any `PreferenceDataModule` and adds a "length" validation set of prompts
with word limits (for `LiftDPO` to generate from), read by `read_length_prompts` or made by the source.

Departures from the paper:
    1. The mix is "all original pairs plus `ratio` x as many augmented ones" (the paper trains on both; its exact
       proportion is unsure). Augmented pairs come from a seeded shuffle of the originals, cycled when ratio > 1.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import torch
from litforge.lazy import lazy_default
from litforge.datamodules.length_prompts import read_length_prompts
from litforge.datamodules.preference import PairCollator, PreferenceDataModule

from litforge.data import DataError
from litforge.errors import require
from litforge.length import DEFAULT_TEMPLATE, LengthInstruction, count_words, relabel
from litforge.plugins.length import BetweenLengths, LimitRule

Pair = dict[str, Any]  # {"prompt", "chosen", "rejected"}; augmented pairs also carry "max_len"
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}  # added to a seed, so each split draws its own stream


def augment_pairs(pairs: Sequence[Pair], instruction: LengthInstruction, rule: LimitRule, ratio: float = 1.0,
                  seed: int = 0, keep_original: bool = True) -> tuple[list[Pair], dict[str, int]]:
    """LIFT training pairs from raw pairs, and counts of what happened (original, kept, flipped, dropped).

    Up to round(ratio x len(pairs)) augmented pairs are made: for each source pair (in a seeded order) a limit is
    picked from the responses' word counts, the limit instruction is prepended to the prompt, and the pair is
    relabelled: both within the limit keep the original preference, exactly one within wins, neither is dropped.
    """
    require(ratio >= 0, "ratio", f"must be >= 0, got {ratio}")
    rng = random.Random(seed)
    target = round(ratio * len(pairs))
    stats = {"original": len(pairs) if keep_original else 0, "kept": 0, "flipped": 0, "dropped": 0}
    augmented: list[Pair] = []
    order = list(range(len(pairs)))
    for _ in range(math.ceil(ratio)):
        rng.shuffle(order)
        for index in order:
            if len(augmented) >= target:
                break
            pair = pairs[index]
            limit = rule.pick(count_words(pair["chosen"]), count_words(pair["rejected"]), rng)
            result = relabel(pair["chosen"], pair["rejected"], limit)
            if result is None:
                stats["dropped"] += 1
                continue
            stats["kept" if result[0] == pair["chosen"] else "flipped"] += 1
            augmented.append({**pair, "prompt": instruction.apply(pair["prompt"], limit), "chosen": result[0],
                              "rejected": result[1], "max_len": limit})
    return (list(pairs) if keep_original else []) + augmented, stats


def check_pairs(pairs: Sequence[Pair], source: str) -> None:
    """DataError when a pair lacks a text field (pairs from generated sources have no file line: index is named)."""
    for index, pair in enumerate(pairs):
        for field in ("prompt", "chosen", "rejected"):
            if not isinstance(pair.get(field), str):
                raise DataError(source, index + 1, field, "missing or not a string")


class LengthInstructedDataModule(PreferenceDataModule):
    """LIFT data over any preference datamodule: its raw pairs, plus length-instructed relabelled copies of them.

    Validation (and test) also holds a set named "length": prompts with word limits, for the module to generate
    from (violation rate, words per limit). They come from `length_prompts_path` (AlpacaEval-LI / MT-Bench-LI shaped
    JSONL) or else from the source's `length_prompts(split, instruction)` when it has one (the synthetic task).

    Args:
        source: the preference datamodule whose raw pairs are augmented (only its `pairs` is used; the tokenizer
            and lengths are this datamodule's). None: no pairs (a `validate` run on length prompts only).
        template: the length instruction, with `{max_len}` and `{instruction}` slots.
        limit_rule: how each augmented pair's word limit is picked.
        ratio: augmented pairs per original pair.
        augment_val: augment the validation/test pairs too (so their DPO metrics are on LIFT pairs).
        length_prompts_path: JSONL of `{"instruction", "max_len"}` prompts for the "length" set.
        prepend_instruction: write the limit into each JSONL instruction with `template` (False when the file's
            instructions already state it).
        **kwargs: see `PreferenceDataModule`.
    """

    def __init__(self, source: PreferenceDataModule | None = None, template: str = DEFAULT_TEMPLATE,
                 limit_rule: LimitRule = lazy_default(BetweenLengths),
                 ratio: float = 1.0, augment_val: bool = True, length_prompts_path: str | None = None,
                 prepend_instruction: bool = True, **kwargs):
        require(ratio >= 0, "ratio", f"must be >= 0, got {ratio}")
        super().__init__(**kwargs)
        self.source = source
        self.instruction = LengthInstruction(template)
        self.limit_rule = limit_rule
        self.ratio = ratio
        self.augment_val = augment_val
        self.length_prompts_path = length_prompts_path
        self.prepend_instruction = prepend_instruction
        self.stats: dict[str, dict[str, int]] = {}
        self.collate = LengthPromptCollator(self.tokenizer.pad_token_id)

    def pairs(self, split):
        raw = self.source.pairs(split) if self.source is not None else None
        if not raw or split != "train" and not self.augment_val:
            return raw
        check_pairs(raw, f"<{type(self.source).__name__} {split}>")
        mixed, self.stats[split] = augment_pairs(raw, self.instruction, self.limit_rule, self.ratio,
                                                 seed=self.seed + SPLIT_SEEDS.get(split, 3))
        return mixed

    def load(self, split):
        pairs = super().load(split)
        prompts = self.length_prompts(split) if split != "train" else None
        if not prompts:
            return pairs
        return ({"pairs": pairs} if pairs else {}) | {"length": prompts}

    def length_prompts(self, split: str) -> list[dict[str, Any]] | None:
        """The length-instructed prompts of a split: {"prompt", "max_len", ...} each."""
        if self.length_prompts_path is not None:
            return read_length_prompts(self.length_prompts_path, self.instruction if self.prepend_instruction else None)
        if hasattr(self.source, "length_prompts"):
            return self.source.length_prompts(split, self.instruction)
        return None


class LengthPromptCollator(PairCollator):
    """Pairs as `PairCollator` does; length prompts as {"prompt": [str], "max_len": (B,) tensor, other fields: lists}.

    A baseline response for the length-instructed win rate travels as "output" (AlpacaEval-LI's field name).
    """

    def __call__(self, samples):
        if "chosen_input_ids" in samples[0]:
            return super().__call__(samples)
        batch = {key: [s.get(key) for s in samples] for key in samples[0]}
        batch["max_len"] = torch.tensor(batch["max_len"])
        return batch
