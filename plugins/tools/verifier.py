"""ToolVerifier's tool selection (Mekala et al. 2024, §3.1): the model reasons over the request and the candidates,
its top-2 tools are kept, it asks itself a contrastive question that tells the two apart from their descriptions,
answers it, and makes the final choice with that exchange in context.

Steps, each batched over all inputs: "reason" (a thought, then "Action: <name>"), the top-2 by the model's own
likelihood of " <name>" after the thought and "Action:" (recorded as step "top2", the two names space-separated;
the pair verified, in the order shown, as step "pair"), "contrast" (the question, from the two descriptions), "answer" (the question answered for the request), "final"
(the choice, with the question and answer in context). Two controls change only how the pair is formed:
`second="random"` keeps the most likely tool and a uniformly drawn other candidate (is the gain from the contrast or
from the extra tokens?), `second="oracle"` pairs the gold tool with the model's most likely other one (it reads the
label: a ceiling for the verification steps, never a method).

Departures from the paper:
    1. The top-2 are the two candidates the model itself finds most likely as the action after its thought; the
       paper's model writes its top-2 in the reasoning text.
    2. The pair is shown as A and B in a seeded random order (step seed and row), so that neither position carries
       the likelier tool.
    3. An input with one candidate is answered from the likelihood ranking, with no verification step.
"""

from __future__ import annotations

import random

from litforge.plugins.tools.base import (
    ACTION,
    ANSWER,
    CHOOSE,
    CONTRAST,
    NAME_PATTERN,
    REASON,
    SELECT_SLOTS,
    TOOL_FORMAT,
    ToolProgram,
    check_template,
)

from litforge.errors import require

PAIR_SLOTS = frozenset({"question", "description_a", "description_b", "tool_a", "tool_b"})
SECONDS = ("model", "random", "oracle")


class ToolVerifier(ToolProgram):
    """Reasoning, top-2 by likelihood, a contrastive question, its answer, then the choice.

    Args:
        second: how the pair is formed: "model" (the top-2 by likelihood: ToolVerifier), "random" (the most likely
            tool and a random other candidate: control), "oracle" (the gold tool and the most likely other: control).
        reason_template: the reasoning prompt, with {question} and {tools}; its reply is a thought, then `action`.
        action: the text that ends a thought; candidates are scored as " <name>" after it.
        contrast_template: the question prompt, with {description_a} and {description_b} (and optionally {question},
            {tool_a}, {tool_b}: a candidate's `tool_format` line).
        answer_template: the answer prompt, with {contrast} (and optionally the pair's slots).
        choose_template: the choice prompt, with {tool_a} and {tool_b} (and optionally {question}, {contrast},
            {answer}, the descriptions); its reply names the tool.
        tool_format: one candidate's line in {tools}, {tool_a} and {tool_b}.
        answer_pattern: regular expression with one group, the tool name in the choice (last match wins).
        chat: pass each prompt through the tokenizer's chat template when it has one.
        stop: strings that end every reply.
    """

    def __init__(self, second: str = "model", reason_template: str = REASON, action: str = ACTION,
                 contrast_template: str = CONTRAST, answer_template: str = ANSWER, choose_template: str = CHOOSE,
                 tool_format: str = TOOL_FORMAT, answer_pattern: str = NAME_PATTERN, chat: bool = False,
                 stop: list[str] | None = None):
        super().__init__(tool_format, answer_pattern, chat, stop)
        require(second in SECONDS, "second", f"must be one of {', '.join(SECONDS)}, got {second!r}")
        require(bool(action.strip()), "action", "must be a non-empty marker such as \"\\nAction:\"")
        self.second, self.action = second, action
        self.reason_template = check_template(reason_template, "reason_template", required=SELECT_SLOTS)
        self.contrast_template = check_template(contrast_template, "contrast_template",
                                                required={"description_a", "description_b"}, allowed=PAIR_SLOTS)
        self.answer_template = check_template(answer_template, "answer_template", required={"contrast"},
                                              allowed=PAIR_SLOTS)
        self.choose_template = check_template(choose_template, "choose_template", required={"tool_a", "tool_b"},
                                              allowed=PAIR_SLOTS | {"contrast", "answer"})

    def pair(self, ranked: list[str], item: dict, rng: random.Random) -> list[str]:
        """The two names to verify between, in the order shown (A first)."""
        if self.second == "model":
            pair = ranked[:2]
        elif self.second == "random":
            pair = [ranked[0], rng.choice(ranked[1:])]
        else:  # oracle: the label is read here, for this control only
            gold = str(item["label"])
            pair = [gold, next(name for name in ranked if name != gold)]
        rng.shuffle(pair)
        return pair

    def solve(self, items, step):
        slots = [self.slots(item) for item in items]
        prompts = [self.reason_template.format(**s) for s in slots]
        reasons = step("reason", prompts)
        # a thought is the reply up to the action marker; the candidates are scored as the action after it
        scored = [prompt + reason.split(self.action)[0] + self.action for prompt, reason in zip(prompts, reasons)]
        ranked = self.ranked(step, scored, [item["candidates"] for item in items])
        steps = [{"reason": reason, "top2": " ".join(names[:2])} for reason, names in zip(reasons, ranked)]
        finals = [f" {names[0]}" for names in ranked]  # one candidate: the ranking's answer, nothing to verify
        rows = [row for row, names in enumerate(ranked) if len(names) > 1]
        pairs: dict[int, dict[str, str]] = {}
        for row in rows:
            tools = {tool.name: tool for tool in items[row]["candidates"]}
            a, b = (tools[name] for name in self.pair(ranked[row], items[row], random.Random(step.seed * 100003 + row)))
            steps[row]["pair"] = f"{a.name} {b.name}"
            pairs[row] = {"question": slots[row]["question"], "description_a": a.description,
                          "description_b": b.description, "tool_a": self.line(a), "tool_b": self.line(b)}
        contrasts = step("contrast", [self.contrast_template.format(**pairs[row]) for row in rows], rows)
        answers = step("answer", [self.answer_template.format(**pairs[row], contrast=contrast.strip())
                                  for row, contrast in zip(rows, contrasts)], rows)
        choices = step("final", [self.choose_template.format(**pairs[row], contrast=contrast.strip(),
                                                             answer=answer.strip())
                                 for row, contrast, answer in zip(rows, contrasts, answers)], rows)
        for row, contrast, answer, choice in zip(rows, contrasts, answers, choices):
            steps[row].update(contrast=contrast.strip(), answer=answer.strip())
            finals[row] = choice
        return list(zip(steps, finals))
