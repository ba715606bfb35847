"""The synthetic task of the LIFT miniature: enumerated lists on a topic letter, with long-biased preferences.

Departure from the paper: this task replaces the paper's data. A response enumerates items ("1a 2a 3a") on a topic
letter; quality is whether every item is on topic and numbered in order. The numbering lets a tiny model count words.
"""

from __future__ import annotations

import random
from typing import Any

from litforge.errors import require
from litforge.length import LengthInstruction

Pair = dict[str, Any]  # {"prompt", "chosen", "rejected"}


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
