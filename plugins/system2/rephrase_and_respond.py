"""Rephrase-and-Respond (Deng et al. 2023): the model restates and expands the question before answering it; the
2-step form is the one System 2 distillation used (Yu et al. 2024, §4.1).

1-step: one reply rephrases and then answers. 2-step: one call writes the rephrasing ("maintain all information in
the original question"); a second call sees the original and the rephrasing and answers the original.

Departures from the paper:
    1. The prompts that produce the final reply end by asking for a closing "Answer: <answer>" line, so the answer
       can be parsed; the rest is the paper's wording.
    2. The defaults use {input} (the context, when an input has one, then the question) where the paper has the
       question alone.
"""

from __future__ import annotations

from litforge.plugins.system2.base import INPUT_SLOTS, System2Program, check_template, input_slots

ANSWER_LINE = 'End with "Answer: <answer>".'


class RephraseAndRespond(System2Program):
    """Rephrase, then respond: in one reply (`two_step=False`) or in two (`two_step=True`, step "rephrase").

    Args:
        two_step: rephrase in its own call, then answer the original question given the rephrasing.
        one_step_template: the 1-step prompt, with {input} or {question}.
        rephrase_template: the 2-step rephrasing prompt, with {input} or {question}.
        respond_template: the 2-step answering prompt, with {rephrased} and {input} or {question}.
        answer_pattern: regular expression with one group, the answer in the final reply (last match wins).
        chat: pass each prompt through the tokenizer's chat template when it has one.
        stop: strings that end every reply.
    """

    def __init__(self, two_step: bool = True,
                 one_step_template: str = f"{{input}}\nRephrase and expand the question, and respond. {ANSWER_LINE}\n",
                 rephrase_template: str = ("{input}\nGiven the above question, rephrase and expand it to help you do "
                                           "better answering. Maintain all information in the original question.\n"),
                 respond_template: str = ("(original) {input}\n(rephrased) {rephrased}\nUse your answer for the "
                                          f"rephrased question to answer the original question. {ANSWER_LINE}\n"),
                 answer_pattern: str = r"Answer:\s*([^\n]*[^\s.])", chat: bool = False, stop: list[str] | None = None):
        super().__init__(answer_pattern, chat, stop)
        self.two_step = two_step
        question = {"question", "input"}
        self.one_step_template = check_template(one_step_template, "one_step_template", allowed=INPUT_SLOTS,
                                                one_of=question)
        self.rephrase_template = check_template(rephrase_template, "rephrase_template", allowed=INPUT_SLOTS,
                                                one_of=question)
        self.respond_template = check_template(respond_template, "respond_template", required={"rephrased"},
                                               allowed=INPUT_SLOTS, one_of=question)

    def solve(self, items, step):
        slots = [input_slots(item) for item in items]
        if not self.two_step:
            finals = step("final", [self.one_step_template.format(**s) for s in slots])
            return [({}, final) for final in finals]
        rephrased = step("rephrase", [self.rephrase_template.format(**s) for s in slots])
        finals = step("final", [self.respond_template.format(**s, rephrased=r) for s, r in zip(slots, rephrased)])
        return [({"rephrase": r}, final) for r, final in zip(rephrased, finals)]
