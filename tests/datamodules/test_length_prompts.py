"""The AlpacaEval-LI / MT-Bench-LI prompt reader: limits written into prompts, bad rows named by file, line, field."""

from __future__ import annotations

import json

import pytest
from litforge.datamodules.length_prompts import read_length_prompts

from litforge.data import DataError
from litforge.length import LengthInstruction

TEMPLATE = LengthInstruction()


def write(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


def test_read_length_prompts(tmp_path):
    path = write(tmp_path / "li.jsonl", [{"instruction": "Name a color.", "max_len": 3, "output": "Red."},
                                         {"instruction": "Describe a cat.", "max_len": 40}])
    prompts = read_length_prompts(path, TEMPLATE)
    assert [p["max_len"] for p in prompts] == [3, 40] and prompts[0]["output"] == "Red."
    assert TEMPLATE.parse(prompts[1]["prompt"]) == ("Describe a cat.", 40)
    assert read_length_prompts(path, None)[0]["prompt"] == "Name a color."


@pytest.mark.parametrize("row, field, message", [
    ({"instruction": "x"}, "max_len", "missing"),
    ({"max_len": 3}, "instruction", "missing"),
    ({"instruction": "x", "max_len": 0}, "max_len", "must be positive"),
    ({"instruction": "x", "max_len": -2}, "max_len", "must be positive"),
    ({"instruction": "x", "max_len": "12"}, "max_len", "positive integer"),
])
def test_read_length_prompts_errors_name_file_line_field(tmp_path, row, field, message):
    path = write(tmp_path / "li.jsonl", [{"instruction": "fine", "max_len": 5}, row])
    with pytest.raises(DataError, match=message) as error:
        read_length_prompts(path, TEMPLATE)
    assert (error.value.path, error.value.line, error.value.field) == (path, 2, field)
