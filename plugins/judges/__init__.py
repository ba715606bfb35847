"""Judges: score (prompt, response) pairs for the iterative objectives. YAML names them by class_path."""

from litforge.plugins.judges.answer import AnswerJudge
from litforge.plugins.judges.base import Judge
from litforge.plugins.judges.length import LengthJudge
from litforge.plugins.judges.llm import LLMJudge
from litforge.plugins.judges.reward_model import RewardModelJudge

__all__ = ["AnswerJudge", "Judge", "LLMJudge", "LengthJudge", "RewardModelJudge"]
