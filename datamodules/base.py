"""The base every litforge datamodule shares (tokenizer, splits, a resumable seeded shuffle and padding), and the
arguments of the ones that read files or `datasets` (`FromSource`, see `litforge.sources`)."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from litforge.data import Collator, Sample
from litforge.errors import ConfigError, require
from litforge.sampling import LengthGroupedSampler, ResumableDataLoader, ResumableSampler
from litforge.sources import DataSource, StreamingDataLoader, code_fingerprint, tokenizer_fingerprint
from litforge.tokenizer import load_tokenizer

Split = list[Sample] | dict[str, list[Sample]]


class LMDataModule(L.LightningDataModule):
    """Owns the tokenizer (linked to the model by the CLI) and turns each split's samples into padded batches.

    A subclass implements `load(split)`, returning the tokenized samples of "train", "val" or "test" (None when it
    has no such split, or a dict of named sets, each validated and logged under its own name). Loading happens in
    `setup`, before any training step, so bad input stops the run before it starts.

    Args:
        tokenizer: a local tokenizer directory; None for litforge's byte-level tokenizer.
        max_length: the context length samples are checked, cut or packed against.
        batch_size: samples per training step (per device).
        val_batch_size: samples per validation step (None = batch_size).
        num_workers: DataLoader worker processes.
        seed: seed of the shuffle order (the order depends on seed and epoch only; a resumed fit continues it at
            the batch after the last one trained, see `litforge.sampling`).
        group_by_length: batch training samples of similar length together (less padding): the shuffled epoch is
            sorted by length within mega-batches of `group_size` batches, and the batches are shuffled
            (`litforge.sampling.LengthGroupedSampler`). Validation and test batches keep the data's order.
        group_size: batches per mega-batch sorted by length (larger: less padding, a less random order).
        max_tokens: token budget per device per step (batches of varying size whose samples times their longest
            length stay within it; implies group_by_length). Each batch then carries `loss_scale` for the objective
            to keep the mean over samples (see `LengthGroupedSampler`); None: `batch_size` samples per batch.
    """

    def __init__(self, tokenizer: str | None = None, max_length: int = 256, batch_size: int = 16,
                 val_batch_size: int | None = None, num_workers: int = 0, seed: int = 0,
                 group_by_length: bool = False, group_size: int = 50, max_tokens: int | None = None):
        for field, value in (("max_length", max_length), ("batch_size", batch_size),
                             ("val_batch_size", val_batch_size), ("group_size", group_size), ("max_tokens", max_tokens)):
            require(value is None or value >= 1, field, f"must be at least 1, got {value}")
        require(num_workers >= 0, "num_workers", f"must be 0 or more, got {num_workers}")
        super().__init__()
        self.tokenizer = load_tokenizer(tokenizer)
        self.max_length = max_length
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.group_by_length = group_by_length or max_tokens is not None
        self.group_size = group_size
        self.max_tokens = max_tokens
        self.splits: dict[str, Split | None] = {}
        self.train_lengths: tuple[Split, list[int]] | None = None  # the training split and its samples' lengths
        self.collate = Collator(self.tokenizer.pad_token_id)

    def load(self, split: str) -> Split | None:
        """Tokenized samples of one split ("train", "val", "test")."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        needed = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["test"]}[stage]
        for split in needed:
            if split not in self.splits:
                self.splits[split] = self.load(split)
        if stage == "fit" and not self.splits["train"]:
            raise ValueError(f"{type(self).__name__} has no training samples")

    def names(self, split: str) -> list[str]:
        """Names of the sets of a split, in dataloader order ([""] for a single unnamed set)."""
        data = self.splits.get(split)
        return list(data) if isinstance(data, dict) else [""]

    def train_dataloader(self) -> DataLoader:
        """This rank's shard of the training samples in a seeded, resumable shuffle (see `litforge.sampling`)."""
        data = self.splits["train"]
        if self.trainer is not None and self.trainer.overfit_batches:  # debug mode: the first batches, in order
            return DataLoader(data, batch_size=self.batch_size, collate_fn=self.collate, num_workers=self.num_workers)
        shard = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None  # None: one process
        if self.group_by_length:
            sampler = self.length_grouped_sampler(data, shard or {})
        else:
            sampler = ResumableSampler(data, seed=self.seed, **(shard or {}))
        return ResumableDataLoader(data, sampler, batch_size=self.batch_size, collate_fn=self.collate,
                                   num_workers=self.num_workers)

    def sample_length(self, sample: Sample) -> int:
        """The tokens a sample adds to a padded batch: the summed length of its `*input_ids` fields (both rows of a
        preference pair); a subclass whose batches are laid out otherwise overrides it."""
        return sum(len(value) for key, value in sample.items() if key.endswith("input_ids"))

    def length_grouped_sampler(self, data, shard: dict) -> LengthGroupedSampler:
        """The training order of `group_by_length`, at the trainer's current epoch (its batch count is this epoch's).

        Token-budget epochs differ in batch count, and Lightning counts an epoch's batches once, when it builds the
        loader; a fit that can reach a second epoch must rebuild it every epoch (else a longer epoch is cut short).
        """
        if self.train_lengths is None or self.train_lengths[0] is not data:  # once per split, not per loader built
            self.train_lengths = (data, [self.sample_length(sample) for sample in data])
        lengths = self.train_lengths[1]
        sampler = LengthGroupedSampler(lengths, self.batch_size, self.group_size, self.max_tokens, seed=self.seed,
                                       **shard)
        trainer = self.trainer
        sampler.set_epoch(getattr(trainer, "current_epoch", 0))
        if self.max_tokens is not None and trainer is not None and trainer.reload_dataloaders_every_n_epochs != 1:
            batches = getattr(trainer, "max_steps", -1) * getattr(trainer, "accumulate_grad_batches", 1)
            if trainer.max_epochs != 1 and not 0 <= batches <= len(sampler):
                raise ConfigError("max_tokens", "token-budget epochs differ in batch count, which Lightning reads "
                                                "once: a fit of more than one epoch needs trainer."
                                                "reload_dataloaders_every_n_epochs: 1")
        return sampler

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loaders("test")

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loaders("test", metrics=False)  # Lightning shards prediction without repeats

    def _eval_loaders(self, split: str, metrics: bool = True) -> DataLoader | list[DataLoader]:
        """Each set in order; under several processes Lightning shards it with a `DistributedSampler`, whose padding
        repeats the objectives leave out of their metrics (`litforge.sampling.padding_rows`)."""
        data = self.splits.get(split)
        if not data:
            return []
        sets = list(data.values()) if isinstance(data, dict) else [data]
        shard = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        ranks = (shard or {}).get("num_replicas", 1) if metrics else 1
        for name, samples in zip(self.names(split), sets):
            # a rank holding only padding repeats would log nothing for the set (a stream runs on one process)
            if not isinstance(samples, IterableDataset) and len(samples) < ranks:
                raise ConfigError("data", f"the {split} set {name or split!r} has {len(samples)} samples, fewer than "
                                          f"the {ranks} processes that share it")
        loaders = [DataLoader(samples, batch_size=self.val_batch_size, shuffle=False, collate_fn=self.collate,
                              num_workers=self.num_workers) for samples in sets]
        return loaders if isinstance(data, dict) else loaders[0]


class FromSource:
    """Mixed in before an `LMDataModule` subclass: its train/val/test rows come from files or `datasets`.

    The subclass reads `self.source` (`litforge.sources.DataSource`): `read(split)` gives JSONL Records (checked line
    by line) or a `datasets` split, and `tokenize` maps a split through the subclass's encoder with a cache.

    Args:
        train_path: training rows: a JSONL file; a .json, .parquet, .arrow or .csv file; a folder written by
            `save_to_disk`; or a hub name (`owner/name`, where a network is there).
        val_path: validation rows, the same kinds (optional).
        test_path: test rows, the same kinds (optional).
        splits: the split of each source to read, by litforge split, e.g. {train: train_prefs, val: test_prefs}
            (default: the source's only split, else train / validation / test).
        columns: the column holding each field litforge reads, e.g. {prompt: question, response: answer}.
        streaming: read `datasets` sources lazily as they train (one process, num_workers 0; give the trainer
            max_steps, as a stream has no length).
        shuffle_buffer: samples in the shuffle buffer of a streamed training split.
        subset: the configuration name of a hub data set.
        cache_dir: where `datasets` keeps Arrow copies and tokenized caches (None: HF_DATASETS_CACHE, and for a
            `save_to_disk` folder, inside it).
        **kwargs: see the datamodule this is mixed into.
    """

    def __init__(self, train_path: str, val_path: str | None = None, test_path: str | None = None,
                 splits: dict[str, str] | None = None, columns: dict[str, str] | None = None, streaming: bool = False,
                 shuffle_buffer: int = 1000, subset: str | None = None, cache_dir: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.source = DataSource({"train": train_path, "val": val_path, "test": test_path}, splits=splits,
                                 columns=columns, streaming=streaming, subset=subset, cache_dir=cache_dir)
        self.paths = self.source.paths
        self.shuffle_buffer = shuffle_buffer

    def encoding(self, **settings) -> dict:
        """What decides how a row is tokenized besides the row: names the tokenized cache (with the source)."""
        return {"class": type(self).__qualname__, "code": code_fingerprint(type(self)),
                "tokenizer": tokenizer_fingerprint(self.tokenizer), "max_length": self.max_length} | settings

    def train_dataloader(self) -> DataLoader:
        """A streamed training split's loader (one process, no worker processes; see `StreamingDataLoader`), else
        `LMDataModule`'s resumable shuffle."""
        data = self.splits["train"]
        if not isinstance(data, IterableDataset):
            return super().train_dataloader()
        shard = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        if (shard or {}).get("num_replicas", 1) > 1:
            raise ConfigError("streaming", "a streamed split trains on one process only (ranks given unequal shards "
                                           "by split_dataset_by_node would hang DDP at the end of an epoch); set "
                                           "streaming: false: a non-streamed split stays memory-mapped Arrow on "
                                           "disk, so a set larger than memory still trains")
        if self.group_by_length:
            raise ConfigError("group_by_length", "a streamed split's lengths are unknown before it is read; set "
                                                 "streaming: false to group by length or batch by max_tokens")
        if self.num_workers:
            raise ConfigError("num_workers", "must be 0 with streaming: true (workers would split the stream by its "
                                             "shards, out of the order a resumed fit replays)")
        self.stream = StreamingDataLoader(data, seed=self.seed, buffer_size=self.shuffle_buffer,
                                          batch_size=self.batch_size, collate_fn=self.collate)
        return self.stream

    def on_before_batch_transfer(self, batch, dataloader_idx):
        """A streamed training batch is consumed here, when its step takes it (see `StreamingDataLoader`)."""
        if isinstance(batch, dict) and StreamingDataLoader.TAG in batch:
            return self.stream.consumed(batch)
        return batch
