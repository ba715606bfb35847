"""Pair rules: turn one prompt's judged candidates into (chosen, rejected) pairs. YAML names them by class_path."""

from litforge.plugins.pair_rules.base import PairRule, build_pairs
from litforge.plugins.pair_rules.best_vs_worst import BestVsWorst
from litforge.plugins.pair_rules.correct_vs_incorrect import CorrectVsIncorrect

__all__ = ["BestVsWorst", "CorrectVsIncorrect", "PairRule", "build_pairs"]
