"""ToolInference end to end through the CLI: the shipped configs at a tiny length (fit, export, validate on the seen
and unseen sets and on the ToolSelect-shaped example), every metric logged per set."""

from __future__ import annotations

import csv

import pytest
from helpers import REPO, run_litforge

CONFIGS = REPO / "configs" / "toolverifier"
TINY = ["--trainer.max_steps=3", "--data.init_args.num_train=48", "--data.init_args.batch_size=8",
        "--model.init_args.backbone.init_args.hidden_size=32", "--model.init_args.backbone.init_args.intermediate_size=64",
        "--trainer.enable_progress_bar=false"]
METRICS = ("accuracy", "top2_recall", "tokens_per_item", "unparsable", "parameter_accuracy", "parameter_tokens")


@pytest.mark.slow
def test_sft_export_and_validate_log_every_metric_per_set(tmp_path):
    run_litforge(["fit", "--config", str(CONFIGS / "sft.yaml"), *TINY], cwd=tmp_path)
    run_litforge(["export", "runs/toolverifier/sft/checkpoints/last.ckpt", "runs/toolverifier/sft/hf"], cwd=tmp_path)
    small = ["--data.init_args.num_seen=3", "--data.init_args.num_unseen=2", "--model.init_args.max_new_tokens=4",
             "--model.init_args.parameter_program.init_args.samples=2", "--trainer.enable_progress_bar=false"]
    run_litforge(["validate", "--config", str(CONFIGS / "verify.yaml"), *small, "--trainer.logger=CSVLogger",
                  "--trainer.logger.init_args.save_dir=logs", "--trainer.logger.init_args.name=verify"], cwd=tmp_path)
    with (tmp_path / "logs/verify/version_0/metrics.csv").open() as handle:
        [logged] = list(csv.DictReader(handle))
    assert {f"val_{split}/{metric}" for split in ("seen", "unseen") for metric in METRICS} <= set(logged)
    assert 0 <= float(logged["val_unseen/top2_recall"]) <= 1 and float(logged["val_seen/tokens_per_item"]) > 0
    control = run_litforge(["validate", "--config", str(CONFIGS / "verify.yaml"), *small,
                            "--model.init_args.program=DirectSelection"], cwd=tmp_path).stdout
    assert "val_unseen/accuracy" in control and "top2_recall" not in control  # direct selection ranks nothing
    example = ["--data.init_args.path", str(CONFIGS / "toolselect_example.csv"), "--model.init_args.max_new_tokens=4",
               "--trainer.enable_progress_bar=false"]
    selected = run_litforge(["validate", "--config", str(CONFIGS / "toolselect.yaml"), *example], cwd=tmp_path).stdout
    assert "val/accuracy" in selected and "val/top2_recall" in selected
