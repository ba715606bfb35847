"""LMDataModule's loaders: training resumable and sharded in a fit, plain and in order in Lightning's overfit mode,
grouped by length or by a token budget on request; evaluation sets at least as large as the processes sharing them."""

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from litforge.datamodules import SFTDataModule
from litforge.datamodules.base import LMDataModule
from litforge.datamodules.text import SyntheticTextDataModule
from litforge.lightning_modules.causal_lm import CausalLM
from torch.utils.data import SequentialSampler

from litforge.data import write_jsonl
from litforge.errors import ConfigError
from litforge.sampling import LengthGroupedSampler, ResumableDataLoader


def fit(tiny_backbone, **trainer):
    data = SyntheticTextDataModule(num_train=16, num_val=4, max_length=32, batch_size=4)
    run = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **trainer)
    run.fit(CausalLM(backbone=tiny_backbone), data)
    return run


def test_a_fit_trains_from_the_resumable_loader(tiny_backbone):
    run = fit(tiny_backbone)
    assert isinstance(run.train_dataloader, ResumableDataLoader)
    assert run.train_dataloader.state_dict() == {"epoch": 0, "position": 8}  # 2 batches of 4 handed out


def test_overfit_batches_trains_on_the_first_batches_in_order(tiny_backbone):
    run = fit(tiny_backbone, overfit_batches=1)
    assert run.global_step == 2
    assert not isinstance(run.train_dataloader, ResumableDataLoader)
    assert isinstance(run.train_dataloader.sampler, SequentialSampler)


class Sharded:
    """What a datamodule reads of a trainer of `ranks` data-parallel processes."""

    def __init__(self, ranks):
        self.distributed_sampler_kwargs = {"num_replicas": ranks, "rank": 0}


def test_an_evaluation_set_smaller_than_the_processes_is_refused():
    data = SyntheticTextDataModule(num_train=8, num_val=1, max_length=32, batch_size=2)
    data.setup("fit")
    size = len(data.splits["val"])
    data.trainer = Sharded(size)
    assert len(data.val_dataloader().dataset) == size  # one sample per process: fine
    data.trainer = Sharded(size + 1)
    with pytest.raises(ConfigError, match=f"^data: the val set 'val' has {size} samples, fewer than the {size + 1} "
                                          "processes that share it$"):
        data.val_dataloader()


LENGTHS = [3, 17, 5, 30, 9, 2, 21, 12, 7, 25, 4, 14, 6, 28, 10, 19]


class OfLengths(LMDataModule):
    """Training documents of the lengths in LENGTHS (token 5 repeated), two validation documents."""

    def load(self, split):
        lengths = LENGTHS if split == "train" else [4, 8]
        return [{"input_ids": [5] * length, "labels": [5] * length} for length in lengths]


def grouped_loader(trainer=None, **options):
    data = OfLengths(max_length=32, batch_size=4, seed=3, **options)
    data.setup("fit")
    data.trainer = trainer
    return data.train_dataloader()


def test_group_by_length_batches_the_training_samples_by_their_lengths():
    loader = grouped_loader(group_by_length=True)
    assert isinstance(loader.sampler, LengthGroupedSampler) and loader.sampler.lengths == LENGTHS
    batches = list(loader)
    widths = sorted(batch["input_ids"].size(1) for batch in batches)
    assert widths == [5, 10, 19, 30]  # one mega-batch sorted: [30 28 25 21] [19 17 14 12] [10 9 7 6] [5 4 3 2]
    assert sorted(batch["attention_mask"].sum().item() for batch in batches) == [14, 32, 62, 104]
    assert "loss_scale" not in batches[0]
    assert len(list(grouped_loader())) == 4 and not isinstance(grouped_loader().sampler, LengthGroupedSampler)


def test_max_tokens_batches_fit_the_budget_and_carry_their_loss_scale():
    loader = grouped_loader(max_tokens=40)  # implies grouping
    batches = list(loader)
    assert all(batch["input_ids"].numel() <= 40 for batch in batches)
    # longest first, k = 40 // longest per batch: [30] [28] [25] [21] [19 17] [14 12] [10 9 7 6] [5 4 3 2]
    assert sorted(batch["input_ids"].size(0) for batch in batches) == [1, 1, 1, 1, 2, 2, 4, 4]
    mean_batch = len(LENGTHS) / len(batches)
    assert sorted(batch["loss_scale"] for batch in batches) == pytest.approx(
        sorted(batch["input_ids"].size(0) / mean_batch for batch in batches))


class Run:
    """What a datamodule reads of a trainer: data-parallel shard, epochs, reloading, the current epoch."""

    def __init__(self, ranks=1, rank=0, max_epochs=1, max_steps=-1, reload=0, current_epoch=0):
        self.distributed_sampler_kwargs = {"num_replicas": ranks, "rank": rank}
        self.max_epochs, self.max_steps, self.accumulate_grad_batches = max_epochs, max_steps, 1
        self.reload_dataloaders_every_n_epochs, self.current_epoch = reload, current_epoch
        self.overfit_batches = 0


def test_grouped_batches_are_sharded_by_step_and_start_at_the_trainers_epoch():
    shards = [list(grouped_loader(Run(ranks=2, rank=rank, current_epoch=1), group_by_length=True)) for rank in (0, 1)]
    assert [len(batches) for batches in shards] == [2, 2]  # 16 samples, 2 steps of 2 x 4
    for first, second in zip(*shards):
        assert first["input_ids"].shape[0] == second["input_ids"].shape[0] == 4
    assert grouped_loader(Run(current_epoch=1), group_by_length=True).sampler.epoch == 1


def test_max_tokens_over_several_epochs_needs_reloaded_loaders():
    for several in (Run(max_epochs=2), Run(max_epochs=-1, max_steps=9)):  # 8 batches in an epoch (see above)
        with pytest.raises(ConfigError, match="^max_tokens: token-budget epochs differ in batch count"):
            grouped_loader(several, max_tokens=40)
    for one in (Run(max_epochs=2, reload=1), Run(max_epochs=1), Run(max_epochs=-1, max_steps=8)):
        assert grouped_loader(one, max_tokens=40).sampler.max_tokens == 40


def test_a_streamed_split_cannot_be_grouped_by_length(tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "2+2=", "response": "4"}, {"prompt": "hi", "response": "yo"}])
    data = SFTDataModule(train_path=str(tmp_path / "qa.jsonl"), streaming=True, max_tokens=64,
                         cache_dir=str(tmp_path / "cache"))
    data.setup("fit")
    with pytest.raises(ConfigError, match="^group_by_length: a streamed split's lengths are unknown"):
        data.train_dataloader()


@pytest.mark.slow  # a real fit: Lightning takes the loader of whole batches and counts its steps
def test_a_fit_trains_on_length_grouped_batches(tiny_backbone):
    data = OfLengths(max_length=32, batch_size=4, group_by_length=True)
    run = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    run.fit(CausalLM(backbone=tiny_backbone), data)
    assert isinstance(run.train_dataloader.sampler, LengthGroupedSampler)
    assert run.num_training_batches == 4
    assert run.train_dataloader.state_dict() == {"epoch": 0, "position": 12}


class Lengths(L.Callback):
    """Records each training batch's sample lengths (the OfLengths samples differ only in length)."""

    def __init__(self):
        self.batches = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batches.append(sorted(batch["attention_mask"].sum(1).tolist()))


def grouped_fit(backbone, max_steps, callbacks=(), **fit):
    seen = Lengths()
    run = L.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                    callbacks=[seen, *callbacks])
    run.fit(CausalLM(backbone=backbone), OfLengths(max_length=32, batch_size=4, group_by_length=True), **fit)
    return seen.batches


@pytest.mark.slow  # two real fits
def test_a_checkpoint_taken_mid_epoch_resumes_with_the_next_grouped_batch(tiny_backbone, tmp_path):
    every_two = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, filename="{step}")
    expected = grouped_fit(tiny_backbone, max_steps=6, callbacks=[every_two])  # an epoch of 4 batches, 2 of the next
    assert grouped_fit(tiny_backbone, max_steps=6, ckpt_path=str(tmp_path / "step=2.ckpt")) == expected[2:]
    assert grouped_fit(tiny_backbone, max_steps=6, ckpt_path=str(tmp_path / "step=4.ckpt")) == expected[4:]
