"""Consistency filters on hand-made sample tables (majority, ties, minimum share, unparsable, mapping back), and
swap consistency on a real, position-biased scripted judge."""

from __future__ import annotations

import pytest
from system2_helpers import scripted_llama, table

from litforge.errors import ConfigError, UserError
from litforge.plugins.consistency import AllOf, NoFilter, OracleFilter, SelfConsistency, SwapConsistency
from litforge.plugins.system2 import BranchSolveMerge, Direct

QUESTIONS = [{"question": f"q{i}", "label": "7"} for i in range(6)]


def fixed(rows):
    """A sampler that returns the table's rows for the inputs it is given (by question), n columns of each."""
    answers = dict(zip([item["question"] for item in QUESTIONS], rows))
    calls = []

    def sample(inputs, n):
        calls.append(n)
        return table(*[answers[item["question"]][:n] for item in inputs])

    sample.calls = calls
    return sample


SAMPLES = [
    ["7", "7", "7", "3"],  # 3/4 majority: kept
    ["7", "3", "7", "3"],  # tie: dropped
    ["7", None, None, None],  # one vote, share 1/4 < 0.5 (unparsable samples count in the share): dropped
    [None, None, None, None],  # nothing parsed: dropped, never a guess
    ["5", "5", None, "3"],  # 2/4 = min_share exactly: kept
    ["3", "7", "2", "1"],  # four-way tie
]


def test_self_consistency_keeps_clear_majorities_only():
    sample = fixed(SAMPLES)
    answers, counts = SelfConsistency(samples=4, min_share=0.5).select(Direct(), sample, QUESTIONS)
    assert answers == ["7", None, None, None, "5", None]
    assert counts == {"kept": 2, "dropped_unparsable": 1, "dropped_tie": 2, "dropped_share": 1}
    assert sample.calls == [4]


def test_self_consistency_min_share_zero_keeps_any_untied_majority():
    answers, counts = SelfConsistency(samples=4, min_share=0.0).select(Direct(), fixed(SAMPLES), QUESTIONS)
    assert answers == ["7", None, "7", None, "5", None]
    assert counts["dropped_share"] == 0 and counts["dropped_tie"] == 2
    answers, _ = SelfConsistency(samples=4, min_share=0.75).select(Direct(), fixed(SAMPLES), QUESTIONS)
    assert answers == ["7", None, None, None, None, None]


def test_one_sample_filters_take_the_first_sample():
    answers, counts = NoFilter().select(Direct(), fixed(SAMPLES), QUESTIONS)
    assert answers == ["7", "7", "7", None, "5", "3"] and counts == {"kept": 5, "dropped_unparsable": 1}
    answers, counts = OracleFilter().select(Direct(), fixed(SAMPLES), QUESTIONS)
    assert answers == ["7", "7", "7", None, None, None]
    assert counts == {"kept": 3, "dropped_unparsable": 1, "dropped_wrong": 2}


def test_the_oracle_needs_labels():
    with pytest.raises(UserError, match="input 1 has none"):
        OracleFilter().select(Direct(), fixed(SAMPLES), [QUESTIONS[0], {"question": "q1"}])


PAIRS = [{"question": f"p{i}", "response_a": "x", "response_b": "y"} for i in range(4)]


def verdicts(table_of):
    """A sampler for pairs: `table_of[(question, response_a)]` is the verdict on that order of the responses."""
    return lambda inputs, n: table(*[[table_of[(item["question"], item["response_a"])]] * n for item in inputs])


SWAP_TABLE = {
    ("p0", "x"): "A", ("p0", "y"): "B",  # consistent: x is better either way -> kept "A"
    ("p1", "x"): "A", ("p1", "y"): "A",  # position bias (always the first): dropped
    ("p2", "x"): None, ("p2", "y"): "A",  # unparsable on one side: dropped
    ("p3", "x"): "B", ("p3", "y"): "A",  # consistent: y is better -> kept "B"
}


def test_swap_consistency_keeps_verdicts_that_survive_swapping():
    answers, counts = SwapConsistency().select(BranchSolveMerge(), verdicts(SWAP_TABLE), PAIRS)
    assert answers == ["A", None, None, "B"]
    assert counts == {"kept": 2, "dropped_unparsable": 1, "dropped_inconsistent": 1, "dropped_no_perturbation": 0}


def test_swap_consistency_refuses_a_program_without_perturbation():
    with pytest.raises(ConfigError, match="^filter: SwapConsistency needs a program with a perturbation"):
        SwapConsistency().select(Direct(), verdicts(SWAP_TABLE), PAIRS)


def test_swap_consistency_drops_a_real_judge_that_always_picks_the_second_response(tokenizer):
    model = scripted_llama(tokenizer, {"~": "P", "#": "ok", "?": "VOTE-B"})
    judge = BranchSolveMerge(branch_template="{question}~", solve_template="{criterion}{response_a}{response_b}#",
                             merge_template="{evaluations}?", answer_pattern=r"VOTE-([AB])")

    def sample(inputs, n):
        return judge.run(model, tokenizer, inputs, n=n)

    answers, counts = SwapConsistency().select(judge, sample, PAIRS[:2])
    assert answers == [None, None] and counts["dropped_inconsistent"] == 2
    answers, counts = NoFilter().select(judge, sample, PAIRS[:2])
    assert answers == ["B", "B"]  # without the filter, the position bias becomes the target


def test_all_of_keeps_what_every_filter_keeps_with_the_same_answer():
    rows = [["7", "7", "7", "3"], ["7", "3", "3", "3"], ["7", "7", "3", "3"], ["2", "2", "2", "2"]]
    sample = fixed(rows)
    inputs = QUESTIONS[:4]
    answers, counts = AllOf([SelfConsistency(samples=4), NoFilter(), OracleFilter()]).select(Direct(), sample, inputs)
    # row 0: all keep 7; row 1: majority 3 vs first sample 7; row 2: the vote ties; row 3: the oracle drops 2
    assert answers == ["7", None, None, None]
    assert (counts["kept"], counts["dropped"], counts["dropped_disagree"]) == (1, 2, 1)
    assert counts["SelfConsistency/dropped_tie"] == 1 and counts["OracleFilter/dropped_wrong"] == 1
    _, counts = AllOf([NoFilter(), NoFilter()]).select(Direct(), sample, inputs)
    assert counts["NoFilter#0/kept"] == counts["NoFilter#1/kept"] == 4


@pytest.mark.parametrize("make, field", [
    (lambda: SelfConsistency(samples=0), "samples"),
    (lambda: SelfConsistency(min_share=1.5), "min_share"),
    (lambda: AllOf([]), "filters"),
])
def test_bad_settings_are_config_errors_naming_the_field(make, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        make()
    assert caught.value.field == field
