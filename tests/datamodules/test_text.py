"""Plain-text data: JSONL packed into blocks or cut per document, and the seeded synthetic text of the quick start."""

import json

import pytest
import torch

from litforge.data import DataError
from litforge.datamodules import SyntheticTextDataModule, TextDataModule


def write(path, lines):
    path.write_text("".join(line if isinstance(line, str) else json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_text_module_packs_jsonl(tmp_path):
    path = write(tmp_path / "t.jsonl", [{"text": "hello world " * 10}] * 5)
    data = TextDataModule(train_path=path, val_path=path, max_length=16)
    data.setup("fit")
    assert all(len(s["input_ids"]) == 16 for s in data.splits["train"])
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape == (min(16, len(data.splits["train"])), 16)
    assert batch["attention_mask"].all()  # packed blocks need no padding


def test_empty_and_missing_files_are_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl: file is empty"):
        TextDataModule(train_path=str(empty)).setup("fit")
    with pytest.raises(DataError, match="file not found"):
        TextDataModule(train_path=str(tmp_path / "nope.jsonl")).setup("fit")


def test_long_text_without_packing_fails_or_truncates_with_warning(tmp_path):
    path = write(tmp_path / "t.jsonl", [{"text": "short"}, {"text": "x" * 50}])
    with pytest.raises(DataError, match=r"t.jsonl:2: field 'text': sample is 52 tokens"):
        TextDataModule(train_path=path, pack=False, max_length=20).setup("fit")
    data = TextDataModule(train_path=path, pack=False, truncate=True, max_length=20)
    with pytest.warns(UserWarning, match="1 documents cut"):
        data.setup("fit")
    assert [len(s["input_ids"]) for s in data.splits["train"]] == [7, 20]


def test_synthetic_text_is_seeded():
    first, second = SyntheticTextDataModule(num_train=20, max_length=32), SyntheticTextDataModule(num_train=20,
                                                                                                 max_length=32)
    first.setup("fit"), second.setup("fit")
    assert first.splits["train"] == second.splits["train"]
    assert first.splits["train"] != first.splits["val"]
    assert torch.is_tensor(next(iter(first.train_dataloader()))["input_ids"])
