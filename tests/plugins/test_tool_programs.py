"""ToolVerifier's programs on a real Llama whose logits are a hand-set bigram table (`bigram_llama`): the likelihood
ranking and its top-2, the verification steps' prompts, the controls' pairs, parameter majority and verification."""

from __future__ import annotations

import pytest
from litforge.plugins.system2.base import Step
from litforge.plugins.tools import (
    DirectSelection,
    ParameterVerification,
    ReasoningSelection,
    ToolLibrary,
    ToolVerifier,
    top_two,
)
from tool_helpers import bigram_llama, weather_tools

from litforge.errors import ConfigError, UserError

# after ":" a space; after the space "a" (3) > "c" (2) > "e" (1) > anything else (0); then the name's second letter
TABLE = {":": {" ": 5.0}, " ": {"a": 3.0, "c": 2.0, "e": 1.0}, "a": {"b": 5.0}, "c": {"d": 5.0}, "e": {"f": 5.0}}


@pytest.fixture(scope="module")
def ranked_model(tokenizer):
    return bigram_llama(tokenizer, TABLE)


@pytest.fixture(scope="module")
def library():
    return ToolLibrary(weather_tools())


def request(library, names=("ef", "cd", "ab"), label="ef"):
    return {"question": "rain in Lima tomorrow?", "candidates": [library[n] for n in names], "label": label}


def test_ranking_by_likelihood_is_batched_and_ties_keep_the_input_order(ranked_model, tokenizer, library):
    program = ToolVerifier()
    step = Step(program, ranked_model, tokenizer, 2, 0.0, 0, 8, 3)
    rows = [[library[n] for n in ("ef", "cd", "ab")], [library[n] for n in ("ij", "gh", "cd")]]
    # " ab" > " cd" > " ef"; " ij" and " gh" tie (their first letters both have logit 0 after the space)
    assert program.ranked(step, ["x Action:", "y Action:"], rows) == [["ab", "cd", "ef"], ["cd", "ij", "gh"]]


def test_tool_verifier_keeps_the_top_two_by_likelihood_and_asks_with_both_descriptions(ranked_model, tokenizer,
                                                                                        library):
    [[out]] = ToolVerifier().run(ranked_model, tokenizer, [request(library)])
    assert out.steps["top2"] == "ab cd" and sorted(out.steps["pair"].split()) == ["ab", "cd"]
    contrast = out.prompts["contrast"]
    assert library["ab"].description in contrast and library["cd"].description in contrast
    assert library["ef"].description not in contrast
    assert out.steps["reason"] == " ab"  # the greedy thought, then scored as "...Thought: ab\nAction: <name>"
    assert (out.steps["contrast"], out.steps["answer"]) == ("ab", "ab")
    assert "Question: ab\nAnswer: ab\nTool:" in out.prompts["final"] and out.answer == "ab"
    assert out.tokens == 4 * 3  # reason, contrast, answer, final: " ab" each
    assert list(out.prompts) == ["reason", "contrast", "answer", "final"]


def test_the_controls_pair_the_top_tool_with_a_random_one_or_the_gold_with_the_top_other(ranked_model, tokenizer,
                                                                                          library):
    items = [request(library) for _ in range(4)]
    randoms = ToolVerifier(second="random").run(ranked_model, tokenizer, items, seed=1)
    pairs = {frozenset(out.steps["pair"].split()) for [out] in randoms}
    assert all("ab" in pair for pair in pairs) and pairs <= {frozenset({"ab", "cd"}), frozenset({"ab", "ef"})}
    assert len(pairs) == 2  # four rows, seeded per row: both other candidates drawn
    [[oracle]] = ToolVerifier(second="oracle").run(ranked_model, tokenizer, [request(library, label="ef")])
    assert sorted(oracle.steps["pair"].split()) == ["ab", "ef"] and oracle.steps["top2"] == "ab cd"


def test_one_candidate_is_answered_without_verification(ranked_model, tokenizer, library):
    [[out]] = ToolVerifier().run(ranked_model, tokenizer, [request(library, names=("cd",), label="cd")])
    assert out.answer == "cd" and list(out.prompts) == ["reason"] and "contrast" not in out.steps


def test_direct_selection_lists_the_candidates_and_reads_the_name(ranked_model, tokenizer, library):
    [[out]] = DirectSelection().run(ranked_model, tokenizer, [request(library)])
    assert out.prompts["final"] == ("Tools:\nweather tomorrow by city: ef\nweather now by country: cd\n"
                                    "weather now by city: ab\nRequest: rain in Lima tomorrow?\nTool:")
    assert out.answer == "ab"
    reasoning = ReasoningSelection()
    assert reasoning.parse(" Lima is a city; tomorrow\nAction: ef") == "ef" and reasoning.parse(" ab") is None


def test_an_input_without_candidates_is_refused(ranked_model, tokenizer):
    with pytest.raises(UserError, match="an input has none"):
        DirectSelection().run(ranked_model, tokenizer, [{"question": "q"}])


@pytest.mark.parametrize("build, field", [
    (lambda: ToolVerifier(second="best"), "second"),
    (lambda: ToolVerifier(contrast_template="{description_a} vs"), "contrast_template"),
    (lambda: ToolVerifier(choose_template="{tool_a} {tool_b} {label}"), "choose_template"),
    (lambda: DirectSelection(template="{question}"), "template"),
    (lambda: DirectSelection(tool_format="{name}"), "tool_format"),
    (lambda: ParameterVerification(samples=3, fill_temperature=0.0), "fill_temperature"),
    (lambda: ParameterVerification(contrast_template="{value_a}"), "contrast_template"),
])
def test_bad_settings_name_their_field(build, field):
    with pytest.raises(ConfigError) as error:
        build()
    assert error.value.field == field


@pytest.mark.parametrize("values, top", [
    (["Lima", "Oslo", "Lima", None, "Oslo", "Quito"], ["Lima", "Oslo"]),
    (["Oslo", "Lima", "Lima", "Oslo"], ["Oslo", "Lima"]),  # a tie: the value sampled first
    (["Quito", "Lima", "Lima", "Lima", "Oslo", "Oslo"], ["Lima", "Oslo"]),
    (["Lima", None, "Lima"], ["Lima"]),
    ([None, None], []),
])
def test_the_two_most_frequent_distinct_values(values, top):
    assert top_two(values) == top


def test_parameter_verification_contrasts_the_two_sampled_values(tokenizer, library):
    # after "=" the values " P" and " Q" are equally likely (sampled); after ":" the question " R"
    model = bigram_llama(tokenizer, {"=": {" ": 5.0}, " ": {"P": 1.0, "Q": 1.0}, ":": {"R": 5.0}})
    item = {"question": "rain in Lima?", "tool": library["ab"], "parameter": "city", "label": "P"}
    [[out]] = ParameterVerification(samples=5).run(model, tokenizer, [item], seed=0)
    assert sorted(out.steps["values"].split(" | ")) == ["P", "Q"]
    contrast = out.prompts["contrast"]
    assert contrast.startswith("city: the city\nA: ") and "P" in contrast and "Q" in contrast
    assert out.prompts["final"] == "Request: rain in Lima?\nQuestion: R\ncity ="
    assert out.answer == "P"  # greedy at the tie: the lower token id
    assert out.tokens == 5 * 2 + 1 + 2  # five fillings " P"/" Q", the question "R", the choice " P"
    [[plain]] = ParameterVerification(samples=5, verify=False).run(model, tokenizer, [item], seed=0)
    assert list(plain.prompts) == ["fill"] and plain.answer == out.steps["values"].split(" | ")[0]


def test_parameter_verification_refuses_a_parameter_the_tool_lacks(tokenizer, library):
    model = bigram_llama(tokenizer, {})
    with pytest.raises(UserError, match="'country' is not one of"):
        ParameterVerification().run(model, tokenizer, [{"question": "q", "tool": library["ab"],
                                                        "parameter": "country"}])
