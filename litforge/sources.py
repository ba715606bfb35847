"""Where a datamodule's rows come from: a checked JSONL file, or anything Hugging Face `datasets` reads.

One reader for every file-backed datamodule (SFT, preference pairs, plain text). A path is read by
- litforge's JSONL reader (`litforge.data.read_jsonl`: errors name file, line and field) when it ends in `.jsonl`,
  or in no suffix `datasets` knows, and `streaming` is off;
- `datasets` otherwise: a `.json`/`.parquet`/`.arrow`/`.csv` file, a folder written by `save_to_disk`, a folder of
  data files, or a hub name (`owner/name`, read only where a network is there; HF_HUB_OFFLINE=1 says so).
Rows become `Record`s either way, with the `columns:` mapping applied, so one encoder serves both and a bad row
names its file and line, or its source, split and index, and the user's own column name.

Tokenizing a `datasets` split runs through `Dataset.map`, fingerprinted by the source's own fingerprint, the
tokenizer, the encoder's settings and the code of the datamodule: a second run with the same inputs reads the
tokenized Arrow cache instead of tokenizing again. A non-streamed split stays memory-mapped Arrow, so a set larger
than RAM trains without streaming; `streaming: true` reads it lazily instead (one process, see `StreamingDataLoader`).

Departures from `datasets`' own habits:
1. The split of a source defaults to its only split, else to the one named after litforge's split (train;
   validation, val, valid or dev; test); `splits:` names it otherwise (slicing such as `train[:1000]` works).
2. Packing plain text into blocks happens within each map batch of 1000 documents, as transformers' `run_clm`
   example does; the rest of each batch that does not fill a block is dropped.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from litforge.data import DataError, Record, Sample, read_jsonl
from litforge.errors import ConfigError

DATASETS_FORMATS = {".json": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".tsv": "csv"}
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val", "valid", "dev"), "test": ("test",)}
MAP_BATCH = 1000  # rows per `Dataset.map` batch (also the packing window of plain text)


class DataSource:
    """The train/val/test rows of a datamodule, read from JSONL files or through `datasets`.

    Args:
        paths: per litforge split ("train", "val", "test"), a path or hub name (None: no such split).
        splits: per litforge split, the split of the source to read (default: see the module docstring).
        columns: litforge field -> the column that holds it (e.g. {"prompt": "question"}).
        streaming: read `datasets` sources lazily (IterableDataset) instead of into memory-mapped Arrow.
        subset: the configuration of a hub data set (`load_dataset(path, name=subset)`).
        cache_dir: where `datasets` keeps its Arrow copies and the tokenized caches (None: HF_DATASETS_CACHE, and
            the tokenized cache of a `save_to_disk` folder inside that folder).
    """

    def __init__(self, paths: dict[str, str | None], splits: dict[str, str] | None = None,
                 columns: dict[str, str] | None = None, streaming: bool = False, subset: str | None = None,
                 cache_dir: str | None = None):
        unknown = set(splits or {}) - set(SPLIT_NAMES)
        if unknown:
            raise ConfigError("splits", f"keys are litforge's splits {sorted(SPLIT_NAMES)}, got {sorted(unknown)}")
        self.paths = paths
        self.splits = splits or {}
        self.columns = columns or {}
        self.streaming = streaming
        self.subset = subset
        self.cache_dir = cache_dir
        self.split_names: dict[str, str] = {}  # litforge split -> the source's split read (named in errors)

    def is_jsonl(self, split: str) -> bool:
        """Whether a split is read by litforge's checked JSONL reader (else by `datasets`)."""
        path = Path(self.paths[split])
        if self.streaming or path.is_dir() or path.suffix.lower() in DATASETS_FORMATS:
            return False
        return path.exists() or path.suffix.lower() in (".jsonl", ".txt") or not _looks_like_hub(path)

    def read(self, split: str) -> list[Record] | Any | None:
        """The rows of a split: JSONL `Record`s, a `datasets.Dataset`, an `IterableDataset` (streaming) or None."""
        if self.paths.get(split) is None:
            return None
        if self.is_jsonl(split):
            return [self.record(record, record.path, line=record.line) for record in read_jsonl(self.paths[split])]
        return self.dataset(split)

    def records(self, split: str) -> Iterator[Record]:
        """Every row of a split as a `Record` (the columns mapping applied), whichever reader it takes."""
        rows = self.read(split)
        if rows is None or isinstance(rows, list):
            yield from rows or []
            return
        for index, row in enumerate(rows):
            yield self.record(row, self.paths[split], split=self.split_names[split], index=index)

    def record(self, row: dict, path: str, line: int | None = None, split: str | None = None,
               index: int | None = None) -> Record:
        """A row in litforge's field names, remembering where it came from."""
        renamed = {column: field for field, column in self.columns.items()}
        record = Record({renamed.get(key, key): value for key, value in row.items()})
        record.path, record.line, record.split, record.index = str(path), line, split, index
        record.columns = self.columns
        return record

    def dataset(self, split: str) -> Any:
        """A split read through `datasets` (a Dataset, or an IterableDataset when streaming)."""
        import datasets

        path, wanted = self.paths[split], self.splits.get(split)
        local = Path(path)
        try:
            if local.is_dir() and _is_saved(local):
                loaded = datasets.load_from_disk(str(local))
                if self.streaming:
                    loaded = _to_iterable(loaded)
            elif local.is_file() or local.suffix.lower() in DATASETS_FORMATS:
                if not local.is_file():
                    raise DataError(path, None, None, "file not found")
                builder = DATASETS_FORMATS.get(local.suffix.lower(), "json")
                extra = {"delimiter": "\t"} if local.suffix.lower() == ".tsv" else {}
                loaded = datasets.load_dataset(builder, data_files=str(local), split=wanted, cache_dir=self.cache_dir,
                                               streaming=self.streaming, **extra)
            elif local.is_dir() and not any(f.suffix.lower() in DATASETS_FORMATS or f.suffix.lower() == ".jsonl"
                                            for f in local.rglob("*") if f.is_file()):
                raise DataError(path, None, None, "is a directory with no data files, nor a data set written by "
                                                  "save_to_disk")
            else:  # a folder of data files, or a hub name
                loaded = datasets.load_dataset(path, name=self.subset, split=wanted, cache_dir=self.cache_dir,
                                               streaming=self.streaming)
        except DataError:
            raise
        except Exception as error:  # datasets raises many types; the user needs the source and the reason
            raise DataError(path, None, None, _reason(path, error)) from error
        if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            self.split_names[split] = self._pick(split, list(loaded))
            loaded = loaded[self.split_names[split]]
        elif wanted is not None and _is_saved(local):
            raise DataError(path, None, None, f"is one saved Dataset, without splits; leave splits.{split} out")
        else:
            self.split_names[split] = str(wanted or loaded.split or split)  # a saved Dataset may have no name
        return loaded

    def _pick(self, split: str, available: list[str]) -> str:
        """The split of a multi-split source that litforge's `split` reads (module docstring, departure 1)."""
        wanted = self.splits.get(split)
        if wanted is not None:
            if wanted not in available:
                raise DataError(self.paths[split], None, None, f"has no split {wanted!r} (it has {available}); "
                                                               f"set splits: {{{split}: ...}} to one of them")
            return wanted
        if len(available) == 1:
            return available[0]
        for name in SPLIT_NAMES[split]:
            if name in available:
                return name
        raise DataError(self.paths[split], None, None, f"has splits {available}, none named "
                                                       f"{' or '.join(SPLIT_NAMES[split])}; set "
                                                       f"splits: {{{split}: ...}} to the one to read")

    def tokenize(self, split: str, rows: Any, encode: Callable[[list[Record]], list[Sample]], output: list[str],
                 settings: dict[str, Any]) -> Any:
        """`rows` (a `datasets` split) tokenized by `encode` (a batch of Records -> its samples) through `map`.

        `output` lists the sample fields (a batch whose rows are all dropped still needs them); `settings` is
        everything besides the rows that decides the result (tokenizer, lengths, flags, `code_fingerprint`): with
        the source's fingerprint it names the cached result, so an equal second run reads it instead of tokenizing.
        """
        source, split_name = self.paths[split], self.split_names[split]

        def batch(columns: dict[str, list], indices: list[int]) -> dict[str, list]:
            names = list(columns)
            records = [self.record({name: columns[name][i] for name in names}, source, split=split_name, index=index)
                       for i, index in enumerate(indices)]
            samples = encode(records)
            return {field: [sample[field] for sample in samples] for field in output}

        remove = rows.column_names
        if self.streaming:
            if remove is None:  # a stream whose columns are only known once read
                remove = list(next(iter(rows)))
            return rows.map(batch, batched=True, batch_size=MAP_BATCH, with_indices=True, remove_columns=remove)
        fingerprint = _hash([rows._fingerprint, settings, self.columns])
        cache_file = None  # datasets' choice: beside the source's Arrow files (inside a save_to_disk folder)
        if self.cache_dir is not None:
            Path(self.cache_dir, "tokenized").mkdir(parents=True, exist_ok=True)
            cache_file = str(Path(self.cache_dir, "tokenized", f"{fingerprint}.arrow"))
        return rows.map(batch, batched=True, batch_size=MAP_BATCH, with_indices=True, remove_columns=remove,
                        new_fingerprint=fingerprint, cache_file_name=cache_file,
                        desc=f"tokenizing {source} [{split_name}]")


class StreamingDataLoader(DataLoader):
    """Batches of a streamed training split (a `datasets.IterableDataset`), shuffled in a buffer and resumable.

    Epoch e reads the stream through a shuffle buffer seeded with seed + e. The state Lightning saves in a checkpoint
    is the epoch and the samples of it that training steps have consumed; a resumed fit replays the epoch's shuffled
    stream past them (reading, not training, them again), so it continues at the exact next batch. Lightning fetches
    one batch ahead of the step on a loader without a length, so a batch counts as consumed when `consumed` sees it
    (the datamodule's `on_before_batch_transfer`, called for the batch a step is about to take), not when handed out.
    One process only: under several, `split_dataset_by_node` would give the ranks unequal numbers of batches and DDP
    would hang at the end of an epoch (refused by the datamodule with a ConfigError).

    Args:
        stream: the tokenized split.
        seed: seed of the shuffle buffer (epoch e uses seed + e).
        buffer_size: samples in the shuffle buffer (0: stream order).
        **kwargs: batch_size and collate_fn, as for a DataLoader.
    """

    TAG = "stream_position"  # (epoch, samples consumed once this batch is): carried by each batch to `consumed`

    def __init__(self, stream: Any, seed: int = 0, buffer_size: int = 1000, **kwargs: Any):
        super().__init__(stream, **kwargs)
        self.seed, self.buffer_size = seed, buffer_size
        self.epoch, self.position = 0, 0
        self.lengths: dict[int, int] = {}  # epoch -> its samples, once read to its end

    def __iter__(self) -> Iterator[Any]:
        epoch, position = self.state_dict().values()
        stream = self.dataset
        if self.buffer_size:
            stream = stream.shuffle(seed=self.seed, buffer_size=self.buffer_size)
            stream.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.seed)  # starting an iteration draws no global random state
        for samples in DataLoader(stream.skip(position) if position else stream, batch_size=self.batch_size,
                                  collate_fn=list, generator=generator):
            position += len(samples)
            yield self.collate_fn(samples) | {self.TAG: (epoch, position)}
        self.lengths[epoch] = position

    def consumed(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Record that a training step takes `batch`; returns it without its position tag."""
        self.epoch, self.position = batch.pop(self.TAG)
        return batch

    def state_dict(self) -> dict[str, int]:
        """The epoch and the samples of it consumed (the next epoch at 0 once one is consumed to its end)."""
        if self.lengths.get(self.epoch) == self.position:
            return {"epoch": self.epoch + 1, "position": 0}
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after the last batch consumed when `state_dict()` was taken."""
        self.epoch, self.position = state["epoch"], state["position"]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides a tokenizer's output: its vocabulary and rules, special tokens and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    parts = [backend.to_str() if backend is not None else repr(tokenizer.get_vocab()),
             tokenizer.special_tokens_map, getattr(tokenizer, "chat_template", None), type(tokenizer).__name__]
    return _hash(parts)


def _hash(value: Any) -> str:
    """A short stable hash of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_fingerprint(cls: type) -> str:
    """A hash of the source files that tokenize for a datamodule class (its own and its bases' files, this module,
    litforge.data): editing that code invalidates the tokenized caches."""
    files = {inspect.getsourcefile(base) for base in cls.__mro__ if base.__module__.startswith("litforge")}
    files |= {__file__, inspect.getsourcefile(read_jsonl)}
    digest = hashlib.sha256()
    for file in sorted(f for f in files if f):
        digest.update(Path(file).read_bytes())
    return digest.hexdigest()[:16]


def _is_saved(folder: Path) -> bool:
    """Whether a folder was written by `save_to_disk` (a Dataset or a DatasetDict)."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _to_iterable(loaded: Any) -> Any:
    """A saved Dataset or DatasetDict as IterableDataset(s)."""
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        return datasets.IterableDatasetDict({name: split.to_iterable_dataset() for name, split in loaded.items()})
    return loaded.to_iterable_dataset()


def _looks_like_hub(path: Path) -> bool:
    """Whether a missing local path could be a hub name (`name` or `owner/name`)."""
    return re.fullmatch(r"[\w-][\w.-]*(/[\w.-]+)?", str(path)) is not None


def _reason(path: str, error: Exception) -> str:
    """Why `datasets` could not read a source, in one line."""
    if not Path(path).exists() and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return "not a local file or folder, and the hub is offline (HF_HUB_OFFLINE=1)"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"cannot be read by datasets ({type(error).__name__}: {first})"
