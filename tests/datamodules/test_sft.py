"""SFT data: prompt/response and chat-message JSONL, loss on the response only, bad lines named by file and field."""

import json

import pytest

from litforge.data import IGNORE_INDEX, DataError
from litforge.datamodules import SFTDataModule


def write(path, lines):
    path.write_text("".join(line if isinstance(line, str) else json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_sft_module_reads_prompt_response_and_messages(tmp_path, tokenizer):
    path = write(tmp_path / "s.jsonl", [
        {"prompt": "2+2=", "response": "4"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
    ])
    data = SFTDataModule(train_path=path, max_length=64)
    data.setup("fit")
    first, second = data.splits["train"]
    assert [t for t in first["labels"] if t != IGNORE_INDEX] == [ord("4"), 257]
    labelled = [t for t in second["labels"] if t != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == "yo<|eos|>"
    assert tokenizer.decode(second["input_ids"]).startswith("<|bos|><user>\nhi<|eos|>\n<assistant>\n")


BAD_SFT = [
    ('{"prompt": "a", "response": "b"}\n{"prompt": "a", "response": \n', 2, None, "invalid JSON"),
    ('{"prompt": "a"}\n', 1, "response", "missing"),
    ('{"prompt": "a", "response": 3}\n', 1, "response", "expected str, got int"),
    ('{"prompt": "a", "response": "  "}\n', 1, "response", "is empty"),
    ('[1, 2]\n', 1, None, "expected a JSON object"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', 1, "messages[0].role", "must be the assistant"),
    ('{"messages": [{"role": "robot", "content": "hi"}]}\n', 1, "messages[0].role", "expected one of"),
    ('{"messages": []}\n', 1, "messages", "is empty"),
    ('{"prompt": "a", "response": "' + "x" * 100 + '"}\n', 1, "response", "longer than max_length=64"),
]


@pytest.mark.parametrize("content, line, field, message", BAD_SFT)
def test_bad_sft_input_names_file_line_and_field(tmp_path, content, line, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        SFTDataModule(train_path=str(path), max_length=64).setup("fit")
    assert (str(caught.value.path), caught.value.line, caught.value.field) == (str(path), line, field)
    assert str(caught.value).startswith(f"{path}:{line}")
