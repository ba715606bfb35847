"""The judge contract: score a batch of (prompt, response) pairs; None is the sentinel for "no verdict"."""

from __future__ import annotations

import re
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from litforge.errors import ConfigError, require


class Judge:
    """Scores responses to prompts (higher is better), optionally against a reference answer.

    A judge that cannot reach a verdict on a response returns None for it: callers count and drop it, never guess.
    `failures` counts such verdicts since the judge was made (callers read the difference around a call).
    """

    failures: int = 0

    def use_policy(self, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        """Called with the current policy before each round of judging: a judge that judges with the policy keeps
        it, one with its own model moves that model to the policy's device, the others ignore it."""

    def score(self, prompts: list[str], responses: list[str],
              references: list[str | None] | None = None) -> list[float | None]:
        """One score per (prompt, response[, reference]), or None where the judge gave no verdict."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The counters a resumed run needs to judge as an uninterrupted one would (saved in the checkpoint)."""
        return {"failures": self.failures}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output."""
        self.failures = state.get("failures", 0)


def one_group_pattern(pattern: str, field: str) -> re.Pattern:
    """`pattern` compiled; ConfigError naming `field` unless it is a regular expression with one capturing group."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ConfigError(field, f"not a regular expression ({error}): {pattern!r}") from None
    require(compiled.groups == 1, field, f"needs exactly one capturing group, has {compiled.groups}: {pattern!r}")
    return compiled
