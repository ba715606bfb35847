"""The resumable sampler and loader: DistributedSampler's order and shards, and a state that resumes at any batch;
the length-grouped sampler: similar lengths per batch, token budgets, the same steps on every rank."""

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from litforge.errors import ConfigError
from litforge.sampling import LengthGroupedSampler, ResumableDataLoader, ResumableSampler, padding_rows


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
    assert sorted(flat(shards)) == list(range(12))
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
    assert set(flat(rest)) == set(order[4:])


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


LENGTHS = torch.randint(1, 1000, (203,), generator=torch.Generator().manual_seed(0)).tolist()


SAMPLES = [{"index": index, "length": length} for index, length in enumerate(LENGTHS)]


def collate(rows):
    return {"index": [row["index"] for row in rows], "length": [row["length"] for row in rows]}


def flat(lists):
    return [item for items in lists for item in items]


def grouped(batch_size=4, num_workers=0, **options):
    sampler = LengthGroupedSampler(LENGTHS, batch_size, **({"group_size": 5, "seed": 7} | options))
    return ResumableDataLoader(SAMPLES, sampler, num_workers=num_workers, collate_fn=collate)


def padded_tokens(batches):
    return sum(len(batch["length"]) * max(batch["length"]) for batch in batches)


def test_grouped_batches_hold_neighbours_in_length_and_cost_far_less_padding():
    batches = list(grouped())
    assert sorted(flat(batch["index"] for batch in batches)) == list(range(len(LENGTHS)))  # each once
    assert sorted(len(batch["index"]) for batch in batches) == [3] + [4] * 50  # 203 = 50 x 4 + the last 3
    shuffled = list(ResumableDataLoader(SAMPLES, ResumableSampler(SAMPLES, seed=7), batch_size=4, collate_fn=collate))
    assert padded_tokens(batches) < 0.7 * padded_tokens(shuffled)
    assert padded_tokens(batches) < 1.2 * sum(LENGTHS)  # sorted in mega-batches of 20: under 20% padding left


def test_one_mega_batch_is_cut_in_sorted_order_and_the_longest_step_comes_first():
    lengths = [5, 1, 9, 3, 4, 7, 2, 8]  # sorted longest first: 2 7 5 0 4 3 6 1
    sampler = LengthGroupedSampler(lengths, batch_size=2, group_size=4, seed=3)
    steps = sampler.steps()
    assert sorted(steps) == sorted([[2, 7], [5, 0], [4, 3], [6, 1]])
    assert steps[0] == [2, 7]
    unshuffled = LengthGroupedSampler(lengths, batch_size=2, group_size=2, shuffle=False)
    assert unshuffled.steps() == [[2, 0], [3, 1], [7, 5], [4, 6]]  # mega-batches [0..3] and [4..7], each sorted


def test_the_order_is_seeded_by_seed_and_epoch():
    first, again, other = (LengthGroupedSampler(LENGTHS, 4, seed=seed) for seed in (1, 1, 2))
    assert first.steps() == again.steps() != other.steps()
    again.set_epoch(1)
    assert again.steps() != first.steps()
    assert sorted(flat(again.steps())) == list(range(len(LENGTHS)))


@pytest.mark.parametrize("num_workers", [0, 1])
@pytest.mark.parametrize("max_tokens", [None, 2000])
@pytest.mark.parametrize("stop", [1, 7])
def test_a_grouped_loader_resumes_with_the_next_step(stop, max_tokens, num_workers):
    straight = grouped(max_tokens=max_tokens, num_workers=num_workers)
    expected = epoch_batches(straight, 0) + epoch_batches(straight, 1)
    first = grouped(max_tokens=max_tokens, num_workers=num_workers)
    seen = []
    for batch in first:
        seen.append(batch)
        if len(seen) == stop:
            break
    resumed = grouped(max_tokens=max_tokens, num_workers=num_workers)
    resumed.load_state_dict(first.state_dict())
    assert resumed.state_dict()["position"] == sum(len(batch["index"]) for batch in seen)
    resumed.sampler.set_epoch(0)
    assert seen + list(resumed) + epoch_batches(resumed, 1) == expected


@pytest.mark.parametrize("max_tokens", [None, 2500])
def test_ranks_take_disjoint_equal_shares_of_every_step(max_tokens):
    world, size = 3, 203  # 203 samples padded to 204 on 3 ranks
    ranks = [list(grouped(rank=rank, num_replicas=world, max_tokens=max_tokens)) for rank in range(world)]
    steps = LengthGroupedSampler(LENGTHS, 4, group_size=5, seed=7, num_replicas=world, max_tokens=max_tokens).steps()
    assert {len(batches) for batches in ranks} == {len(steps)}
    for number, step in enumerate(steps):
        shards = [batches[number]["index"] for batches in ranks]
        assert len({len(shard) for shard in shards}) == 1  # every rank holds as many samples
        assert sorted(flat(shards)) == sorted(step)
    served = flat(batch["index"] for batches in ranks for batch in batches)
    assert len(served) == 204 and set(served) == set(range(size))  # each once, and one repeat pads the epoch
    if max_tokens is None:
        assert {len(batch["index"]) for batches in ranks for batch in batches} == {4}  # 204 = 17 steps of 3 x 4


def test_token_budget_batches_stay_under_the_budget_and_are_weighed_to_the_mean_over_samples():
    budget = 3000
    batches = list(grouped(max_tokens=budget))
    assert all(len(batch["length"]) * max(batch["length"]) <= budget for batch in batches)
    sizes = [len(batch["index"]) for batch in batches]
    assert len(set(sizes)) > 3  # short samples come many to a batch
    mean_batch = len(LENGTHS) / len(batches)
    assert [batch["loss_scale"] for batch in batches] == pytest.approx([size / mean_batch for size in sizes])
    # a per-sample loss v_i averaged per batch and scaled: the epoch's sum is sum_i v_i / mean batch, as with
    # fixed batches of the mean size, whatever the grouping
    values = torch.tensor(LENGTHS, dtype=torch.float64).sqrt()
    objective = sum(values[batch["index"]].mean() * batch["loss_scale"] for batch in batches)
    assert objective.item() == pytest.approx(values.sum().item() / mean_batch)


def test_a_budget_below_the_longest_sample_is_a_config_error():
    with pytest.raises(ConfigError, match="^max_tokens: 998 is below the longest sample \\(999 tokens\\)"):
        LengthGroupedSampler([3, 999, 5], batch_size=2, max_tokens=998)


def test_grouped_iteration_never_draws_from_the_global_random_state():
    before = torch.get_rng_state()
    list(grouped(num_workers=1))
    assert torch.equal(torch.get_rng_state(), before)


def test_a_grouped_loaders_dataset_still_reads_as_the_samples_in_order():
    dataset = grouped().dataset  # what e.g. a precomputed reference reads, in order, with a loader of its own
    assert len(dataset) == len(SAMPLES) and dataset[5] == SAMPLES[5] and list(dataset) == SAMPLES
    batches = list(DataLoader(dataset, batch_size=100, collate_fn=collate))
    assert flat(batch["index"] for batch in batches) == list(range(len(SAMPLES)))
