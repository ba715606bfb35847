"""Training order that survives a kill: a sharded, seeded shuffle and a DataLoader that can start part-way through it.

`ResumableSampler` gives each data-parallel rank exactly the indices of a `DistributedSampler`, which Lightning
puts into a shuffled loader under DDP (a permutation seeded by seed + epoch, padded to a multiple of the ranks, every
`num_replicas`-th index from `rank`). Being a `DistributedSampler`, Lightning keeps it instead of wrapping it, so the
datamodule builds it with the trainer's `distributed_sampler_kwargs`. It remembers how far into its epoch training
is (`position`, in samples over all ranks) and, after `load_state_dict`, iterates only the rest of that epoch.

`ResumableDataLoader` advances its sampler's position as it hands out each batch, so its `state_dict` is the exact
point to resume from even with worker processes prefetching ahead. Lightning saves a train loader's `state_dict` in
every checkpoint (`fit_loop.combined_loader`) and calls `load_state_dict` on the new loader when a fit resumes, so
`--ckpt_path last` continues with the batch after the last one trained.

`padding_rows` tells which rows of an evaluation batch are a `DistributedSampler`'s padding (the repeats that make
every rank's share equally long, so that sharded forwards stay in step): evaluation metrics leave them out, so each
sample of a validation set counts exactly once whatever the number of ranks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler


class ResumableSampler(DistributedSampler):
    """`DistributedSampler`'s order and shards, resumable at any sample of any epoch.

    State: `epoch` (set by Lightning through `set_epoch`) and `position`, the samples of the epoch, over all ranks,
    already consumed (advanced by `advance`). Iterating yields this rank's share of the epoch from `position` on;
    every rank gets the same number of indices (the rest is padded to a multiple of `num_replicas` by repeating its
    start, as `DistributedSampler` pads the whole epoch). Moving to another epoch resets `position` to 0, and an
    epoch consumed to its end is iterated again from its start.

    Args:
        dataset: what is sampled (only its length is used).
        num_replicas: data-parallel ranks (world size).
        rank: this process's data-parallel rank.
        shuffle: permute each epoch (False: dataset order).
        seed: seed of the permutations (epoch e uses seed + e).
        drop_last: cut the epoch to a multiple of `num_replicas` instead of padding it.
    """

    def __init__(self, dataset: Sized, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of each epoch; a new epoch starts at its first sample."""
        if epoch != self.epoch:
            self.position = 0
        super().set_epoch(epoch)

    def order(self) -> list[int]:
        """The whole epoch's indices, all ranks interleaved (rank r owns every `num_replicas`-th from r)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            indices = torch.randperm(len(self.dataset), generator=generator).tolist()
        else:
            indices = list(range(len(self.dataset)))
        return pad(indices, self.total_size)

    def __iter__(self) -> Iterator[int]:
        if self.position >= self.total_size:
            self.position = 0
        rest = self.order()[self.position:]
        rest = pad(rest, math.ceil(len(rest) / self.num_replicas) * self.num_replicas)
        return iter(rest[self.rank::self.num_replicas])

    def advance(self, samples: int) -> None:
        """Record that `samples` more of this epoch (over all ranks) have been consumed."""
        self.position = min(self.position + samples, self.total_size)

    def state_dict(self) -> dict[str, int]:
        """Where training is: the epoch and the samples of it already consumed."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from `state_dict()` output: the next iteration yields the rest of that epoch (or the next one)."""
        epoch, position = state["epoch"], state["position"]
        if position >= self.total_size:  # that epoch was finished
            epoch, position = epoch + 1, 0
        self.epoch, self.position = epoch, position


def pad(indices: list[int], size: int) -> list[int]:
    """`indices` cut or cyclically repeated to exactly `size` entries."""
    if not indices:
        return []
    return (indices * math.ceil(size / len(indices)))[:size]


class ResumableDataLoader(DataLoader):
    """A DataLoader over a `ResumableSampler` whose `state_dict` is the batch to resume from (Lightning saves it).

    Each batch advances the sampler by `batch_size * num_replicas` samples as it is handed out, so prefetching
    workers do not move the resume point. The loader gets its own `torch.Generator` (seeded with the sampler's seed),
    so starting an iteration never draws from the global random state a checkpoint carries (`litforge.resume`).

    Args:
        dataset: the samples.
        sampler: the order; its `num_replicas` and `rank` are the loader's shard.
        **kwargs: any other `DataLoader` argument (batch_size, collate_fn, num_workers, ...).
    """

    def __init__(self, dataset, sampler: ResumableSampler, **kwargs: Any):
        kwargs.setdefault("generator", torch.Generator().manual_seed(sampler.seed))
        super().__init__(dataset, sampler=sampler, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        samples = self.batch_size * self.sampler.num_replicas
        for batch in super().__iter__():
            self.sampler.advance(samples)
            yield batch

    def state_dict(self) -> dict[str, int]:
        """The sampler's state: epoch and samples consumed up to the last batch handed out."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume after the last batch handed out when `state_dict()` was taken."""
        self.sampler.load_state_dict(state)


def padding_rows(loader: Any, batch_idx: int, rows: int) -> list[bool]:
    """Per row of batch `batch_idx` of `loader`: True where it is a `DistributedSampler`'s padding (a repeat).

    A `DistributedSampler` (not dropping the last samples) lays the epoch out as positions 0 .. total_size - 1, pads
    the positions from `len(dataset)` on with repeats of the first ones, and gives rank r the positions
    r, r + num_replicas, ...; so row j of batch b is position rank + num_replicas * (b * batch_size + j). Any other
    sampler (one process) has no padding.
    """
    sampler = getattr(loader, "sampler", None)
    batch_size = getattr(loader, "batch_size", None)
    if not isinstance(sampler, DistributedSampler) or sampler.drop_last or batch_size is None:
        return [False] * rows
    if isinstance(sampler, ResumableSampler):  # training order: resumes mid-epoch, never used for evaluation
        return [False] * rows
    first = batch_idx * batch_size
    return [sampler.rank + sampler.num_replicas * (first + j) >= len(sampler.dataset) for j in range(rows)]
