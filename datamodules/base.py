"""The base every litforge datamodule shares: tokenizer, splits, a resumable seeded shuffle and padding."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from litforge.data import Collator, Sample
from litforge.errors import ConfigError
from litforge.sampling import ResumableDataLoader, ResumableSampler
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
    """

    def __init__(self, tokenizer: str | None = None, max_length: int = 256, batch_size: int = 16,
                 val_batch_size: int | None = None, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.tokenizer = load_tokenizer(tokenizer)
        self.max_length = max_length
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.splits: dict[str, Split | None] = {}
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
        sampler = ResumableSampler(data, seed=self.seed, **(shard or {}))
        return ResumableDataLoader(data, sampler, batch_size=self.batch_size, collate_fn=self.collate,
                                   num_workers=self.num_workers)

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
            if len(samples) < ranks:  # a rank holding only padding repeats would log nothing for the set
                raise ConfigError("data", f"the {split} set {name or split!r} has {len(samples)} samples, fewer than "
                                          f"the {ranks} processes that share it")
        loaders = [DataLoader(samples, batch_size=self.val_batch_size, shuffle=False, collate_fn=self.collate,
                              num_workers=self.num_workers) for samples in sets]
        return loaders if isinstance(data, dict) else loaders[0]
