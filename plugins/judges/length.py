"""Word-limit compliance, the constraint of length-instructed prompts (LIFT, Yuan et al. 2024)."""

from __future__ import annotations

from litforge.plugins.judges.base import Judge

from litforge.errors import require
from litforge.length import DEFAULT_TEMPLATE, LengthInstruction, count_words


class LengthJudge(Judge):
    """1.0 when the response has at most the word limit, else 0.0.

    The limit is read from the prompt (a length instruction made with `template`), else `max_words`; a prompt with
    neither gets no verdict (None). Words are counted by `litforge.length.count_words`.

    Args:
        max_words: the limit for prompts that carry no length instruction (None: such prompts get no verdict).
        template: the length-instruction template prompts were made with.
    """

    def __init__(self, max_words: int | None = None, template: str = DEFAULT_TEMPLATE):
        require(max_words is None or max_words >= 1, "max_words", f"must be >= 1 or null, got {max_words}")
        self.max_words = max_words
        self.instruction = LengthInstruction(template)

    def limit(self, prompt: str) -> int | None:
        """The word limit that applies to a prompt."""
        parsed = self.instruction.parse(prompt)
        return parsed[1] if parsed is not None else self.max_words

    def score(self, prompts, responses, references=None):
        scores = []
        for prompt, response in zip(prompts, responses):
            limit = self.limit(prompt)
            if limit is None:
                self.failures += 1
                scores.append(None)
            else:
                scores.append(float(count_words(response) <= limit))
        return scores
