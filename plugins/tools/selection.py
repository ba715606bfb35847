"""Tool selection without verification, the baselines of ToolVerifier (Mekala et al. 2024, §4): direct selection (the
request and the candidates in, a tool name out) and reasoning then selection in the paper's format (a thought, then
"Action: <tool name>").

Departures from the paper: see `plugins/tools/base.py`.
"""

from __future__ import annotations

from litforge.plugins.tools.base import (
    ACTION_PATTERN,
    NAME_PATTERN,
    REASON,
    SELECT,
    SELECT_SLOTS,
    TOOL_FORMAT,
    ToolProgram,
    check_template,
)


class DirectSelection(ToolProgram):
    """One step: `template` filled with the request and the candidates; the reply names the tool.

    Args:
        template: the prompt, with {question} and {tools}.
        tool_format: one candidate's line in {tools}.
        answer_pattern: regular expression with one group, the tool name in the reply (last match wins).
        chat: pass the prompt through the tokenizer's chat template when it has one.
        stop: strings that end the reply.
    """

    def __init__(self, template: str = SELECT, tool_format: str = TOOL_FORMAT, answer_pattern: str = NAME_PATTERN,
                 chat: bool = False, stop: list[str] | None = None):
        super().__init__(tool_format, answer_pattern, chat, stop)
        self.template = check_template(template, "template", required=SELECT_SLOTS)

    def solve(self, items, step):
        finals = step("final", [self.template.format(**self.slots(item)) for item in items])
        return [({}, final) for final in finals]


class ReasoningSelection(DirectSelection):
    """One step: the reply reasons over the request and the candidates, then ends with "Action: <tool name>".

    Args:
        template: the prompt, with {question} and {tools}.
        tool_format: one candidate's line in {tools}.
        answer_pattern: regular expression with one group, the tool name after the thought (last match wins).
        chat: pass the prompt through the tokenizer's chat template when it has one.
        stop: strings that end the reply.
    """

    def __init__(self, template: str = REASON, tool_format: str = TOOL_FORMAT, answer_pattern: str = ACTION_PATTERN,
                 chat: bool = False, stop: list[str] | None = None):
        super().__init__(template, tool_format, answer_pattern, chat, stop)
