"""Limit rules (plugins/length/): where each one puts an augmented pair's word limit, and their bad settings."""

from __future__ import annotations

import random

import pytest
from litforge.plugins.length import AroundLengths, BetweenLengths, FixedLimits

from litforge.errors import ConfigError
from litforge.length import relabel


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_between_lengths_leaves_exactly_one_within():
    rng = random.Random(0)
    for chosen_words, rejected_words in [(3, 9), (9, 3), (1, 2), (40, 7)]:
        for _ in range(50):
            limit = BetweenLengths().pick(chosen_words, rejected_words, rng)
            assert min(chosen_words, rejected_words) <= limit < max(chosen_words, rejected_words)
    assert BetweenLengths().pick(5, 5, rng) == 5


def test_around_lengths_covers_all_cases_and_fixed_limits():
    rng = random.Random(0)
    limits = [AroundLengths(0.5, 1.5).pick(4, 10, rng) for _ in range(500)]
    assert min(limits) == 2 and max(limits) == 15
    outcomes = {relabel(words(10), words(4), limit) is None for limit in limits}
    assert outcomes == {True, False}
    assert {FixedLimits([3, 8]).pick(1, 100, rng) for _ in range(50)} == {3, 8}
    with pytest.raises(ConfigError):
        FixedLimits([3, 0])


@pytest.mark.parametrize("make, field", [
    (lambda: AroundLengths(low=-0.1), "low"),
    (lambda: AroundLengths(low=2.0, high=1.5), "high"),
    (lambda: FixedLimits([]), "limits"),
    (lambda: FixedLimits([50, 0]), "limits"),
    (lambda: FixedLimits([50, 2.5]), "limits"),
])
def test_bad_limit_rules_are_config_errors_naming_the_field(make, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        make()
    assert caught.value.field == field
