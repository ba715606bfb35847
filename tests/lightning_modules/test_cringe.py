"""PairwiseCringe: its settings, training without a reference, and its configs."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from litforge.lightning_modules import PairwiseCringe
from preference_helpers import fit, make

from litforge.cli import run_lightning
from helpers import REPO, assert_config_error

BAD = [
    (PairwiseCringe, {"alpha": -1}, "alpha: must be >= 0, got -1"),
    (PairwiseCringe, {"b": -2}, r"b: must be >= 0 \(a margin in nats\), got -2"),
    (PairwiseCringe, {"tau": 0}, "tau: must be > 0, got 0"),
    (PairwiseCringe, {"k": 0}, "k: must be >= 1, got 0"),
]


@pytest.mark.parametrize("cls, kwargs, message", BAD, ids=[next(iter(k)) for _, k, _ in BAD])
def test_bad_hyperparameter_is_a_config_error_naming_the_field(cls, kwargs, message):
    assert_config_error(cls, kwargs, message)


def test_a_pairs_sampled_positives_do_not_depend_on_its_batch(tiny_backbone):
    # 2 ranks x 2 pairs compute what 1 process computes on the 4 pairs: the loss is the mean of the halves' losses
    from litforge.lightning_modules.preference import select_pairs

    module, data = make(PairwiseCringe, backbone=tiny_backbone, k=3)
    batch = next(iter(data.val_dataloader()))
    batch = select_pairs(batch, torch.arange(4), len(batch["index"]))
    whole = module.step(batch, "train", "train", record=False)
    halves = [module.step(select_pairs(batch, torch.tensor(rows), 4), "train", "train", record=False)
              for rows in ([0, 1], [2, 3])]
    assert torch.allclose(whole, sum(halves) / 2, atol=1e-6)
    module.cringe_seed = 1
    assert not torch.allclose(module.step(batch, "train", "train", record=False), whole)  # the seed matters


def test_boundary_values_are_accepted():
    PairwiseCringe(b=0, k=1)


@pytest.mark.slow
def test_training_raises_chosen_over_rejected(tiny_backbone, tmp_path):
    module, data = make(PairwiseCringe, backbone=tiny_backbone, optimizer=partial(torch.optim.AdamW, lr=1e-2))
    trainer = fit(module, data, tmp_path, max_epochs=6, limit_val_batches=1, num_sanity_val_steps=0)
    metrics = trainer.callback_metrics
    assert metrics["train/reward_accuracy_epoch"] > 0.6 and metrics["train/margin_epoch"] > 0
    assert metrics["val/nll"] < 4.0  # from ~5.6 (uniform over 259 bytes)
    assert module.reference_model is None  # Cringe uses no reference


@pytest.mark.parametrize("config", sorted(str(p.relative_to(REPO)) for p in
                                          REPO.glob("configs/cringe/*.yaml")))
def test_configs_parse(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_lightning(["fit", "--config", str(REPO / config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out

