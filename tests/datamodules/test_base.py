"""LMDataModule's loaders: training resumable and sharded in a fit, plain and in order in Lightning's overfit mode;
evaluation sets at least as large as the processes sharing them."""

import lightning as L
import pytest
from torch.utils.data import SequentialSampler

from litforge.datamodules.text import SyntheticTextDataModule
from litforge.errors import ConfigError
from litforge.lightning_modules.causal_lm import CausalLM
from litforge.sampling import ResumableDataLoader


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
