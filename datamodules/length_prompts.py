"""Length-instructed evaluation prompts from JSONL shaped as AlpacaEval-LI / MT-Bench-LI (`instruction`, `max_len`)."""

from __future__ import annotations

from typing import Any

from litforge.data import read_jsonl
from litforge.length import LengthInstruction, check_limit


def read_length_prompts(path: str, instruction: LengthInstruction | None = None) -> list[dict[str, Any]]:
    """Length-instructed prompts from JSONL lines `{"instruction": str, "max_len": int, ...}` (AlpacaEval-LI shape).

    Returns {"prompt", "instruction", "max_len"} per line (other fields are kept). When `instruction` (a template) is
    given, the limit is prepended to the instruction; pass None for files whose instructions already state it.
    A missing field, or a limit that is not a positive integer, raises DataError naming file, line and field.
    """
    prompts = []
    for record in read_jsonl(path):
        text = record.get_text("instruction")
        if "max_len" not in record:
            raise record.error("max_len", "missing")
        limit = check_limit(record["max_len"], record.path, record.line, "max_len")
        prompt = instruction.apply(text, limit) if instruction is not None else text
        prompts.append({**record, "prompt": prompt, "instruction": text, "max_len": limit})
    return prompts
