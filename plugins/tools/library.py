"""The tool library of ToolVerifier (Mekala et al. 2024, "ToolVerifier: Generalization to New Tools via
Self-Verification"): tools with a name, a description and typed parameters, read from JSONL or from the ToolSelect CSV
layout, and the candidate set a request is posed with (the gold tool once, hard negatives first).

JSONL library: one tool a line,
    {"name": str, "description": str, "parameters": [{"name", "type", "description" (optional),
     "values" (optional: the allowed values)}], "family": str (optional), "attributes": {str: str} (optional)}
ToolSelect CSV: one request a row, with the header `query,tools,tool,arguments`: `tools` a JSON array of the row's
candidate tools (objects as in the JSONL library), `tool` the gold tool's name, `arguments` a JSON object of the gold
parameter values (may be empty). Every bad line or row is a DataError naming file, line and field.

Departures from the paper:
    1. The ToolSelect release's own column names could not be checked offline: the CSV layout above is ours (a row
       carries its candidates inline, as the released samples list the candidate tools per request).
    2. Hard negatives are siblings in the sense of `attributes`: tools of the same family whose attributes differ
       in exactly one key. A library without attributes has no siblings, and negatives are drawn at random.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litforge.data import DataError, Record, read_jsonl

PARAMETER_TYPES = ("string", "integer", "number", "boolean")


@dataclass
class Parameter:
    """One parameter of a tool: its name, type, description and (optionally) the values it allows."""

    name: str
    type: str = "string"
    description: str = ""
    values: tuple[str, ...] = ()


@dataclass
class Tool:
    """A tool: name, description and parameters; `family` and `attributes` say which tools are its siblings."""

    name: str
    description: str
    parameters: tuple[Parameter, ...] = ()
    family: str = ""
    attributes: tuple[tuple[str, str], ...] = field(default=())

    def attribute(self, key: str) -> str | None:
        """The value of one attribute (None when the tool lacks it)."""
        return dict(self.attributes).get(key)

    def is_sibling(self, other: Tool) -> bool:
        """Same family, same attribute keys, exactly one attribute value different."""
        mine, theirs = dict(self.attributes), dict(other.attributes)
        if not self.family or self.family != other.family or mine.keys() != theirs.keys():
            return False
        return sum(mine[key] != theirs[key] for key in mine) == 1

    def as_dict(self) -> dict[str, Any]:
        """The tool as a JSONL library line (what `tool_of` reads back)."""
        return {"name": self.name, "description": self.description,
                "parameters": [{"name": p.name, "type": p.type, "description": p.description, "values": list(p.values)}
                               for p in self.parameters],
                "family": self.family, "attributes": dict(self.attributes)}


def tool_of(value: Any, record: Record, where: str = "") -> Tool:
    """A checked Tool of a JSON object; errors name `record`'s file and line and the field (prefixed `where`)."""
    if not isinstance(value, dict):
        raise record.error(where.rstrip(".") or None, f"expected a JSON object, got {type(value).__name__}")
    item = Record(value)
    item.path, item.line = record.path, record.line

    def error(name: str, message: str) -> DataError:
        return record.error(f"{where}{name}", message)

    for name in ("name", "description"):
        text = value.get(name)
        if not isinstance(text, str) or not text.strip():
            raise error(name, "missing" if name not in value else "must be a non-empty string")
    if any(char.isspace() for char in value["name"]):
        raise error("name", f"must be one word (a program reads the chosen name back), got {value['name']!r}")
    parameters = value.get("parameters", [])
    if not isinstance(parameters, list):
        raise error("parameters", f"expected a JSON array, got {type(parameters).__name__}")
    checked = []
    for k, parameter in enumerate(parameters):
        at = f"parameters[{k}]."
        if not isinstance(parameter, dict):
            raise error(at.rstrip("."), f"expected a JSON object, got {type(parameter).__name__}")
        name = parameter.get("name")
        if not isinstance(name, str) or not name.strip():
            raise error(at + "name", "missing" if "name" not in parameter else "must be a non-empty string")
        kind = parameter.get("type", "string")
        if kind not in PARAMETER_TYPES:
            raise error(at + "type", f"must be one of {', '.join(PARAMETER_TYPES)}, got {kind!r}")
        values = parameter.get("values", [])
        if not isinstance(values, list) or not all(isinstance(v, (str, int, float)) for v in values):
            raise error(at + "values", "must be a JSON array of strings or numbers")
        description = parameter.get("description", "")
        if not isinstance(description, str):
            raise error(at + "description", f"expected a string, got {type(description).__name__}")
        checked.append(Parameter(name, kind, description, tuple(str(v) for v in values)))
    family = value.get("family", "")
    if not isinstance(family, str):
        raise error("family", f"expected a string, got {type(family).__name__}")
    attributes = value.get("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise error("attributes", "must be a JSON object of strings")
    return Tool(value["name"], value["description"], tuple(checked), family, tuple(sorted(attributes.items())))


class ToolLibrary:
    """The tools a request may be answered with, by name; builds candidate sets with hard negatives."""

    def __init__(self, tools: Iterable[Tool]):
        self.tools = list(tools)
        self.by_name = {tool.name: tool for tool in self.tools}
        if len(self.by_name) < len(self.tools):
            seen: set[str] = set()
            twice = next(tool.name for tool in self.tools if tool.name in seen or seen.add(tool.name))
            raise ValueError(f"the library names the tool {twice!r} twice")

    def __len__(self) -> int:
        return len(self.tools)

    def __getitem__(self, name: str) -> Tool:
        return self.by_name[name]

    @classmethod
    def from_jsonl(cls, path: str | Path) -> ToolLibrary:
        """Read a JSONL library (one tool a line); a repeated name is a DataError on its second line."""
        tools, lines = [], {}
        for record in read_jsonl(path):
            tool = tool_of(dict(record), record)
            if tool.name in lines:
                raise record.error("name", f"{tool.name!r} is already the name of the tool on line {lines[tool.name]}")
            lines[tool.name] = record.line
            tools.append(tool)
        return cls(tools)

    def siblings(self, tool: Tool) -> list[Tool]:
        """The tools that differ from `tool` in exactly one attribute, in library order."""
        return [other for other in self.tools if other.is_sibling(tool)]

    def candidates(self, gold: Tool, size: int, hard: int, rng: random.Random) -> list[Tool]:
        """`size` candidates in a seeded random order: `gold` exactly once, up to `hard` of its siblings, the rest
        other tools drawn at random (fewer when the library is smaller)."""
        siblings = self.siblings(gold)
        chosen = rng.sample(siblings, min(hard, len(siblings), size - 1))
        taken = {gold.name, *(tool.name for tool in chosen)}
        others = [tool for tool in self.tools if tool.name not in taken]
        chosen += rng.sample(others, min(size - 1 - len(chosen), len(others)))
        order = [gold, *chosen]
        rng.shuffle(order)
        return order


def read_toolselect_csv(path: str | Path) -> list[dict[str, Any]]:
    """The requests of a ToolSelect-shaped CSV as program inputs: `{"question", "candidates" (Tools), "label" (the
    gold name), "arguments", "line"}`; a bad row is a DataError naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    items = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in ("query", "tools", "tool") if name not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, 1, missing[0], f"missing column (the header is {reader.fieldnames})")
        for row in reader:
            record = Record(row)
            record.path, record.line = str(path), reader.line_num
            items.append(_request(record))
    if not items:
        raise DataError(path, None, None, "file has no rows")
    return items


def _request(record: Record) -> dict[str, Any]:
    """One checked ToolSelect row."""
    question = (record.get("query") or "").strip()
    if not question:
        raise record.error("query", "is empty")
    tools = _json_field(record, "tools", list)
    candidates = [tool_of(value, record, f"tools[{k}].") for k, value in enumerate(tools)]
    names = [tool.name for tool in candidates]
    gold = (record.get("tool") or "").strip()
    if names.count(gold) != 1:
        raise record.error("tool", f"{gold!r} must name exactly one of the row's tools ({', '.join(names)})")
    arguments = _json_field(record, "arguments", dict) if (record.get("arguments") or "").strip() else {}
    known = {parameter.name for parameter in candidates[names.index(gold)].parameters}
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise record.error("arguments", f"{unknown[0]!r} is not a parameter of {gold!r} ({', '.join(sorted(known))})")
    return {"question": question, "candidates": candidates, "label": gold,
            "arguments": {name: str(value) for name, value in arguments.items()}, "line": record.line}


def _json_field(record: Record, name: str, kind: type) -> Any:
    try:
        value = json.loads(record.get(name) or "")
    except json.JSONDecodeError as error:
        raise record.error(name, f"invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(value, kind):
        raise record.error(name, f"expected a JSON {'array' if kind is list else 'object'}, got {type(value).__name__}")
    return value
