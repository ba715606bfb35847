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

`LengthGroupedSampler` orders an epoch into batches of samples of similar length (less padding), after the
"megabatch" sampler of Hugging Face's Trainer (`group_by_length`) and fairseq's token-budget batches
(`--max-tokens`), with the same resumable, rank-identical order. Departures from those:
1. The epoch's order is a list of *steps* shared by every rank: each step holds `batch_size * num_replicas`
   samples, sorted by length within its mega-batch, and rank r takes every `num_replicas`-th of them from r. So all
   ranks run equally many steps of equally many samples, and a step's ranks hold neighbours in length.
2. The step with the most padded tokens is moved to the front of the epoch (Hugging Face puts the longest
   mega-batch first) so that a budget too large for memory fails at the first step, not hours in.
3. Token-budget steps vary in sample count; a step's batch then carries `loss_scale` = its samples per rank over
   the epoch's mean samples per rank per step, so that a per-step mean loss times it is the objective of
   fixed-size batches (see `LengthGroupedSampler`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from litforge.errors import ConfigError


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


class LengthGroupedSampler(ResumableSampler):
    """Batches of samples of similar length, shuffled by batch, seeded, resumable, the same steps on every rank.

    Each epoch: the seeded permutation of `ResumableSampler` (seed + epoch, padded to a multiple of the ranks) is cut
    into mega-batches of `group_size` steps; each mega-batch is sorted by length, longest first, and cut into steps
    (all ranks' samples of one training step); the steps are shuffled with the same generator, and the step with
    the most padded tokens goes first. Iterating yields this rank's batches: every `num_replicas`-th index of each
    remaining step, from `rank` on. `position` counts samples over all ranks, as in `ResumableSampler`, and always
    falls at a step's end, so a resumed epoch continues with the next step. The steps depend on the number of
    ranks: resumed on another number, the epoch continues with the first step of the new layout that starts at or
    after `position` (samples of a step cut across may be skipped or repeated).

    Token budget (`max_tokens`): a step takes k samples per rank, k as large as keeps k * (the longest length of
    the step) <= max_tokens, so each rank's padded batch stays within the budget and every rank still holds k
    samples. Batches then vary in size; since a per-batch mean weighs a sample of a large batch less than one of a
    small batch (and large batches hold the short samples), the objective would change with the grouping. The
    loader adds `loss_scale` = k / (mean samples per rank per step of the epoch) to each batch: a step's mean loss
    times `loss_scale` is its summed loss over the mean batch size, so every sample of the epoch weighs the same,
    1 / (ranks * mean batch), as in fixed-size batches, and the data-parallel gradient average keeps that.

    Args:
        lengths: each sample's length in tokens (what a batch is padded to, e.g. prompt + chosen + rejected).
        batch_size: samples per rank per step (with `max_tokens`: the nominal size that sets the mega-batch).
        group_size: steps per mega-batch (larger: batches more uniform in length, order less random).
        max_tokens: token budget per rank per step (None: fixed `batch_size` steps).
        num_replicas: data-parallel ranks (world size).
        rank: this process's data-parallel rank.
        shuffle: permute each epoch and shuffle the steps (False: dataset order, sorted within mega-batches).
        seed: seed of the permutations (epoch e uses seed + e).
        drop_last: cut the epoch to a multiple of `num_replicas` instead of padding it.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, group_size: int = 50, max_tokens: int | None = None,
                 num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        for field, value in (("batch_size", batch_size), ("group_size", group_size)):
            if value < 1:
                raise ConfigError(field, f"must be at least 1, got {value}")
        self.lengths = list(lengths)
        self.batch_size, self.group_size, self.max_tokens = batch_size, group_size, max_tokens
        if max_tokens is not None and self.lengths and max(self.lengths) > max_tokens:
            raise ConfigError("max_tokens", f"{max_tokens} is below the longest sample ({max(self.lengths)} tokens); "
                                            f"raise it to at least that")

    def steps(self) -> list[list[int]]:
        """The epoch's steps in order, each all ranks' indices (rank r's batch is every `num_replicas`-th from r)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        count = len(self.lengths)
        indices = torch.randperm(count, generator=generator).tolist() if self.shuffle else list(range(count))
        indices = pad(indices, self.total_size)
        group = self.group_size * self.batch_size * self.num_replicas
        steps = []
        for start in range(0, len(indices), group):
            steps += self.cut(sorted(indices[start:start + group], key=self.lengths.__getitem__, reverse=True))
        if self.shuffle and steps:
            steps = [steps[i] for i in torch.randperm(len(steps), generator=generator).tolist()]
            steps.insert(0, steps.pop(max(range(len(steps)), key=lambda i: self.padded_tokens(steps[i]))))
        return steps

    def cut(self, group: list[int]) -> list[list[int]]:
        """A mega-batch sorted longest first, cut into steps (sizes multiples of `num_replicas`)."""
        if self.max_tokens is None:
            size = self.batch_size * self.num_replicas
            return [group[start:start + size] for start in range(0, len(group), size)]
        steps, start = [], 0
        while start < len(group):
            per_rank = self.max_tokens // self.lengths[group[start]]  # the step's longest sample comes first
            steps.append(group[start:start + per_rank * self.num_replicas])
            start += len(steps[-1])
        return steps

    def padded_tokens(self, step: list[int]) -> int:
        """Tokens of one rank's padded batch of this step (at most: the step's longest length per sample)."""
        return math.ceil(len(step) / self.num_replicas) * max(self.lengths[i] for i in step)

    def remaining(self) -> list[list[int]]:
        """The steps of this epoch not yet consumed (all of the next epoch's when this one is finished)."""
        if self.position >= self.total_size:
            self.position = 0
        steps, consumed = self.steps(), 0
        for number, step in enumerate(steps):
            if consumed >= self.position:
                return steps[number:]
            consumed += len(step)
        return []

    def __iter__(self) -> Iterator[list[int]]:
        return iter([step[self.rank::self.num_replicas] for step in self.remaining()])

    def __len__(self) -> int:
        return len(self.steps())

    def mean_batch(self) -> float:
        """This epoch's mean samples per rank per step (the denominator of `loss_scale`)."""
        return self.total_size / self.num_replicas / max(len(self.steps()), 1)


class Batches(Dataset):
    """The samples, indexed also by lists: item [i, j, ...] is the list of those samples (what a loader over whole
    batches of indices collates); item i is sample i, so code that reads a loader's dataset in order still can."""

    def __init__(self, samples: Sequence[Any]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, indices: int | list[int]) -> Any:
        if isinstance(indices, list):
            return [self.samples[index] for index in indices]
        return self.samples[indices]


class ResumableDataLoader(DataLoader):
    """A DataLoader over a `ResumableSampler` whose `state_dict` is the batch to resume from (Lightning saves it).

    Each batch advances the sampler by `batch_size * num_replicas` samples (a `LengthGroupedSampler`'s step: its
    size) as it is handed out, so prefetching workers do not move the resume point. The loader gets its own
    `torch.Generator` (seeded with the sampler's seed), so starting an iteration never draws from the global random
    state a checkpoint carries (`litforge.resume`). Over a `LengthGroupedSampler` the loader takes whole batches of
    indices from it (`batch_size` None) and, with a token budget, adds `loss_scale` to each dict batch.

    Args:
        dataset: the samples.
        sampler: the order; its `num_replicas` and `rank` are the loader's shard.
        **kwargs: any other `DataLoader` argument (batch_size, collate_fn, num_workers, ...).
    """

    def __init__(self, dataset, sampler: ResumableSampler, **kwargs: Any):
        kwargs.setdefault("generator", torch.Generator().manual_seed(sampler.seed))
        if isinstance(sampler, LengthGroupedSampler):  # the sampler yields whole batches of indices
            dataset, kwargs["batch_size"] = Batches(dataset), None
        super().__init__(dataset, sampler=sampler, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        if isinstance(self.sampler, LengthGroupedSampler):
            steps = [len(step) for step in self.sampler.remaining()]
            mean_batch = self.sampler.mean_batch()
        else:
            steps = itertools.repeat(self.batch_size * self.sampler.num_replicas)
        for batch, samples in zip(super().__iter__(), steps):
            self.sampler.advance(samples)
            if isinstance(self.sampler, LengthGroupedSampler) and self.sampler.max_tokens and isinstance(batch, dict):
                batch["loss_scale"] = samples / self.sampler.num_replicas / mean_batch
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
