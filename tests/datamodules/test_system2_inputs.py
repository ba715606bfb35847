"""System 2 inputs from JSONL: questions, contexts, pairs and labels as the programs read them; bad lines named."""

from __future__ import annotations

import json

import pytest

from litforge.data import DataError
from litforge.datamodules import System2InputsDataModule


def write(path, *lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_inputs_are_served_as_lists_of_dicts_with_their_line(tmp_path):
    path = write(tmp_path / "in.jsonl", {"question": "2+7?", "context": "I think 8.", "label": 9}, "",
                 {"question": "better?", "response_a": "4", "response_b": "", "label": "B"},
                 {"question": "no label", "context": ""})
    data = System2InputsDataModule(str(path), batch_size=2)
    data.setup("validate")
    data.setup("predict")
    assert data.splits["val"] == data.splits["test"] == [
        {"question": "2+7?", "line": 1, "context": "I think 8.", "label": "9"},
        {"question": "better?", "line": 3, "response_a": "4", "response_b": "", "label": "B"},
        {"question": "no label", "line": 4},
    ]
    assert [len(batch) for batch in data.val_dataloader()] == [2, 1]
    assert next(iter(data.predict_dataloader()))[0]["question"] == "2+7?"


@pytest.mark.parametrize("line, field, message", [
    ({"context": "c"}, "question", "missing"),
    ({"question": "  "}, "question", "is empty"),
    ({"question": "q", "context": 3}, "context", "expected str, got int"),
    ({"question": "q", "response_a": "x"}, "response_b", "missing: a pair needs both responses"),
    ({"question": "q", "response_b": "x"}, "response_a", "missing: a pair needs both responses"),
    ({"question": "q", "response_a": "x", "response_b": "y", "label": "C"}, "label",
     "a pair's label must be \"A\" or \"B\", got 'C'"),
    ({"question": "q", "label": " "}, "label", r"is empty \(leave the field out for an unlabelled input\)"),
    ({"question": "q", "label": [1]}, "label", "expected str or int or float, got list"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, line, field, message):
    path = write(tmp_path / "in.jsonl", {"question": "fine"}, line)
    with pytest.raises(DataError, match=message) as caught:
        System2InputsDataModule(str(path)).setup("predict")
    assert (str(caught.value.path), caught.value.line, caught.value.field) == (str(path), 2, field)


def test_there_is_nothing_to_train_on(tmp_path):
    with pytest.raises(ValueError, match="has no training samples"):
        System2InputsDataModule(str(write(tmp_path / "in.jsonl", {"question": "q"}))).setup("fit")
