"""The judge contract: score a batch of (prompt, response) pairs; None is the sentinel for "no verdict"."""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerBase


class Judge:
    """Scores responses to prompts (higher is better), optionally against a reference answer.

    A judge that cannot reach a verdict on a response returns None for it: callers count and drop it, never guess.
    `failures` counts such verdicts since the judge was made (callers read the difference around a call).
    """

    failures: int = 0

    def attach(self, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        """Called with the current policy before each round of judging (judges that use the policy keep it)."""

    def score(self, prompts: list[str], responses: list[str],
              references: list[str | None] | None = None) -> list[float | None]:
        """One score per (prompt, response[, reference]), or None where the judge gave no verdict."""
        raise NotImplementedError
