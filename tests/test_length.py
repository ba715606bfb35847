"""Word counting, the length-instruction template, LIFT relabelling and the length metrics."""

from __future__ import annotations

import pytest

from litforge.data import DataError
from litforge.errors import ConfigError
from litforge.length import (
    LengthInstruction,
    check_limit,
    count_words,
    length_instructed_win_rate,
    relabel,
    violation_rate,
    words_per_limit,
)


@pytest.mark.parametrize("text, words", [("", 0), ("   \n", 0), ("one", 1), ("Hello, big  world!\n", 3),
                                         ("a\tb\nc", 3), ("don't stop-now", 2)])
def test_count_words(text, words):
    assert count_words(text) == words


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


# (chosen words, rejected words, limit) -> "chosen" wins, "rejected" wins, or None (dropped)
RELABEL_CASES = [
    (3, 5, 10, "chosen"),    # both fit: original preference
    (5, 3, 10, "chosen"),    # both fit, chosen longer: still original
    (5, 5, 5, "chosen"),     # both exactly at the limit: fit
    (12, 4, 10, "rejected"),  # only the rejected fits: it wins
    (11, 10, 10, "rejected"),  # one word over is a violation
    (4, 12, 10, "chosen"),   # only the chosen fits
    (12, 15, 10, None),      # neither fits: dropped
    (11, 11, 10, None),
    (0, 3, 1, "chosen"),     # an empty response fits any limit
]


@pytest.mark.parametrize("chosen_words, rejected_words, limit, winner", RELABEL_CASES)
def test_relabel_table(chosen_words, rejected_words, limit, winner):
    # texts with the stated word counts exactly, a marker word telling them apart
    chosen = " ".join(["C"] + [f"c{i}" for i in range(chosen_words - 1)]) if chosen_words else ""
    rejected = " ".join(["R"] + [f"r{i}" for i in range(rejected_words - 1)]) if rejected_words else ""
    assert (count_words(chosen), count_words(rejected)) == (chosen_words, rejected_words)
    result = relabel(chosen, rejected, limit)
    if winner is None:
        assert result is None
    else:
        expected = (chosen, rejected) if winner == "chosen" else (rejected, chosen)
        assert result == expected


@pytest.mark.parametrize("instruction", ["Write a poem about the sea.", "line one\n\nline two {max_len}", "",
                                         "Answer in at most 3 words.\n\nnested"])
@pytest.mark.parametrize("limit", [1, 7, 250])
def test_template_round_trip(instruction, limit):
    template = LengthInstruction()
    prompt = template.apply(instruction, limit)
    assert f"at most {limit} words" in prompt and prompt.endswith(instruction)
    assert template.parse(prompt) == (instruction, limit)


def test_custom_template_round_trip_and_plain_prompt():
    template = LengthInstruction("{instruction}\n(Limit: {max_len} words. Be brief?)")
    prompt = template.apply("Describe a cat.", 12)
    assert prompt == "Describe a cat.\n(Limit: 12 words. Be brief?)"
    assert template.parse(prompt) == ("Describe a cat.", 12)
    assert template.parse("Describe a cat.") is None
    assert LengthInstruction().parse("Answer in at most 0 words.\n\nx") is None


@pytest.mark.parametrize("template", ["no slots", "{max_len} only", "{instruction} {instruction} {max_len}",
                                      "{max_len} {instruction} {other}"])
def test_bad_template(template):
    with pytest.raises(ValueError, match="template"):
        LengthInstruction(template)


@pytest.mark.parametrize("limit", [0, -3, 2.5, "10", None, True])
def test_bad_limit_is_a_data_error(limit):
    with pytest.raises(DataError) as error:
        check_limit(limit, "li.jsonl", 4)
    assert str(error.value).startswith("li.jsonl:4: field 'max_len': word limit must be")
    with pytest.raises(DataError):
        LengthInstruction().apply("x", limit)


def test_violation_rate_and_words_per_limit_on_fixed_generations():
    responses = ["one two three", "one two three four five", "", "a b c d e f g h i j k"]
    limits = [3, 4, 2, 10]
    # over the limit: response 2 (5 > 4) and response 4 (11 > 10)
    assert violation_rate(responses, limits) == pytest.approx(0.5)
    assert words_per_limit(responses, limits) == pytest.approx((3 / 3 + 5 / 4 + 0 / 2 + 11 / 10) / 4)
    assert violation_rate([], []) == 0.0
    with pytest.raises(ValueError, match="2 responses but 1 limits"):
        violation_rate(["a", "b"], [1])


def test_length_instructed_win_rate_counts_violations_as_losses():
    responses = ["short answer", "a much too long answer here", "fits", "fits too"]
    limits = [5, 3, 5, 5]
    judged = [1.0, 1.0, 0.5, None]  # the judge liked the violating response; the last verdict is unparseable
    # scores: 1.0, 0.0 (violation), 0.5; the None is dropped
    assert length_instructed_win_rate(responses, limits, judged) == pytest.approx(1.5 / 3)


def test_a_bad_template_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError, match="^template: ") as caught:
        LengthInstruction("{max_len} only")
    assert caught.value.field == "template"
