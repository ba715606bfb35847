"""System 1: the question in, the answer out, in one reply — the baseline every System 2 program is measured against
and the prompt a distilled model answers (Yu et al. 2024, "Distilling System 2 into System 1", §2).

Departures from the paper:
    1. The paper prompts System 1 with the bare input; the default template adds a closing "Answer:" cue so that a
       base (non-chat) model replies with the answer, and the default pattern reads the reply's first line.
"""

from __future__ import annotations

from litforge.plugins.system2.base import INPUT_SLOTS, System2Program, check_template, input_slots

from litforge.errors import require


class Direct(System2Program):
    """One step: `template` filled with the input; the answer is parsed from the reply.

    `prompt(item)` and `reply(answer)` are the (input, target) pair a System 1 model is fine-tuned on in
    distillation; `reply` checks that `parse(reply(answer)) == answer`.

    Args:
        template: the prompt, with {input} or {question} (and optionally {context}).
        reply_format: the reply that states an answer, with an {answer} slot (distillation targets).
        answer_pattern: regular expression with one group, the answer in the reply (last match wins).
        chat: pass the prompt through the tokenizer's chat template when it has one.
        stop: strings that end the reply.
    """

    def __init__(self, template: str = "{input}\nAnswer:", reply_format: str = " {answer}",
                 answer_pattern: str = r"^\s*([^\n]*[^\s.])", chat: bool = False, stop: list[str] | None = None):
        super().__init__(answer_pattern, chat, stop)
        self.template = check_template(template, "template", allowed=INPUT_SLOTS, one_of={"question", "input"})
        self.reply_format = check_template(reply_format, "reply_format", required={"answer"})

    def prompt(self, item: dict) -> str:
        """The System 1 prompt of an input."""
        return self.template.format(**input_slots(item))

    def reply(self, answer: str) -> str:
        """The System 1 reply that states `answer` (a distillation target); ConfigError when `answer_pattern` would
        not read `answer` back from it, since a model trained on it could never be scored right."""
        reply = self.reply_format.format(answer=answer)
        require(self.parse(reply) == answer, "reply_format", f"{reply!r} does not parse back to {answer!r} with "
                f"answer_pattern {self.answer_pattern!r}")
        return reply

    def solve(self, items, step):
        finals = step("final", [self.prompt(item) for item in items])
        return [({}, final) for final in finals]
