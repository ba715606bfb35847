"""Length-instructed preference data (LIFT, Yuan et al. 2024, "Following Length Constraints in Instructions").

`augment_pairs` turns any list of raw preference pairs into LIFT training data: each augmented pair gets a word limit
(picked by a `LimitRule`), the limit is written into its prompt with the `LengthInstruction` template, and the pair is
relabelled (`litforge.length.relabel`); augmented pairs are mixed with the originals at a configured ratio.
`LengthInstructedDataModule` applies it to any `PreferenceDataModule` and adds a "length" validation set of prompts
with word limits (for `LiftDPO` to generate from). `LengthBiasedTask` is the synthetic task of the miniature, `read_length_prompts` reads AlpacaEval-LI / MT-Bench-LI
shaped JSONL (`instruction`, `max_len`).

Departures from the paper:
    1. The mix is "all original pairs plus `ratio` x as many augmented ones" (the paper trains on both; its exact
       proportion is unsure). Augmented pairs come from a seeded shuffle of the originals, cycled when ratio > 1.
    2. The synthetic task replaces the paper's data: enumerated lists ("1a 2a 3a") on a topic letter; quality is
       whether every item is on topic and numbered in order. The numbering lets a tiny model count words.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import torch
from jsonargparse import lazy_instance
from litforge.datamodules.base import LMDataModule
from litforge.datamodules.preference import PairCollator, PreferenceDataModule

from litforge.data import DataError, encode_prompt_response, read_jsonl
from litforge.errors import require
from litforge.length import (
    DEFAULT_TEMPLATE,
    BetweenLengths,
    LengthInstruction,
    LimitRule,
    check_limit,
    count_words,
    relabel,
)

Pair = dict[str, Any]  # {"prompt", "chosen", "rejected"}; augmented pairs also carry "max_len"


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


def read_length_prompts(path: str, instruction: LengthInstruction | None = None) -> list[dict[str, Any]]:
    """Length-instructed prompts from JSONL lines `{"instruction": str, "max_len": int, ...}` (AlpacaEval-LI shape).

    Returns {"prompt", "instruction", "max_len"} per line (other fields are kept). When `instruction` (a template) is
    given, the limit is prepended to the instruction; pass None for files whose instructions already state it.
    A missing field, or a limit that is not a positive integer, raises DataError naming file, line and field.
    """
    prompts = []
    for record in read_jsonl(path):
        text = record.get_text("instruction")
        if "max_len" not in record:
            raise record.error("max_len", "missing")
        limit = check_limit(record["max_len"], record.path, record.line, "max_len")
        prompt = instruction.apply(text, limit) if instruction is not None else text
        prompts.append({**record, "prompt": prompt, "instruction": text, "max_len": limit})
    return prompts


class LengthBiasedTask:
    """Synthetic preference task whose preferred responses are biased long, so plain DPO learns to be long.

    A prompt asks for a list on a topic letter ("list c"); a response enumerates items "1c 2c 3c" (one word each).
    A good response has every item on topic and numbered in order; a bad one has an item on another topic.
    Each pair's chosen response is good; its rejected response is bad with probability `error_rate` (else good but
    different in length). The chosen response is the longer one with probability `long_bias`.

    Args:
        num_topics: how many topic letters (a, b, c, ...).
        min_words: shortest response.
        max_words: longest response.
        long_bias: probability that the chosen response is longer than the rejected one.
        error_rate: probability that the rejected response contains an off-topic item.
    """

    def __init__(self, num_topics: int = 8, min_words: int = 2, max_words: int = 12, long_bias: float = 0.9,
                 error_rate: float = 0.5):
        require(1 <= num_topics <= 26, "num_topics", f"must be in 1..26, got {num_topics}")
        require(min_words >= 1, "min_words", f"must be >= 1, got {min_words}")
        require(max_words > min_words, "max_words", f"must be > min_words={min_words}, got {max_words}")
        require(0 <= long_bias <= 1, "long_bias", f"must be in [0, 1], got {long_bias}")
        require(0 <= error_rate <= 1, "error_rate", f"must be in [0, 1], got {error_rate}")
        self.topics = [chr(ord("a") + i) for i in range(num_topics)]
        self.min_words, self.max_words = min_words, max_words
        self.long_bias, self.error_rate = long_bias, error_rate

    def prompt(self, topic: str) -> str:
        """The unconstrained prompt of a topic (the newline separates it from the response)."""
        return f"list {topic}\n"

    def response(self, topic: str, words: int, rng: random.Random | None = None, error: bool = False) -> str:
        """A list of `words` items on `topic`; with `error`, one item (chosen by rng) is on another topic."""
        items = [f"{k}{topic}" for k in range(1, words + 1)]
        if error:
            slot = rng.randrange(words)
            items[slot] = f"{slot + 1}{rng.choice([t for t in self.topics if t != topic] or ['z'])}"
        return " ".join(items)

    def is_good(self, prompt: str, response: str) -> bool:
        """True when `response` is a non-empty, in-order list of items on the prompt's topic."""
        topic = prompt.split()[-1]
        items = response.split()
        return bool(items) and items == [f"{k}{topic}" for k in range(1, len(items) + 1)]

    def pairs(self, count: int, seed: int) -> list[Pair]:
        """`count` length-biased preference pairs (no length instructions)."""
        rng = random.Random(seed)
        pairs = []
        for _ in range(count):
            topic = rng.choice(self.topics)
            short, long = sorted(rng.sample(range(self.min_words, self.max_words + 1), 2))
            chosen_words, rejected_words = (long, short) if rng.random() < self.long_bias else (short, long)
            error = rng.random() < self.error_rate
            pairs.append({"prompt": self.prompt(topic), "chosen": self.response(topic, chosen_words),
                          "rejected": self.response(topic, rejected_words, rng, error)})
        return pairs

    def demonstrations(self, count: int, seed: int, instruction: LengthInstruction | None = None,
                       instructed_share: float = 0.5) -> list[dict[str, str]]:
        """SFT data for the starting model: good responses of any length, whatever limit the prompt states.

        A share of the prompts carry a length instruction with a random limit the response ignores, so the starting
        model has seen the template but not learned to follow it (as the paper's starting models violate limits).
        """
        rng = random.Random(seed)
        samples = []
        for _ in range(count):
            topic = rng.choice(self.topics)
            prompt = self.prompt(topic)
            if instruction is not None and rng.random() < instructed_share:
                prompt = instruction.apply(prompt, rng.randint(self.min_words, self.max_words))
            samples.append({"prompt": prompt, "response": self.response(topic, rng.randint(self.min_words,
                                                                                             self.max_words))})
        return samples

    def length_prompts(self, count: int, seed: int, instruction: LengthInstruction) -> list[dict[str, Any]]:
        """Held-out length-instructed prompts, a limit drawn per prompt from [min_words, max_words - 2]."""
        rng = random.Random(seed)
        prompts = []
        for _ in range(count):
            topic = rng.choice(self.topics)
            limit = rng.randint(self.min_words, max(self.min_words, self.max_words - 2))
            prompts.append({"prompt": instruction.apply(self.prompt(topic), limit), "instruction": self.prompt(topic),
                            "max_len": limit})
        return prompts


SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


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
                 limit_rule: LimitRule = lazy_instance(BetweenLengths),
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


def check_pairs(pairs: Sequence[Pair], source: str) -> None:
    """DataError when a pair lacks a text field (pairs from generated sources have no file line: index is named)."""
    for index, pair in enumerate(pairs):
        for field in ("prompt", "chosen", "rejected"):
            if not isinstance(pair.get(field), str):
                raise DataError(source, index + 1, field, "missing or not a string")
