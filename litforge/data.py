"""Data I/O shared by every datamodule: the data error type, JSONL reading, atomic writes, encoding, collation."""

from __future__ import annotations

import codecs
import glob
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from litforge.errors import UserError
from litforge.tokenizer import response_end_ids

IGNORE_INDEX = -100
Sample = dict[str, list[int]]  # "input_ids", "labels" and any further per-token int fields


class DataError(UserError, ValueError):
    """Bad input data: names the file and line (JSONL) or the split and row index (`datasets`), and the field, so the
    user can fix it before training."""

    def __init__(self, path: str | os.PathLike | None, line: int | None, field: str | None, message: str,
                 split: str | None = None, index: int | None = None):
        self.path, self.line, self.field, self.message = path, line, field, message
        self.split, self.index = split, index
        where = str(path) if path is not None else "<data>"
        if line is not None:
            where += f":{line}"
        if split is not None:
            where += f": split '{split}'" + (f", index {index}" if index is not None else "")
        if field is not None:
            where += f": {'column' if split is not None else 'field'} '{field}'"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # pickled whole (a worker process hands it to its parent), not from `args`
        return type(self), (self.path, self.line, self.field, self.message, self.split, self.index)


class Record(dict):
    """One row that remembers where it came from, so later checks can name it: a JSONL line (file and line) or a
    `datasets` row (source, split and index). `columns` maps the fields litforge reads to the names the data gives
    them (a `columns:` mapping in YAML), so errors name the user's column."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path: str = "<data>"
        self.line: int | None = None
        self.split: str | None = None
        self.index: int | None = None
        self.columns: dict[str, str] = {}

    def error(self, field: str | None, message: str) -> DataError:
        """A DataError pointing at this record."""
        if field is not None:
            head = re.match(r"[^\[.]*", field).group()
            field = self.columns.get(head, head) + field[len(head):]
        return DataError(self.path, self.line, field, message, split=self.split, index=self.index)

    def located(self, values: dict) -> Record:
        """A new record of `values` at this record's place (a row rewritten into litforge's fields)."""
        record = Record(values)
        record.path, record.line, record.split, record.index = self.path, self.line, self.split, self.index
        record.columns = self.columns
        return record

    def get_typed(self, field: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
        """The value of `field`, checked to be of `kind`; a missing or mistyped field raises DataError."""
        if field not in self:
            if required:
                raise self.error(field, "missing")
            return None
        value = self[field]
        if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
            names = " or ".join(k.__name__ for k in _as_tuple(kind))
            raise self.error(field, f"expected {names}, got {type(value).__name__}")
        return value

    def get_text(self, field: str, required: bool = True, allow_empty: bool = False) -> str | None:
        """A string field; empty strings are refused unless `allow_empty`."""
        value = self.get_typed(field, str, required)
        if value is not None and not allow_empty and not value.strip():
            raise self.error(field, "is empty")
        return value


def read_jsonl(path: str | os.PathLike) -> list[Record]:
    """Parse a JSONL file into Records; invalid JSON or UTF-8, non-object lines and an empty file raise DataError.

    A UTF-8 byte-order mark at the start of the file is skipped (editors on Windows write one).
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(path, None, None, "is a directory, not a JSONL file")
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    try:
        handle = path.open("rb")
    except OSError as error:
        raise DataError(path, None, None, f"cannot be read ({error.strerror})") from None
    records = []
    offset = 0  # of the current line in the file, in bytes
    with handle:
        for number, raw in enumerate(handle, start=1):
            bom = len(codecs.BOM_UTF8) if number == 1 and raw.startswith(codecs.BOM_UTF8) else 0
            line = _decode_line(path, number, raw[bom:], offset + bom)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(path, number, None, f"invalid JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(value, dict):
                raise DataError(path, number, None, f"expected a JSON object, got {type(value).__name__}")
            record = Record(value)
            record.path, record.line = str(path), number
            records.append(record)
    if not records:
        raise DataError(path, None, None, "file is empty")
    return records


def _decode_line(path: Path, number: int, raw: bytes, offset: int) -> str:
    """One line of a JSONL file as text; a byte that is not UTF-8 raises DataError with its column and file offset.

    `offset` is where `raw` starts in the file, in bytes.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        column = len(raw[:error.start].decode("utf-8")) + 1  # in characters, as an editor counts
        raise DataError(path, number, None, f"not valid UTF-8: byte 0x{raw[error.start]:02x} at column {column} "
                                            f"(byte offset {offset + error.start} in the file); "
                                            "save the file as UTF-8") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows as JSONL atomically: readers see the old file or the whole new one, never a part."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


@contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a staging file (or an empty folder) beside `path`: renamed onto `path` on success, removed on failure.

    Readers see the old output or the whole new one, never a part; an exception or Ctrl-C removes the staging path.
    Its name, `.<name>.staging-<host>-<pid>-<token>`, says who writes it, so the leftovers of a writer that was
    killed (kill -9) are cleared by the next write to the same destination on the same host. Outputs get the
    permissions the umask gives, as a plain `open` or `mkdir` would (not mkstemp's 0600 or mkdtemp's 0700); in a
    folder, so does every file the writer put there (safetensors writes its weights 0600).
    A folder destination must be missing or empty.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_staging(path)
    staging = path.parent / f".{path.name}.staging-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    if directory:
        staging.mkdir()
    else:
        os.close(os.open(staging, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield staging
        if directory:
            _apply_umask(staging)
        if directory and path.is_dir():
            path.rmdir()  # an empty destination: a non-empty one raises instead of being replaced
        os.replace(staging, path)
    except BaseException:
        _remove(staging)
        raise


def clear_stale_staging(path: str | os.PathLike) -> list[Path]:
    """Remove the staging files and folders of `path` whose writer (a process on this host) is gone; returns them."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.staging-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{{8}}")
    host = socket.gethostname()
    stale = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.staging-*"):
        match = pattern.fullmatch(candidate.name)
        if match and match["host"] == host and not _alive(int(match["pid"])):
            _remove(candidate)
            stale.append(candidate)
    return stale


def _apply_umask(folder: Path) -> None:
    """Give the files under `folder` mode 0666 and the folders 0777, less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def _remove(path: Path) -> None:
    """Delete a staging file or folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def encode_prompt_response(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str,
                           add_bos: bool = True) -> Sample:
    """Tokens of bos + prompt + response + eos, with labels on the response (and eos) only; a chat template's own
    turn end comes before the eos when it is another token (`litforge.tokenizer.response_end_ids`)."""
    prompt_ids = ([tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else [])
    prompt_ids += tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + response_end_ids(tokenizer)
    return {"input_ids": prompt_ids + response_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + response_ids}


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Tokens of bos + text + eos (a document boundary on both sides)."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def pack(documents: Iterable[list[int]], block_size: int) -> list[Sample]:
    """Concatenate token documents and cut the stream into `block_size` blocks (a last partial block is dropped)."""
    stream = [token for document in documents for token in document]
    blocks = [stream[start:start + block_size] for start in range(0, len(stream) - block_size + 1, block_size)]
    return [{"input_ids": block, "labels": list(block)} for block in blocks]


def check_length(sample: Sample, max_length: int, truncate: bool, record: Record | None, field: str) -> Sample | None:
    """Refuse (DataError) or cut a sample longer than the context; None when cutting would leave no label."""
    length = len(sample["input_ids"])
    if length <= max_length:
        return sample
    if not truncate:
        message = f"sample is {length} tokens, longer than max_length={max_length} (set truncate: true to cut it)"
        raise record.error(field, message) if record is not None else DataError(None, None, field, message)
    cut = {key: values[:max_length] for key, values in sample.items()}
    return cut if any(label != IGNORE_INDEX for label in cut["labels"]) else None


class Collator:
    """Right-pads a list of samples into a batch: input_ids with pad, labels with -100, plus attention_mask."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 1):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        length = max(len(sample["input_ids"]) for sample in samples)
        length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {}
        for key in samples[0]:
            if not isinstance(samples[0][key], list):
                batch[key] = [sample[key] for sample in samples]
                continue
            fill = self.pad_token_id if key == "input_ids" else IGNORE_INDEX if key == "labels" else 0
            batch[key] = torch.tensor([s[key] + [fill] * (length - len(s[key])) for s in samples], dtype=torch.long)
        batch["attention_mask"] = torch.tensor(
            [[1] * len(s["input_ids"]) + [0] * (length - len(s["input_ids"])) for s in samples], dtype=torch.long)
        return batch


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
