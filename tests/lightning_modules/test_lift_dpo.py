"""LIFT-DPO: validation on length-instructed prompts (violation rate, words/limit, win rate) and the configs."""

from __future__ import annotations

import glob
from pathlib import Path

import lightning as L
import pytest
import torch
from litforge.datamodules import LengthBiasedPreferenceDataModule, LengthInstructedDataModule
from litforge.lightning_modules.lift_dpo import LiftDPO
from litforge.plugins.judges.length import LengthJudge

from litforge.cli import run_lightning
from litforge.generation import generate
from litforge.length import count_words
from helpers import assert_config_error

TINY = ["--model.init_args.backbone.class_path=litforge.backbones.TinyModel",
        "--model.init_args.backbone.init_args.hidden_size=32",
        "--model.init_args.backbone.init_args.num_hidden_layers=2",
        "--model.init_args.backbone.init_args.num_attention_heads=2",
        "--model.init_args.backbone.init_args.intermediate_size=64"]


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, **kwargs)


def test_validation_reports_what_the_generations_show(tiny_backbone):
    source = LengthBiasedPreferenceDataModule(num_train=8, num_val=4, num_length_prompts=6)
    data = LengthInstructedDataModule(source=source, batch_size=4, val_batch_size=3)
    module = LiftDPO(backbone=tiny_backbone, max_new_tokens=12, judge=LengthJudge())
    metrics = quiet_trainer().validate(module, datamodule=data, verbose=False)
    prompts = data.splits["val"]["length"]
    texts = [t[0] for t in generate(module.model, module.tokenizer, [p["prompt"] for p in prompts],
                                    max_new_tokens=12, temperature=0).texts]
    words = torch.tensor([count_words(t) for t in texts], dtype=torch.float)
    limits = torch.tensor([p["max_len"] for p in prompts], dtype=torch.float)
    logged = {key: value for result in metrics for key, value in result.items()}
    assert logged["val_length/violation_rate"] == pytest.approx((words > limits).float().mean().item())
    assert logged["val_length/words_per_limit"] == pytest.approx((words / limits).mean().item(), rel=1e-5)
    # the length judge passes exactly the responses within their limit; a violation is a loss anyway
    assert logged["val_length/li_win_rate"] == pytest.approx(1 - logged["val_length/violation_rate"])


def test_a_validate_then_a_fit_starts_each_validation_from_fresh_metrics(tiny_backbone):
    source = LengthBiasedPreferenceDataModule(num_train=8, num_val=4, num_length_prompts=3)
    data = LengthInstructedDataModule(source=source, batch_size=4, val_batch_size=3)
    module = LiftDPO(backbone=tiny_backbone, max_new_tokens=4)
    first = quiet_trainer().validate(module, datamodule=data, verbose=False)
    assert quiet_trainer().validate(module, datamodule=data, verbose=False) == first  # not accumulated
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1)
    trainer.fit(module, datamodule=data)  # its validation updates metrics that a validate has reset before
    assert {"val/reward_accuracy", "val_length/violation_rate", "val_length/words"} <= set(trainer.callback_metrics)


def test_the_judge_s_counters_travel_in_the_checkpoint(tiny_backbone):
    module = LiftDPO(backbone=tiny_backbone, judge=LengthJudge())
    module.configure_model()
    module.judge.score(["no instruction here"], ["a response"])  # no limit: no verdict, one failure
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["judges"] == {"judge": {"failures": 1}}
    resumed = LiftDPO(backbone=tiny_backbone, judge=LengthJudge())
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.judge.failures == 1


@pytest.mark.parametrize("path", sorted(glob.glob("configs/lift_dpo/*.yaml")))
def test_configs_parse(path, capsys):
    command = "validate" if "validate" in path else "fit"
    with pytest.raises(SystemExit) as exit_:
        run_lightning([command, "--config", path, "--print_config"])
    assert exit_.value.code == 0
    assert "class_path" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_fit_and_validate_end_to_end(tmp_path, monkeypatch):
    configs = Path("configs/lift_dpo").resolve()
    monkeypatch.chdir(tmp_path)  # the configs write under runs/
    run_lightning(["fit", "--config", str(configs / "lift_dpo.yaml"), *TINY, "--trainer.max_steps=2",
                   "--trainer.val_check_interval=2", "--trainer.log_every_n_steps=1",
                   "--trainer.enable_progress_bar=false",
                   "--data.init_args.source.init_args.num_train=8", "--data.init_args.source.init_args.num_val=4",
                   "--data.init_args.source.init_args.num_length_prompts=4", "--data.init_args.batch_size=4",
                   "--model.init_args.max_new_tokens=8"])
    metrics = (tmp_path / "runs/lift_dpo/lift/csv/version_0/metrics.csv").read_text()
    assert "val_length/violation_rate" in metrics and "train/loss" in metrics
    cli = run_lightning(["validate", "--config", str(configs / "validate_li.yaml"), *TINY,
                         f"--data.init_args.length_prompts_path={configs / 'li_example.jsonl'}",
                         "--model.init_args.max_new_tokens=8", "--model.init_args.judge=LengthJudge"])
    logged = cli.trainer.callback_metrics
    # every baseline in the example file is within its limit, so the length judge ties a response within its
    # limit (0.5) and a violation loses (0)
    within = 1 - float(logged["val_length/violation_rate"])
    assert float(logged["val_length/li_win_rate"]) == pytest.approx(0.5 * within)


@pytest.mark.parametrize("kwargs, message", [({"max_new_tokens": 0}, "max_new_tokens: must be >= 1, got 0"),
                                             ({"beta": -1}, "beta: must be > 0, got -1")])  # beta: from DPONLL
def test_bad_hyperparameter_is_a_config_error_naming_the_field(kwargs, message):
    assert_config_error(LiftDPO, kwargs, message)
