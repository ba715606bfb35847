"""Length instructions (LIFT, Yuan et al. 2024, "Following Length Constraints in Instructions").

The one place that knows what a "word" is and what a length instruction looks like. Training (pair relabelling),
validation metrics, the benchmark and the length judge all count words with `count_words`.

Departures from the paper:
    1. Words are whitespace-separated pieces (`len(text.split())`); the paper counts words but names no tokenizer.
    2. The template's wording is ours; it keeps the paper's shape (a word limit, a blank line, the instruction).
    3. How the limit of an augmented pair is drawn is not fully public (unsure): it is a `LimitRule` named in YAML
       (plugins/length/); `BetweenLengths` (default) puts the limit between the two responses' lengths, so exactly
       one fits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from litforge.data import DataError
from litforge.errors import require

DEFAULT_TEMPLATE = "Answer in at most {max_len} words.\n\n{instruction}"


def count_words(text: str) -> int:
    """Number of words in `text`: the pieces between runs of whitespace (punctuation stays with its word).

    count_words("Hello, big  world!\\n") == 3; count_words("") == 0.
    """
    return len(text.split())


def check_limit(max_len: object, path: str | None = None, line: int | None = None, field: str = "max_len") -> int:
    """`max_len` as an int, or a DataError naming file, line and field when it is not a positive integer."""
    if isinstance(max_len, bool) or not isinstance(max_len, int):
        raise DataError(path, line, field, f"word limit must be a positive integer, got {max_len!r}")
    if max_len <= 0:
        raise DataError(path, line, field, f"word limit must be positive, got {max_len}")
    return max_len


def within_limit(response: str, max_len: int) -> bool:
    """True when `response` has at most `max_len` words."""
    return count_words(response) <= max_len


class LengthInstruction:
    """Prepends a word-limit instruction to a prompt, and recovers the original prompt and limit from the result.

    Args:
        template: text with exactly one `{max_len}` and one `{instruction}`; the rest is literal.
    """

    def __init__(self, template: str = DEFAULT_TEMPLATE):
        for slot in ("{max_len}", "{instruction}"):
            require(template.count(slot) == 1, "template", f"must contain {slot} exactly once: {template!r}")
        literal = re.split(r"(\{max_len\}|\{instruction\})", template)
        require(not any("{" in part or "}" in part for part in literal[::2]), "template",
                f"may only use the slots {{max_len}} and {{instruction}}: {template!r}")
        self.template = template
        groups = {"{max_len}": r"(?P<max_len>[0-9]+)", "{instruction}": r"(?P<instruction>.*)"}
        pattern = "".join(groups.get(part, re.escape(part)) for part in literal)
        self.pattern = re.compile(pattern, re.DOTALL)

    def apply(self, instruction: str, max_len: int) -> str:
        """The prompt asking for at most `max_len` words in answer to `instruction`."""
        return self.template.replace("{max_len}", str(check_limit(max_len))).replace("{instruction}", instruction)

    def parse(self, prompt: str) -> tuple[str, int] | None:
        """(instruction, max_len) of a prompt made by `apply`, or None when the prompt carries no length instruction."""
        match = self.pattern.fullmatch(prompt)
        if match is None or int(match["max_len"]) <= 0:
            return None
        return match["instruction"], int(match["max_len"])


def relabel(chosen: str, rejected: str, max_len: int) -> tuple[str, str] | None:
    """The LIFT preference under a word limit: (winner, loser), or None when the pair is dropped.

    Both within the limit: the original preference. Exactly one within: it wins. Neither: dropped.
    """
    chosen_fits, rejected_fits = within_limit(chosen, max_len), within_limit(rejected, max_len)
    if chosen_fits and rejected_fits:
        return chosen, rejected
    if chosen_fits != rejected_fits:
        return (chosen, rejected) if chosen_fits else (rejected, chosen)
    return None


def violation_rate(responses: Sequence[str], limits: Sequence[int]) -> float:
    """Share of responses longer than their word limit (0.0 for no responses)."""
    if len(responses) != len(limits):
        raise ValueError(f"{len(responses)} responses but {len(limits)} limits")
    if not responses:
        return 0.0
    return sum(not within_limit(r, check_limit(limit)) for r, limit in zip(responses, limits)) / len(responses)


def words_per_limit(responses: Sequence[str], limits: Sequence[int]) -> float:
    """Mean of words / limit over the responses (1.0 = exactly at the limit; 0.0 for no responses)."""
    if len(responses) != len(limits):
        raise ValueError(f"{len(responses)} responses but {len(limits)} limits")
    if not responses:
        return 0.0
    return sum(count_words(r) / check_limit(limit) for r, limit in zip(responses, limits)) / len(responses)


def length_instructed_win_rate(responses: Sequence[str], limits: Sequence[int],
                               judged: Sequence[float | None]) -> float:
    """Win rate where a response over its limit loses, whatever the judge said.

    `judged[i]` is the judge's verdict on response i against the baseline (1 win, 0 loss, 0.5 tie; None when the
    judge gave no parseable verdict: that comparison is dropped, unless the response violates, which is a loss).
    """
    if not len(responses) == len(limits) == len(judged):
        raise ValueError(f"{len(responses)} responses, {len(limits)} limits and {len(judged)} verdicts")
    scores = [0.0 if not within_limit(r, check_limit(limit)) else verdict
              for r, limit, verdict in zip(responses, limits, judged)]
    scores = [score for score in scores if score is not None]
    return sum(scores) / len(scores) if scores else 0.0
