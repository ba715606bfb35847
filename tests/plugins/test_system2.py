"""System 2 programs: the steps each builds, how replies thread into the next step, parsing and token counts.

Most tests run a real Llama whose weights make it write known strings (`scripted_llama`: the reply depends only on
the prompt's last character), so each step's reply, and hence the next step's prompt, is known exactly.
"""

from __future__ import annotations

import pytest
from system2_helpers import scripted_llama

from litforge.errors import ConfigError, UserError
from litforge.generation import generate
from litforge.plugins.system2 import (BranchSolveMerge, ChainOfThought, Direct, RephraseAndRespond, System2Attention,
                                      System2Program)
from litforge.plugins.system2.base import Step


@pytest.fixture(scope="module")
def scripted(tokenizer):
    # ">" rephrase/regenerate, "=" answer, "~" branch plan, "#" one criterion's judgement, "?" merge verdict
    return scripted_llama(tokenizer, {">": "XYZ", "=": "Answer: 9", "~": "P\nQ", "#": "ok", "?": "VOTE-B"})


def test_direct_one_step_and_its_distillation_pair_round_trips(scripted, tokenizer):
    program = Direct(template="{input}=", answer_pattern=r"Answer: (\d+)", reply_format="Answer: {answer}")
    [[out]] = program.run(scripted, tokenizer, [{"question": "2+7?", "context": "ctx", "label": "9"}])
    assert out.prompts == {"final": "ctx\n2+7?="} and out.steps == {}
    assert (out.final, out.answer, out.tokens) == ("Answer: 9", "9", 9)
    assert program.prompt({"question": "2+7?"}) == "2+7?=" and program.parse(program.reply("13")) == "13"


def test_direct_defaults_read_the_first_line_of_the_reply():
    program = Direct()
    assert program.prompt({"question": "2+7?"}) == "2+7?\nAnswer:"
    assert program.parse(" 9.\nmore text") == "9" and program.parse(program.reply("x y")) == "x y"
    assert program.parse("   \n") is None


def test_chain_of_thought_keeps_only_the_answer(scripted, tokenizer):
    [[out]] = ChainOfThought(template="{question}=").run(scripted, tokenizer, [{"question": "q"}])
    assert (out.steps, out.final, out.answer) == ({}, "Answer: 9", "9")


def test_rephrase_and_respond_two_steps_thread_the_rephrasing_into_the_answer(scripted, tokenizer):
    program = RephraseAndRespond(rephrase_template="{question}>", respond_template="{question}|{rephrased}=")
    [[out]] = program.run(scripted, tokenizer, [{"question": "q1"}])
    assert out.steps == {"rephrase": "XYZ"}
    assert out.prompts == {"rephrase": "q1>", "final": "q1|XYZ="}
    assert (out.final, out.answer, out.tokens) == ("Answer: 9", "9", 3 + 9)


def test_rephrase_and_respond_one_step_is_one_reply(scripted, tokenizer):
    program = RephraseAndRespond(two_step=False, one_step_template="{question}=")
    [[out]] = program.run(scripted, tokenizer, [{"question": "q1"}])
    assert (out.steps, list(out.prompts), out.answer, out.tokens) == ({}, ["final"], "9", 9)


@pytest.mark.parametrize("show, final_prompt", [(False, "XYZ="), (True, "I think 3.\nWhat is 2+7?|XYZ=")])
def test_system2_attention_answers_from_the_regenerated_text(scripted, tokenizer, show, final_prompt):
    program = System2Attention(regenerate_template="{context} {question}>", answer_template="{regenerated}=",
                               answer_with_question_template="{input}|{regenerated}=", show_original_question=show)
    item = {"question": "What is 2+7?", "context": "I think 3."}
    [[out]] = program.run(scripted, tokenizer, [item])
    assert out.prompts == {"regenerate": "I think 3. What is 2+7?>", "final": final_prompt}
    assert (out.steps, out.answer, out.tokens) == ({"regenerate": "XYZ"}, "9", 3 + 9)


BSM_TEMPLATES = {"branch_template": "{question}~", "solve_template": "{criterion}:{response_a}/{response_b}#",
                 "merge_template": "{evaluations}?", "answer_pattern": r"VOTE-([AB])"}
PAIR = {"question": "2+2?", "response_a": "4", "response_b": "5", "label": "A"}


def test_branch_solve_merge_branches_solves_each_criterion_and_merges(scripted, tokenizer):
    [[out]] = BranchSolveMerge(**BSM_TEMPLATES).run(scripted, tokenizer, [PAIR])
    assert out.steps == {"branch": "P\nQ", "solve 1": "ok", "solve 2": "ok"}
    assert out.prompts == {"branch": "2+2?~", "solve 1": "P:4/5#", "solve 2": "Q:4/5#", "final": "P: ok\nQ: ok?"}
    assert (out.final, out.answer, out.tokens) == ("VOTE-B", "B", 3 + 2 + 2 + 6)


def test_branch_solve_merge_with_fixed_criteria_skips_the_branch(scripted, tokenizer):
    program = BranchSolveMerge(criteria=["correctness"], **BSM_TEMPLATES)
    [[out]] = program.run(scripted, tokenizer, [PAIR])
    assert out.steps == {"solve 1": "ok"} and out.prompts["final"] == "correctness: ok?" and out.answer == "B"


def test_branch_solve_merge_without_criteria_gives_no_verdict_and_no_merge(scripted, tokenizer):
    program = BranchSolveMerge(**{**BSM_TEMPLATES, "branch_template": "{question}!"})  # "!" is followed by eos
    [[out]] = program.run(scripted, tokenizer, [PAIR])
    assert (out.answer, out.final, out.steps, list(out.prompts), out.tokens) == (None, "", {"branch": ""},
                                                                                 ["branch"], 0)


def test_branch_plans_are_read_one_criterion_a_line():
    plan = "1. Accuracy: is it right\n- Helpfulness\n\n(3) Clarity\n* Depth\nBrevity\nStyle"
    assert BranchSolveMerge().criteria_of(plan) == ["Accuracy: is it right", "Helpfulness", "Clarity", "Depth",
                                                    "Brevity"]
    assert BranchSolveMerge(max_criteria=1).criteria_of(plan) == ["Accuracy: is it right"]


def test_branch_solve_merge_perturbation_swaps_the_responses_and_maps_verdicts_back():
    swapped, back = BranchSolveMerge().perturb(PAIR)
    assert swapped == {"question": "2+2?", "response_a": "5", "response_b": "4", "label": "B"}
    assert PAIR["response_a"] == "4"  # the input itself is left alone
    assert (back("A"), back("B")) == ("B", "A")
    assert Direct().perturb({"question": "q"}) is None


def test_branch_solve_merge_refuses_inputs_that_are_not_pairs(scripted, tokenizer):
    with pytest.raises(UserError, match="response_a/response_b"):
        BranchSolveMerge(**BSM_TEMPLATES).run(scripted, tokenizer, [{"question": "q"}])


def test_the_chat_template_wraps_each_prompt(tokenizer):
    # the byte-level chat template ends with "<assistant>\n": the scripted model answers "\n" with "42"
    model = scripted_llama(tokenizer, {"\n": "42"})
    inputs = [{"question": "q"}]
    [[chat]] = Direct(template="{question}:", chat=True).run(model, tokenizer, inputs)
    [[plain]] = Direct(template="{question}:").run(model, tokenizer, inputs)
    assert (chat.answer, chat.prompts["final"], plain.answer) == ("42", "q:", None)
    assert Direct(chat=True).chat_text(tokenizer, "hi") == "<|bos|><user>\nhi<|eos|>\n<assistant>\n"


@pytest.mark.parametrize("chat, prompt_tokens", [(True, 1 + len("<user>\nhi") + 1 + len("\n<assistant>\n")),
                                                  (False, 1 + len("hi"))])
def test_bos_is_added_once_with_or_without_the_chat_template(scripted, tokenizer, chat, prompt_tokens):
    # the byte-level chat template writes bos (and eos after the turn) itself; a plain prompt gets bos from generate
    step = Step(Direct(chat=chat), scripted, tokenizer, rows=1, temperature=0.0, seed=0, max_new_tokens=4,
                batch_size=8)
    step("final", ["hi"])
    assert step.prompt_tokens == prompt_tokens


def test_samples_and_steps_batch_over_inputs_and_are_reproducible(tiny_model, tokenizer):
    program = RephraseAndRespond(rephrase_template="{question}>", respond_template="{question}|{rephrased}=")
    inputs = [{"question": "a"}, {"question": "bb"}]
    outputs = program.run(tiny_model, tokenizer, inputs, n=3, temperature=1.0, seed=5, max_new_tokens=6)
    assert [len(row) for row in outputs] == [3, 3]
    again = program.run(tiny_model, tokenizer, inputs, n=3, temperature=1.0, seed=5, max_new_tokens=6)
    assert [[o.final for o in row] for row in again] == [[o.final for o in row] for row in outputs]
    assert len({o.steps["rephrase"] for o in outputs[0]}) > 1  # sampled, not copies
    for row in outputs:
        for out in row:
            assert out.prompts["final"] == f"{out.prompts['rephrase'][:-1]}|{out.steps['rephrase']}="


def test_the_final_reply_is_the_models_reply_to_the_final_prompt(tiny_model, tokenizer):
    program = System2Attention(regenerate_template="{input}>", answer_template="{regenerated}=")
    [[out]] = program.run(tiny_model, tokenizer, [{"question": "q", "context": "c"}], max_new_tokens=6)
    alone = generate(tiny_model, tokenizer, [out.prompts["final"]], temperature=0, max_new_tokens=6)
    first = generate(tiny_model, tokenizer, [out.prompts["regenerate"]], temperature=0, max_new_tokens=6)
    assert alone.texts[0][0] == out.final and first.texts[0][0] == out.steps["regenerate"]
    assert out.tokens == alone.new_tokens + first.new_tokens


@pytest.mark.parametrize("reply, answer", [("Answer: 3\nAnswer: 4.", "4"), ("answer: 3", None), ("Answer: ", None),
                                           ("The Answer: x y z.", "x y z")])
def test_the_last_match_is_the_answer_and_no_match_is_none(reply, answer):
    assert System2Program().parse(reply) == answer


@pytest.mark.parametrize("make, message", [
    (lambda: Direct(template="no slot"), "template: needs one of the slots {input}, {question}"),
    (lambda: Direct(template="{question} {", ), "template: not a str.format template .*"),
    (lambda: Direct(answer_pattern=r"(\d)(\d)"), "answer_pattern: needs exactly one capturing group, has 2: .*"),
    (lambda: Direct(reply_format="Answer: {answer}").reply("7"),
     "reply_format: 'Answer: 7' does not parse back to '7' with answer_pattern .*"),
    (lambda: Direct(reply_format="{answr}"), r"reply_format: needs the slot\(s\) {answer}"),
    (lambda: ChainOfThought(template="{questoin}"), "template: needs one of the slots {input}, {question}"),
    (lambda: RephraseAndRespond(respond_template="{question}"), r"respond_template: needs the slot\(s\) {rephrased}"),
    (lambda: RephraseAndRespond(rephrase_template="{rephrased}"), "rephrase_template: needs one of the slots .*"),
    (lambda: System2Attention(answer_template="{question} {regenerated}"),
     r"answer_template: unknown slot\(s\) {question}; available: {regenerated}"),
    (lambda: System2Attention(answer_with_question_template="{question}"),
     r"answer_with_question_template: needs the slot\(s\) {regenerated}"),
    (lambda: BranchSolveMerge(solve_template="{criterion}"),
     r"solve_template: needs the slot\(s\) {response_a}, {response_b}"),
    (lambda: BranchSolveMerge(merge_template="{question}"), r"merge_template: needs the slot\(s\) {evaluations}"),
    (lambda: BranchSolveMerge(evaluation_format="{evaluation}"),
     r"evaluation_format: needs the slot\(s\) {criterion}"),
    (lambda: BranchSolveMerge(criteria=[]), "criteria: must be None .*"),
    (lambda: BranchSolveMerge(max_criteria=0), "max_criteria: must be >= 1, got 0"),
])
def test_bad_templates_are_config_errors_naming_the_field(make, message):
    with pytest.raises(ConfigError, match=f"^{message}$") as caught:
        make()
    assert caught.value.field == message.split(":")[0]
