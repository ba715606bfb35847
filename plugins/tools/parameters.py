"""ToolVerifier's parameter verification (Mekala et al. 2024, §3.2): sample several fillings of a parameter, keep the
two most frequent distinct values, ask a verification question that contrasts them, and choose.

Input: `{"question": the request, "tool": Tool, "parameter": a parameter's name, "label": the gold value (optional)}`.
Steps: "fill" (`samples` fillings at `fill_temperature`, one batched call), then, when two distinct values remain
and `verify` is set, "contrast" (the question, from the two values and the parameter's description) and "final" (the
value, with the question in context). One distinct value is the answer as it is; none gives no answer.

Departures from the paper:
    1. The paper generates two candidate values per argument; here they are the two most frequent distinct values of
       `samples` sampled fillings (ties: the value sampled first), so `samples: 1` with `fill_temperature: 0` is plain
       greedy filling and `verify: false` is self-consistency over the fillings.
    2. The fill step samples at `fill_temperature` whatever the run's temperature (the verification steps use the
       run's).
"""

from __future__ import annotations

from collections import Counter

from litforge.plugins.system2.base import System2Program, check_template
from litforge.plugins.tools.base import FILL, LINE_PATTERN, VALUE_CHOOSE, VALUE_CONTRAST

from litforge.errors import UserError, require

VALUE_SLOTS = frozenset({"question", "parameter", "parameter_description", "description", "tool"})


def top_two(values: list[str | None]) -> list[str]:
    """The (at most) two most frequent distinct values, most frequent first; ties go to the value seen first; None
    (an unparsable filling) is never a value."""
    return [value for value, _ in Counter(value for value in values if value is not None).most_common(2)]


class ParameterVerification(System2Program):
    """Sampled fillings of one parameter, their two most frequent values contrasted, then the chosen value.

    Args:
        samples: fillings sampled per input.
        fill_temperature: temperature of the fillings (0 with samples 1: greedy filling).
        verify: contrast the two most frequent values (False: the most frequent value is the answer).
        fill_template: the filling prompt, with {question} and {parameter} (and optionally {description}, the tool's
            description, {tool}, its name, and {parameter_description}).
        contrast_template: the verification question's prompt, with {value_a} and {value_b} (and the fill slots).
        choose_template: the choice prompt, with {contrast} (and the fill slots, {value_a}, {value_b}).
        answer_pattern: regular expression with one group, the value in a filling or in the choice (last match wins).
        chat: pass each prompt through the tokenizer's chat template when it has one.
        stop: strings that end every reply.
    """

    def __init__(self, samples: int = 5, fill_temperature: float = 1.0, verify: bool = True,
                 fill_template: str = FILL, contrast_template: str = VALUE_CONTRAST,
                 choose_template: str = VALUE_CHOOSE, answer_pattern: str = LINE_PATTERN, chat: bool = False,
                 stop: list[str] | None = None):
        super().__init__(answer_pattern, chat, stop)
        require(samples >= 1, "samples", f"must be >= 1, got {samples}")
        require(fill_temperature >= 0, "fill_temperature", f"must be >= 0, got {fill_temperature}")
        require(samples == 1 or fill_temperature > 0, "fill_temperature",
                f"is 0 (greedy), so the {samples} fillings would be copies")
        self.samples, self.fill_temperature, self.verify = samples, fill_temperature, verify
        self.fill_template = check_template(fill_template, "fill_template", required={"question", "parameter"},
                                            allowed=VALUE_SLOTS)
        pair = VALUE_SLOTS | {"value_a", "value_b"}
        self.contrast_template = check_template(contrast_template, "contrast_template",
                                                required={"value_a", "value_b"}, allowed=VALUE_SLOTS)
        self.choose_template = check_template(choose_template, "choose_template", required={"contrast"},
                                              allowed=pair)

    def slots(self, item: dict) -> dict[str, str]:
        """The fill slots of an input; a UserError when its tool lacks the parameter."""
        tool, name = item.get("tool"), item.get("parameter")
        parameters = {p.name: p for p in getattr(tool, "parameters", ())}
        if name not in parameters:
            raise UserError(f"ParameterVerification fills a parameter of an input's tool: {name!r} is not one of "
                            f"{sorted(parameters)}")
        return {"question": str(item["question"]), "parameter": name,
                "parameter_description": parameters[name].description, "description": tool.description,
                "tool": tool.name}

    def solve(self, items, step):
        slots = [self.slots(item) for item in items]
        rows = [row for _ in range(self.samples) for row in range(len(items))]
        fills = step("fill", [self.fill_template.format(**slots[row]) for row in rows], rows,
                     temperature=self.fill_temperature)
        values: list[list[str | None]] = [[] for _ in items]
        for row, fill in zip(rows, fills):
            values[row].append(self.parse(fill))
        tops = [top_two(found) for found in values]
        steps = [{"fill": fills[row], "values": " | ".join(top)} for row, top in enumerate(tops)]
        finals = [f" {top[0]}" if top else "" for top in tops]
        pairs = [row for row, top in enumerate(tops) if self.verify and len(top) == 2]
        pair_slots = {row: dict(slots[row], value_a=tops[row][0], value_b=tops[row][1]) for row in pairs}
        contrasts = step("contrast", [self.contrast_template.format(**pair_slots[row]) for row in pairs], pairs)
        choices = step("final", [self.choose_template.format(**pair_slots[row], contrast=contrast.strip())
                                 for row, contrast in zip(pairs, contrasts)], pairs)
        for row, contrast, choice in zip(pairs, contrasts, choices):
            steps[row]["contrast"] = contrast.strip()
            finals[row] = choice
        return list(zip(steps, finals))
