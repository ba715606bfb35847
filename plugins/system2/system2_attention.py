"""System 2 Attention (Weston & Sukhbaatar 2023): the model first regenerates the input keeping only the parts that
are relevant and free of the user's opinion, then answers from the regenerated text alone (or, as the paper's
"keep original" variant, with the original question shown as well). Distilled with self-consistency by Yu et al.
(2024, §4.2).

Departures from the paper:
    1. The first step's default is the paper's prompt for opinionated questions (§3), with the user's text as
       {input}: the context, when an input has one, then the question.
    2. The paper feeds the regenerated text to the model as the prompt of the second step; the default second-step
       templates add an instruction to answer from it and to end with "Answer: <answer>", so the answer can be
       parsed (their wording is ours).
"""

from __future__ import annotations

from litforge.plugins.system2.base import INPUT_SLOTS, System2Program, check_template, input_slots

REGENERATE = (
    "Given the following text by a user, extract the part that is unbiased and not their opinion, so that using that "
    "text alone would be good context for providing an unbiased answer to the question portion of the text.\n"
    "Please include the actual question or query that the user is asking. Separate this into two categories labeled "
    "with \"Unbiased text context (includes all content except user's bias):\" and \"Question/Query (does not include "
    "user bias/preference):\".\n\nText by User: {input}\n"
)
ANSWER = "{regenerated}\n\nAnswer the question above in an unbiased way. End with \"Answer: <answer>\".\n"
ANSWER_WITH_QUESTION = (
    "Original user query (possibly biased): {input}\n\nUnbiased user query: {regenerated}\n\n"
    "Answer the unbiased user query. End with \"Answer: <answer>\".\n"
)


class System2Attention(System2Program):
    """Two steps: "regenerate" (the input without irrelevant or opinionated text), then the answer from it.

    Args:
        regenerate_template: step 1, with {input} or {question} (and optionally {context}).
        answer_template: step 2, with {regenerated} only (the original input is not shown).
        show_original_question: answer with `answer_with_question_template` instead, which also shows the original.
        answer_with_question_template: step 2 when the original is shown, with {regenerated} and {input} or
            {question}.
        answer_pattern: regular expression with one group, the answer in the final reply (last match wins).
        chat: pass each prompt through the tokenizer's chat template when it has one.
        stop: strings that end every reply.
    """

    def __init__(self, regenerate_template: str = REGENERATE, answer_template: str = ANSWER,
                 show_original_question: bool = False, answer_with_question_template: str = ANSWER_WITH_QUESTION,
                 answer_pattern: str = r"Answer:\s*([^\n]*[^\s.])", chat: bool = False, stop: list[str] | None = None):
        super().__init__(answer_pattern, chat, stop)
        self.regenerate_template = check_template(regenerate_template, "regenerate_template", allowed=INPUT_SLOTS,
                                                  one_of={"question", "input"})
        # step 2 must not see the original text unless asked to: that is the point of S2A
        self.answer_template = check_template(answer_template, "answer_template", required={"regenerated"})
        self.show_original_question = show_original_question
        self.answer_with_question_template = check_template(
            answer_with_question_template, "answer_with_question_template", required={"regenerated"},
            allowed=INPUT_SLOTS, one_of={"question", "input"})

    def solve(self, items, step):
        slots = [input_slots(item) for item in items]
        regenerated = step("regenerate", [self.regenerate_template.format(**s) for s in slots])
        template = self.answer_with_question_template if self.show_original_question else self.answer_template
        finals = step("final", [template.format(**s, regenerated=r) for s, r in zip(slots, regenerated)])
        return [({"regenerate": r}, final) for r, final in zip(regenerated, finals)]
