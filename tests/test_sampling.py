"""The resumable sampler and loader: DistributedSampler's order and shards, and a state that resumes at any batch."""

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from litforge.sampling import ResumableDataLoader, ResumableSampler, padding_rows


def loader(size, batch_size=3, num_workers=0, **shard):
    data = list(range(size))
    return ResumableDataLoader(data, ResumableSampler(data, seed=7, **shard), batch_size=batch_size,
                               num_workers=num_workers, collate_fn=list)


def epoch_batches(dataloader, epoch):
    dataloader.sampler.set_epoch(epoch)
    return list(dataloader)


@pytest.mark.parametrize("size, world, drop_last", [(10, 1, False), (10, 3, False), (10, 3, True), (2, 4, False)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_each_rank_gets_what_distributed_sampler_gives_it(size, world, drop_last, shuffle):
    for rank in range(world):
        for epoch in (0, 1):
            ours = ResumableSampler(range(size), world, rank, shuffle=shuffle, seed=3, drop_last=drop_last)
            theirs = DistributedSampler(range(size), world, rank, shuffle=shuffle, seed=3, drop_last=drop_last)
            ours.set_epoch(epoch), theirs.set_epoch(epoch)
            assert list(ours) == list(theirs)
            assert len(ours) == len(theirs)


def test_ranks_split_an_epoch_into_equal_disjoint_shards():
    shards = [list(ResumableSampler(range(12), 3, rank, seed=1)) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(12))
    assert {len(shard) for shard in shards} == {4}


@pytest.mark.parametrize("num_workers", [0, 1])
@pytest.mark.parametrize("stop", [1, 3, 4])  # mid-epoch, after the last (partial) batch's predecessor, at the end
def test_a_new_loader_resumes_with_the_next_batch(stop, num_workers):
    straight = loader(11, num_workers=num_workers)
    expected = epoch_batches(straight, 0) + epoch_batches(straight, 1)

    first = loader(11, num_workers=num_workers)
    seen = []
    for batch in first:
        seen.append(batch)
        if len(seen) == stop:
            break
    state = first.state_dict()
    resumed = loader(11, num_workers=num_workers)
    resumed.load_state_dict(state)
    if stop == len(first):  # the epoch was finished: the state points at the start of the next one
        assert state == {"epoch": 0, "position": 11}
        assert resumed.sampler.epoch == 1
        rest = epoch_batches(resumed, 1)
    else:
        resumed.sampler.set_epoch(0)  # Lightning sets the restored epoch again before iterating
        rest = list(resumed) + epoch_batches(resumed, 1)
    assert seen + rest == expected


def test_the_state_counts_batches_handed_out_not_prefetched():
    dataloader = loader(20, batch_size=2, num_workers=2)
    iterator = iter(dataloader)
    next(iterator), next(iterator)
    assert dataloader.state_dict() == {"epoch": 0, "position": 4}


def test_ranks_resume_together():
    world = 2
    straight = [loader(13, rank=rank, num_replicas=world) for rank in range(world)]
    expected = [list(ranked) for ranked in straight]
    states = []
    for ranked in (loader(13, rank=rank, num_replicas=world) for rank in range(world)):
        iterator = iter(ranked)
        next(iterator)
        states.append(ranked.state_dict())
    assert states[0] == states[1] == {"epoch": 0, "position": 6}  # 1 batch of 3 on each of 2 ranks
    for rank in range(world):
        resumed = loader(13, rank=rank, num_replicas=world)
        resumed.load_state_dict(states[0])  # Lightning restores every rank from rank 0's checkpoint
        assert list(resumed) == expected[rank][1:]


def test_resuming_on_another_number_of_ranks_serves_each_remaining_sample_once_in_equal_shares():
    sampler = ResumableSampler(range(12), 2, 0, seed=5)
    order = sampler.order()
    sampler.advance(4)  # two steps of one sample on each of two ranks
    rest = []
    for rank in range(3):
        resumed = ResumableSampler(range(12), 3, rank, seed=5)
        resumed.load_state_dict(sampler.state_dict())
        rest.append(list(resumed))
    assert {len(shard) for shard in rest} == {3}  # 8 left, padded to 9 so every rank runs the same steps
    assert set(sum(rest, [])) == set(order[4:])


def test_a_new_epoch_starts_at_its_first_sample():
    dataloader = loader(9)
    iterator = iter(dataloader)
    next(iterator)
    dataloader.sampler.set_epoch(1)
    assert dataloader.state_dict() == {"epoch": 1, "position": 0}
    assert len(list(dataloader)) == 3


def test_iterating_never_draws_from_the_global_random_state():
    before = torch.get_rng_state()
    list(loader(10, num_workers=1))
    assert torch.equal(torch.get_rng_state(), before)


def test_padding_rows_marks_exactly_the_repeats_a_distributed_sampler_adds():
    # 7 samples on 2 ranks: positions 0..7, position 7 repeats sample 0 and is rank 1's 4th, batch 1's 2nd row
    data = list(range(7))
    for rank, expected in [(0, [[False, False], [False, False]]), (1, [[False, False], [False, True]])]:
        sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=False)
        evaluation = DataLoader(data, batch_size=2, sampler=sampler, collate_fn=list)
        batches = list(evaluation)
        assert [padding_rows(evaluation, index, len(batch)) for index, batch in enumerate(batches)] == expected
    assert batches[1] == [5, 0]  # the marked row is indeed sample 0 again
    for shuffle in (False, True):  # left out, the repeats leave every sample exactly once
        kept = []
        for rank in (0, 1):
            sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=shuffle, seed=3)
            evaluation = DataLoader(data, batch_size=3, sampler=sampler, collate_fn=list)
            for index, batch in enumerate(evaluation):
                kept += [sample for sample, pad in zip(batch, padding_rows(evaluation, index, len(batch))) if not pad]
        assert sorted(kept) == data


def test_no_padding_without_a_padding_distributed_sampler():
    data = list(range(7))
    assert padding_rows(DataLoader(data, batch_size=4), 1, 3) == [False] * 3
    dropping = DistributedSampler(data, num_replicas=2, rank=1, shuffle=False, drop_last=True)
    assert padding_rows(DataLoader(data, batch_size=2, sampler=dropping), 1, 1) == [False]
    assert padding_rows(loader(7, batch_size=2, num_replicas=2, rank=1), 1, 2) == [False, False]  # training order
