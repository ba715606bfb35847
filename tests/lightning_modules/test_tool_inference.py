"""ToolInference: rows with top-2 recall and parameters filled for the gold tool (on a bigram Llama), and end to end
through the CLI: the shipped configs at a tiny length (fit, export, validate on the seen and unseen sets and on the
ToolSelect-shaped example), every metric logged per set."""

from __future__ import annotations

import csv

import pytest
from helpers import REPO, run_litforge
from litforge.lightning_modules.tool_inference import ToolInference
from litforge.plugins.tools import ParameterVerification, ToolVerifier
from tool_helpers import bigram_llama, weather_tools

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


def test_rows_carry_top2_recall_and_parameters_are_filled_for_the_gold_tool(tokenizer):
    # the model's likeliest names: " ab" > " cd" > " ef"; every reply (and every filling) is " ab"
    table = {":": {" ": 5.0}, "=": {" ": 5.0}, " ": {"a": 3.0, "c": 2.0, "e": 1.0}, "a": {"b": 5.0}}
    tools = {tool.name: tool for tool in weather_tools()}
    module = ToolInference(program=ToolVerifier(), max_new_tokens=8,
                           parameter_program=ParameterVerification(samples=1, fill_temperature=0.0))
    module.model = bigram_llama(tokenizer, table)
    items = [{"question": "q1", "candidates": [tools[n] for n in ("ef", "cd", "ab")], "label": "ef",
              "arguments": {"city": "ab"}},
             {"question": "q2", "candidates": [tools[n] for n in ("gh", "cd", "ab")], "label": "cd",
              "arguments": {"country": "Oslo"}}]
    rows = module.answer(items, batch_idx=0)
    assert [(r["answer"], r["correct"], r["top2_recall"]) for r in rows] == [("ab", False, False), ("ab", False, True)]
    filled = module.fill(items, batch_idx=0)
    assert [f["correct"] for f in filled] == [True, False] and [f["tokens"] for f in filled] == [3, 3]
