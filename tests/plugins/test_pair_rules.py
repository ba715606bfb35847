"""Pair rules on fixed scores, `build_pairs` over several prompts, and their short names in YAML."""

from __future__ import annotations

import random

import pytest
from jsonargparse import ArgumentParser
from litforge.plugins.pair_rules import BestVsWorst, CorrectVsIncorrect, PairRule, build_pairs

from litforge.errors import ConfigError


def test_best_vs_worst_drops_ties_and_unjudged():
    texts = [["a", "b", "c"], ["d", "e"], ["f", "g", "h"], ["i"]]
    scores = [[2.0, 5.0, 1.0], [3.0, 3.0], [None, 4.0, 1.0], [5.0]]
    pairs = build_pairs(["p0", "p1", "p2", "p3"], [None] * 4, texts, scores, BestVsWorst(), seed=0)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [("p0", "b", "c"), ("p2", "g", "h")]
    assert pairs[0]["chosen_score"] == 5.0 and pairs[0]["rejected_score"] == 1.0 and "reference" not in pairs[0]
    assert BestVsWorst(min_gap=1.0).pairs(["a", "b"], [2.0, 1.0], random.Random(0)) == []  # not more than the gap


def test_correct_vs_incorrect_pairs_every_combination_up_to_k():
    scores = [1.0, 0.0, 1.0, 0.0, 0.0]
    combos = CorrectVsIncorrect(max_pairs=10).pairs(list("abcde"), scores, random.Random(0))
    assert sorted(combos) == [(0, 1), (0, 3), (0, 4), (2, 1), (2, 3), (2, 4)]
    capped = CorrectVsIncorrect(max_pairs=4).pairs(list("abcde"), scores, random.Random(0))
    assert len(capped) == 4 and set(capped) <= set(combos)
    assert CorrectVsIncorrect().pairs(["a", "b"], [0.0, 0.0], random.Random(0)) == []  # nothing correct
    rows = build_pairs(["q"], ["7"], [["=7", "=8"]], [[1.0, 0.0]], CorrectVsIncorrect(), seed=0)
    assert rows == [{"prompt": "q", "chosen": "=7", "rejected": "=8", "chosen_score": 1.0, "rejected_score": 0.0,
                     "reference": "7"}]


def test_only_rules_with_a_correctness_threshold_declare_one():
    assert CorrectVsIncorrect(threshold=0.5).threshold == 0.5 and BestVsWorst().threshold is None


def test_bad_settings_are_refused_by_field():
    with pytest.raises(ConfigError, match="max_pairs"):
        CorrectVsIncorrect(max_pairs=0)
    with pytest.raises(ConfigError, match="min_gap"):
        BestVsWorst(min_gap=-1)


@pytest.mark.parametrize("name,kind", [("BestVsWorst", BestVsWorst), ("CorrectVsIncorrect", CorrectVsIncorrect)])
def test_yaml_names_a_rule_by_its_short_name(name, kind):
    parser = ArgumentParser()
    parser.add_argument("--rule", type=PairRule)
    config = parser.parse_args([f"--rule={{'class_path': '{name}'}}"])
    assert isinstance(parser.instantiate_classes(config).rule, kind)
