"""DPONLL: DPO + NLL (alpha = 0 is DPO); its settings, its loss at the reference, training, and its configs."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from litforge.lightning_modules import DPONLL
from preference_helpers import fit, make

from litforge.cli import run_lightning
from helpers import REPO, assert_config_error

BAD = [
    (DPONLL, {"beta": -1}, "beta: must be > 0, got -1"),
    (DPONLL, {"beta": 0}, "beta: must be > 0, got 0"),
    (DPONLL, {"alpha": -0.5}, "alpha: must be >= 0, got -0.5"),
]


@pytest.mark.parametrize("cls, kwargs, message", BAD, ids=[next(iter(k)) for _, k, _ in BAD])
def test_bad_hyperparameter_is_a_config_error_naming_the_field(cls, kwargs, message):
    assert_config_error(cls, kwargs, message)


def test_boundary_values_are_accepted():
    DPONLL(beta=0.1, alpha=0)


def test_dpo_with_policy_equal_to_reference_gives_log_2(tiny_backbone):
    module, data = make(backbone=tiny_backbone, alpha=0.0)
    batch = data.collate(data.splits["train"][:4])
    pair = module.pair_logprobs(module.model, batch)
    ref_chosen, ref_rejected = module.reference.logprobs(module, batch, "train")
    loss = module.loss(pair.chosen, pair.rejected, ref_chosen, ref_rejected, pair)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-5)


@pytest.mark.slow
def test_training_raises_chosen_over_rejected(tiny_backbone, tmp_path):
    module, data = make(DPONLL, backbone=tiny_backbone, optimizer=partial(torch.optim.AdamW, lr=1e-2))
    trainer = fit(module, data, tmp_path, max_epochs=6, limit_val_batches=1, num_sanity_val_steps=0)
    metrics = trainer.callback_metrics
    assert metrics["train/reward_accuracy_epoch"] > 0.6 and metrics["train/margin_epoch"] > 0
    assert metrics["val/nll"] < 4.0  # from ~5.6 (uniform over 259 bytes)
    assert module.reference_model is not None


@pytest.mark.parametrize("config", sorted(str(p.relative_to(REPO)) for p in
                                          REPO.glob("configs/dpo_nll/*.yaml")))
def test_configs_parse(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_lightning(["fit", "--config", str(REPO / config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out

