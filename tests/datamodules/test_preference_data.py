"""Preference data: JSONL (plain and chat), bad-input errors, collation."""

import json

import pytest

from litforge.data import IGNORE_INDEX, DataError
from litforge.datamodules import JSONLPreferenceDataModule


def write(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


def test_jsonl_pairs_tokenize_with_loss_on_responses_and_collate_chosen_then_rejected(tmp_path):
    path = write(tmp_path / "p.jsonl", [{"prompt": "1+1=", "chosen": "2", "rejected": "three"},
                                       {"prompt": "hi", "chosen": "hello", "rejected": "go"}])
    data = JSONLPreferenceDataModule(train_path=path, max_length=32, batch_size=2)
    data.setup("fit")
    sample = data.splits["train"][0]
    bos, eos = data.tokenizer.bos_token_id, data.tokenizer.eos_token_id
    assert sample["chosen_input_ids"] == [bos, ord("1"), ord("+"), ord("1"), ord("="), ord("2"), eos]
    assert sample["chosen_labels"] == [IGNORE_INDEX] * 5 + [ord("2"), eos]
    assert sample["rejected_labels"][:5] == [IGNORE_INDEX] * 5 and sample["index"] == 0
    batch = data.collate(data.splits["train"])
    assert batch["input_ids"].shape == (4, 11)  # 2 chosen rows then 2 rejected rows, padded to "1+1="+"three"
    assert batch["input_ids"][0, :7].tolist() == sample["chosen_input_ids"]
    assert batch["input_ids"][2].tolist() == sample["rejected_input_ids"]
    assert batch["labels"][0, 7:].tolist() == [IGNORE_INDEX] * 4
    assert batch["attention_mask"][0].tolist() == [1] * 7 + [0] * 4
    assert batch["index"].tolist() == [0, 1]


def test_chat_pairs_use_the_chat_template(tmp_path):
    path = write(tmp_path / "c.jsonl", [{"prompt": [{"role": "user", "content": "2+2?"}],
                                         "chosen": [{"role": "assistant", "content": "4"}],
                                         "rejected": {"role": "assistant", "content": "5"}}])
    data = JSONLPreferenceDataModule(train_path=path, max_length=64)
    data.setup("fit")
    sample = data.splits["train"][0]
    text = data.tokenizer.decode(sample["chosen_input_ids"])
    assert text == "<|bos|><user>\n2+2?<|eos|>\n<assistant>\n4<|eos|>"  # one bos, from the template
    labelled = [t for t in sample["chosen_labels"] if t != IGNORE_INDEX]
    assert data.tokenizer.decode(labelled) == "4<|eos|>"


@pytest.mark.parametrize("row, field, message", [
    ({"prompt": "q", "chosen": "a"}, "rejected", "missing"),
    ({"prompt": "q", "chosen": "a", "rejected": 3}, "rejected", "expected str"),
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "rejected", "identical to chosen"),
    ({"prompt": "q", "chosen": "  ", "rejected": "b"}, "chosen", "is empty"),
    ({"prompt": "x" * 40, "chosen": "a", "rejected": "b"}, "prompt", "no room for a response"),
    ({"prompt": "q", "chosen": "a" * 40, "rejected": "b"}, "chosen", "longer than max_length"),
    ({"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}, "prompt[0].content", "not a string"),
])
def test_bad_pairs_name_file_line_and_field(tmp_path, row, field, message):
    path = write(tmp_path / "bad.jsonl", [{"prompt": "ok", "chosen": "a", "rejected": "b"}, row])
    data = JSONLPreferenceDataModule(train_path=path, max_length=32)
    with pytest.raises(DataError) as caught:
        data.setup("fit")
    assert caught.value.line == 2 and caught.value.field == field and message in str(caught.value)
    assert str(caught.value).startswith(f"{path}:2: field '{field}'")


def test_invalid_json_and_truncation(tmp_path):
    with pytest.raises(DataError, match=r"bad.jsonl:1: invalid JSON"):
        JSONLPreferenceDataModule(train_path=write(tmp_path / "bad.jsonl", ["{nope"])).setup("fit")
    path = write(tmp_path / "long.jsonl", [{"prompt": "q", "chosen": "a" * 40, "rejected": "b"}])
    data = JSONLPreferenceDataModule(train_path=path, max_length=16, truncate=True)
    with pytest.warns(UserWarning, match="cut to max_length=16"):
        data.setup("fit")
    assert len(data.splits["train"][0]["chosen_input_ids"]) == 16


def test_a_pairs_length_for_grouping_counts_its_prompt_once(tmp_path):
    from litforge.datamodules import JSONLPreferenceDataModule
    from litforge.tokenizer import byte_level_tokenizer

    data = JSONLPreferenceDataModule(train_path=str(tmp_path / "x.jsonl"))
    data.tokenizer = byte_level_tokenizer()
    sample = data.encode_pair({"prompt": "abcd", "chosen": "xy", "rejected": "zzz"})
    assert data.sample_length(sample) == 1 + 4 + (2 + 1) + (3 + 1)  # bos + prompt, chosen + eos, rejected + eos
