"""Chain-of-thought: one reply that reasons step by step, then states the answer (Wei et al. 2022; the zero-shot cue
of Kojima et al. 2022), the program whose distillation Yu et al. (2024, §5.4) found to work poorly on GSM8K.

Departures from the papers:
    1. Zero-shot: no worked exemplars in the default prompt (a few-shot prompt is a template the user writes).
    2. The default template asks for a closing "Answer: <answer>" line, so the answer can be parsed.
"""

from __future__ import annotations

from litforge.plugins.system2.base import INPUT_SLOTS, System2Program, check_template, input_slots


class ChainOfThought(System2Program):
    """One step: the reasoning and the answer in the same reply; only the answer is kept as a target.

    Args:
        template: the prompt, with {input} or {question} (and optionally {context}).
        answer_pattern: regular expression with one group, the answer in the reply (last match wins).
        chat: pass the prompt through the tokenizer's chat template when it has one.
        stop: strings that end the reply.
    """

    def __init__(self, template: str = "{input}\nLet's think step by step, then end with \"Answer: <answer>\".\n",
                 answer_pattern: str = r"Answer:\s*([^\n]*[^\s.])", chat: bool = False, stop: list[str] | None = None):
        super().__init__(answer_pattern, chat, stop)
        self.template = check_template(template, "template", allowed=INPUT_SLOTS, one_of={"question", "input"})

    def solve(self, items, step):
        finals = step("final", [self.template.format(**input_slots(item)) for item in items])
        return [({}, final) for final in finals]
