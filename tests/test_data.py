"""JSONL reading, encoding, packing, collation, atomic writes and the bad-input cases of data I/O."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from litforge.data import (
    IGNORE_INDEX,
    Collator,
    DataError,
    atomic_path,
    encode_prompt_response,
    pack,
    read_jsonl,
    write_jsonl,
)
from litforge.datamodules import SFTDataModule


def write(path, lines):
    path.write_text("".join(line if isinstance(line, str) else json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_prompt_is_masked_and_response_ends_with_eos(tokenizer):
    sample = encode_prompt_response(tokenizer, "ab", "cd")
    assert sample["input_ids"] == [256, 97, 98, 99, 100, 257]
    assert sample["labels"] == [IGNORE_INDEX] * 3 + [99, 100, 257]


def test_pack_cuts_the_stream_into_full_blocks():
    blocks = pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block_size=4)
    assert [b["input_ids"] for b in blocks] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert all(b["labels"] == b["input_ids"] for b in blocks)


def test_collator_right_pads_with_pad_ignore_and_zero_mask():
    batch = Collator(pad_token_id=9)([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
                                      {"input_ids": [4], "labels": [4]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 9, 9]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_bytes_that_are_not_utf8_name_file_line_column_and_offset(tmp_path):
    path = tmp_path / "latin1.jsonl"
    first = b'{"text": "ok"}\n'
    path.write_bytes(first + '{"text": "café"}\n'.encode("latin-1"))
    with pytest.raises(DataError) as caught:
        read_jsonl(path)
    assert (caught.value.path, caught.value.line) == (path, 2)
    offset = len(first) + len(b'{"text": "caf')
    assert str(caught.value) == (f"{path}:2: not valid UTF-8: byte 0xe9 at column 14 (byte offset {offset} in the "
                                 "file); save the file as UTF-8")
    path.write_bytes(first + b'{"text": "\xc3\xa9\xff"}\n')  # "é" then a stray byte: column 12 in characters
    with pytest.raises(DataError, match=r"latin1.jsonl:2: not valid UTF-8: byte 0xff at column 12 \(byte offset 27 "):
        read_jsonl(path)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + '{"text": "été"}\n{"text": "b"}\n'.encode("utf-8"))
    assert [record["text"] for record in read_jsonl(path)] == ["été", "b"]
    path.write_bytes(b"\xef\xbb\xbf" + b'{"text": "\xff"}\n')  # the offset still counts the mark
    with pytest.raises(DataError, match=r"bom.jsonl:1: not valid UTF-8: byte 0xff at column 11 \(byte offset 13 "):
        read_jsonl(path)


def test_a_directory_is_called_a_directory_and_a_missing_file_not_found(tmp_path):
    with pytest.raises(DataError, match=f"^{tmp_path}: is a directory, not a JSONL file$"):
        read_jsonl(tmp_path)
    with pytest.raises(DataError, match="is a directory"):
        SFTDataModule(train_path=str(tmp_path), max_length=64).setup("fit")
    with pytest.raises(DataError, match=f"^{tmp_path / 'nope.jsonl'}: file not found$"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_atomic_writes_keep_the_old_file_on_failure_and_leave_no_staging(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, [{"a": 1}])

    def rows(stop):
        yield {"a": 2}
        raise stop

    for stop in (RuntimeError("disk full"), KeyboardInterrupt()):
        with pytest.raises(type(stop)):
            write_jsonl(path, rows(stop))
        assert [dict(record) for record in read_jsonl(path)] == [{"a": 1}]
        assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]


def test_atomic_outputs_get_the_permissions_of_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}])
        with atomic_path(tmp_path / "folder", directory=True) as staging:
            (staging / "inner").mkdir()
            (staging / "inner" / "weights").write_bytes(b"")
            os.chmod(staging / "inner" / "weights", 0o600)  # as safetensors writes them
    finally:
        os.umask(previous)
    assert (tmp_path / "rows.jsonl").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "folder" / "inner").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "folder" / "inner" / "weights").stat().st_mode & 0o777 == 0o640


KILLED_WRITER = """
import os, signal, sys
from litforge.data import write_jsonl

def rows():
    yield {"a": 1}
    os.kill(os.getpid(), signal.SIGKILL)  # mid-write, as kill -9 would

write_jsonl(sys.argv[1], rows())
"""


@pytest.mark.slow
def test_staging_left_by_a_killed_writer_is_cleared_by_the_next_write(tmp_path):
    path = tmp_path / "pairs.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], env=env, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    [stale] = tmp_path.glob(".pairs.jsonl.staging-*")
    host = socket.gethostname()
    alive = tmp_path / f".pairs.jsonl.staging-{host}-{os.getpid()}-0123abcd"  # a writer at work on this host
    elsewhere = tmp_path / ".pairs.jsonl.staging-another-host-1-0123abcd"  # pids on other hosts are not ours to test
    alive.write_text("")
    elsewhere.write_text("")
    write_jsonl(path, [{"a": 2}])
    assert not stale.exists() and alive.exists() and elsewhere.exists()
    assert [dict(record) for record in read_jsonl(path)] == [{"a": 2}]
