"""What the tool-use programs of ToolVerifier (Mekala et al. 2024) share, on the System 2 program contract
(`plugins/system2/base.py`): the candidate tools written into a prompt, the default templates, and the model's own
likelihood of each candidate as a continuation (the scorer `litforge.generation.continuation_logprobs`).

A selection program's input is `{"question": the request, "candidates": [Tool, ...], "label": the gold tool's name
(optional)}`; its answer is the chosen tool's name. Slots every selection template may use: {question} and {tools}
(the candidates, one `tool_format` line each, in the input's order).

The default templates are the ones the synthetic task trains (`datamodules/tool_tasks.py` builds its rows from these
constants), in the paper's format: a thought, then "Action: <tool name>".

Departures from the paper:
    1. A candidate's line is its description, then its name (`TOOL_FORMAT`), so that a causal model reads the name
       after what it names.
    2. Short byte-level prompts without few-shot demonstrations: the paper prompts a fine-tuned Llama-2 70B with
       instructions and the tool library; our tiny models read one line per candidate tool.
"""

from __future__ import annotations

from litforge.plugins.system2.base import Step, System2Program, check_template
from litforge.plugins.tools.library import Tool

from litforge.errors import UserError
from litforge.generation import continuation_logprobs

TOOL_FORMAT = "{description}: {name}"
SELECT = "Tools:\n{tools}\nRequest: {question}\nTool:"  # -> " <name>"
REASON = "Tools:\n{tools}\nRequest: {question}\nThought:"  # -> " <thought>\nAction: <name>"
ACTION = "\nAction:"  # ends a thought; the chosen name follows
CONTRAST = "A: {description_a}\nB: {description_b}\nContrast:"  # -> " <a> or <b>?"
ANSWER = "Request: {question}\nQuestion: {contrast}\nAnswer:"  # -> " <a or b>"
CHOOSE = "Request: {question}\nA: {tool_a}\nB: {tool_b}\nQuestion: {contrast}\nAnswer: {answer}\nTool:"  # -> " <name>"
FILL = "Tool: {description}\nRequest: {question}\n{parameter} ="  # -> " <value>"
VALUE_CONTRAST = "{parameter}: {parameter_description}\nA: {value_a}\nB: {value_b}\nContrast:"  # -> " <a> or <b>?"
VALUE_CHOOSE = "Request: {question}\nQuestion: {contrast}\n{parameter} ="  # -> " <value>"
NAME_PATTERN = r"^\s*(\S+)"
ACTION_PATTERN = r"Action:\s*(\S+)"
LINE_PATTERN = r"^\s*([^\n]*[^\s.])"
SELECT_SLOTS = frozenset({"question", "tools"})


class ToolProgram(System2Program):
    """A System 2 program over an input's candidate tools; its answer is a tool name.

    Args:
        tool_format: one candidate's line in {tools}, with {name} and {description} (and optionally {parameters},
            the parameter names joined by ", ").
        answer_pattern: regular expression with one group, the tool name in the final reply (last match wins).
        chat: pass each prompt through the tokenizer's chat template when it has one.
        stop: strings that end every reply.
    """

    def __init__(self, tool_format: str = TOOL_FORMAT, answer_pattern: str = NAME_PATTERN, chat: bool = False,
                 stop: list[str] | None = None):
        super().__init__(answer_pattern, chat, stop)
        self.tool_format = check_template(tool_format, "tool_format", required={"name", "description"},
                                          allowed={"parameters"})

    def line(self, tool: Tool) -> str:
        """One candidate written as `tool_format` says."""
        return self.tool_format.format(name=tool.name, description=tool.description,
                                       parameters=", ".join(p.name for p in tool.parameters))

    def slots(self, item: dict) -> dict[str, str]:
        """{question} and {tools} of an input; a UserError when it has no candidates."""
        candidates = item.get("candidates")
        if not candidates:
            raise UserError(f"{type(self).__name__} chooses among an input's candidates: an input has none "
                            f"(keys: {sorted(item)})")
        return {"question": str(item["question"]), "tools": "\n".join(self.line(tool) for tool in candidates)}

    def likelihoods(self, step: Step, prompts: list[str], continuations: list[str]) -> list[float]:
        """log p(continuation | prompt) under the model the step runs on (prompts through the chat template when
        `chat`), batched as the step's generation is."""
        texts = [self.chat_text(step.tokenizer, prompt) for prompt in prompts]
        bos = step.tokenizer.bos_token
        add_bos = not (bos and any(text.startswith(bos) for text in texts))
        return continuation_logprobs(step.model, step.tokenizer, texts, continuations, batch_size=step.batch_size,
                                     add_bos=add_bos)

    def ranked(self, step: Step, prompts: list[str], candidates: list[list[Tool]]) -> list[list[str]]:
        """Each row's candidate names, most likely first: log p(" <name>" | the row's prompt); ties keep the input
        order. All rows' candidates are scored in one batched pass."""
        pairs = [(row, tool.name) for row, tools in enumerate(candidates) for tool in tools]
        scores = self.likelihoods(step, [prompts[row] for row, _ in pairs], [f" {name}" for _, name in pairs])
        ranked: list[list[tuple[float, int, str]]] = [[] for _ in candidates]
        for index, ((row, name), score) in enumerate(zip(pairs, scores)):
            ranked[row].append((-score, index, name))
        return [[name for _, _, name in sorted(row)] for row in ranked]
