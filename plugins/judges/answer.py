"""Answer checking: a response is correct when its final answer equals the reference (Pang et al. 2024, §3)."""

from __future__ import annotations

from litforge.plugins.judges.base import Judge, one_group_pattern


class AnswerJudge(Judge):
    """1.0 when the final answer extracted from the response equals the reference answer, else 0.0.

    A response with no extractable answer is incorrect (0.0), not a failed verdict: the check itself never fails.
    The default pattern takes the last integer after an "=", the format of the arithmetic task
    (`litforge.datamodules.arithmetic.extract_answer`).

    Args:
        pattern: regular expression with one group capturing an answer; the last match is the final answer.
        numeric: compare answers as numbers ("07" == "7", "2.50" == "2.5") rather than as stripped strings.
    """

    def __init__(self, pattern: str = r"=\s*(-?\d+(?:\.\d+)?)", numeric: bool = True):
        self.pattern = one_group_pattern(pattern, "pattern")
        self.numeric = numeric

    def extract(self, response: str) -> str | None:
        """The final answer of a response (the last match), or None."""
        found = self.pattern.findall(response)
        return found[-1].strip() if found else None

    def same(self, answer: str, reference: str) -> bool:
        """Whether an extracted answer equals the reference."""
        if self.numeric:
            try:
                return float(answer) == float(reference)
            except ValueError:
                return False
        return answer == reference.strip()

    def score(self, prompts, responses, references=None):
        if references is None or any(reference is None for reference in references):
            raise ValueError("AnswerJudge needs a reference answer for every response")
        scores = []
        for response, reference in zip(responses, references):
            answer = self.extract(response)
            scores.append(float(answer is not None and self.same(answer, str(reference))))
        return scores
