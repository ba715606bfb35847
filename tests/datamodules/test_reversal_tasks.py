"""Reversal-curse datamodules: seeded facts, entity marks aligned with tokens, questions, JSONL errors."""

from __future__ import annotations

import json

import pytest
from litforge.datamodules import BiographyReversalDataModule, ReversalTextDataModule, SymbolicReversalDataModule
from litforge.plugins.reversal import CapitalizedWords

from litforge.data import IGNORE_INDEX, DataError
from litforge.errors import ConfigError


def decode_entities(tokenizer, sample):
    """The text of each entity mark of a sample, in mark order."""
    marks = sorted({mark for mark in sample["entity"] if mark})
    return [tokenizer.decode([t for t, m in zip(sample["input_ids"], sample["entity"]) if m == mark]) for mark in marks]


def question(tokenizer, sample):
    """(prompt, answer) text of a question sample."""
    prompt = [t for t, label in zip(sample["input_ids"], sample["labels"]) if label == IGNORE_INDEX]
    answer = [label for label in sample["labels"] if label != IGNORE_INDEX]
    return tokenizer.decode(prompt, skip_special_tokens=True), tokenizer.decode(answer)


def test_symbolic_facts_are_seeded_and_asked_both_ways():
    data = SymbolicReversalDataModule(num_pairs=30, entity_length=3, num_symbols=10, seed=3)
    train, val = data.load("train"), data.load("val")
    assert train == SymbolicReversalDataModule(num_pairs=30, entity_length=3, num_symbols=10, seed=3).load("train")
    assert train != SymbolicReversalDataModule(num_pairs=30, entity_length=3, num_symbols=10, seed=4).load("train")
    tok = data.tokenizer
    names = set()
    for sample, forward, reverse, tokens in zip(train, val["forward"], val["reverse"], val["reverse_tokens"]):
        a, b = decode_entities(tok, sample)
        assert tok.decode(sample["input_ids"], skip_special_tokens=True) == f"{a} = {b}"
        assert len(a.split()) == len(b.split()) == 3 and set(a.replace(" ", "")) <= set("abcdefghij")
        assert question(tok, forward) == (f"{a} = ", f"{b}<|eos|>")
        assert question(tok, reverse) == (f"{b} = ", f"{a}<|eos|>")
        assert question(tok, tokens) == (f"{b[::-1]} = ", f"{a[::-1]}<|eos|>")
        names |= {a, b}
    assert len(names) == 60  # every name used once
    with pytest.raises(ValueError, match="too few"):
        SymbolicReversalDataModule(num_pairs=60, entity_length=1, num_symbols=10)


def test_biographies_reverse_question_gives_attributes_and_asks_the_name():
    data = BiographyReversalDataModule(num_people=5, num_eval=2)
    train, val = data.load("train"), data.load("val")
    tok = data.tokenizer
    name, city, date, job = decode_entities(tok, train[0])
    assert tok.decode(train[0]["input_ids"], skip_special_tokens=True) == \
        f"{name} was born in {city} on {date} and works as a {job} ."
    assert question(tok, val["forward"][0]) == (f"{name} was born in ", city)
    prompt = f". {job} a as works and {date} on {city} in born was "
    assert question(tok, val["reverse"][0]) == (prompt, f"{name}<|eos|>")
    assert len(val["reverse"]) == 2


def write(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


def test_jsonl_marks_entities_from_spans_or_detector(tmp_path):
    path = write(tmp_path / "train.jsonl", [{"text": "Ann Lee met Bo.", "entities": [[0, 7], [12, 14]]},
                                            {"text": "then Ann Lee left"}])
    data = ReversalTextDataModule(path, detector=CapitalizedWords())
    first, second = data.load("train")
    assert decode_entities(data.tokenizer, first) == ["Ann Lee", "Bo"]
    assert decode_entities(data.tokenizer, second) == ["Ann Lee"]
    assert first["labels"] == first["input_ids"]
    assert decode_entities(data.tokenizer, ReversalTextDataModule(path).load("train")[1]) == []


@pytest.mark.parametrize("row, field, message", [
    ({"text": "Ann met Bo", "entities": [[0, 3], [2, 5]]}, "entities[1]", "overlaps"),
    ({"text": "Ann met Bo", "entities": [[8, 11]]}, "entities[0]", "out of range"),
    ({"text": "Ann met Bo", "entities": "Ann"}, "entities", "expected list"),
    ({"text": "Ann met Bo", "entities": [[0]]}, "entities[0]", "integers"),
    ({"entities": []}, "text", "missing"),
])
def test_jsonl_bad_input_names_file_line_and_field(tmp_path, row, field, message):
    path = write(tmp_path / "bad.jsonl", [{"text": "fine"}, row])
    with pytest.raises(DataError, match=message) as error:
        ReversalTextDataModule(path).load("train")
    assert (error.value.path, error.value.line, error.value.field) == (path, 2, field)


BAD_SETTINGS = [
    (SymbolicReversalDataModule, {"num_symbols": 0}, "num_symbols"),
    (SymbolicReversalDataModule, {"entity_length": 0}, "entity_length"),
    (SymbolicReversalDataModule, {"num_symbols": 3, "entity_length": 2, "num_pairs": 10}, "num_pairs"),
    (BiographyReversalDataModule, {"num_people": 10 ** 6}, "num_people"),
]


@pytest.mark.parametrize("cls, kwargs, field", BAD_SETTINGS, ids=[f"{c.__name__}-{f}" for c, _, f in BAD_SETTINGS])
def test_bad_settings_are_config_errors_naming_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        cls(**kwargs).setup("fit")  # some settings only show when the task is generated, still before training
    assert caught.value.field == field
