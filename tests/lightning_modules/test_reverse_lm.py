"""ReverseLM: both directions in one step, the loss is their token-weighted mean, exact match, CLI end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM
from litforge.datamodules import SymbolicReversalDataModule
from litforge.lightning_modules import ReverseLM
from litforge.plugins.reversal import EntityPreservingReversal, RandomSegmentReversal

from litforge.checkpoint import export
from litforge.cli import run_lightning
from litforge.errors import ConfigError
from litforge.losses import token_cross_entropy

REPO = Path(__file__).resolve().parents[2]


def make(tiny_backbone, transform, **kwargs):
    data = SymbolicReversalDataModule(num_pairs=8, batch_size=8)
    data.setup("fit")
    model = ReverseLM(transform=transform, tokenizer=data.tokenizer, backbone=tiny_backbone, **kwargs)
    model.configure_model()
    model.log = lambda *args, **kwargs: None  # no trainer attached
    return model, data, next(iter(data.train_dataloader()))


def test_step_trains_on_both_directions_with_the_token_weighted_loss(tiny_backbone):
    model, data, batch = make(tiny_backbone, EntityPreservingReversal())
    forward, backward = model.directions(batch)
    assert len(forward) == len(backward) == 8
    tok = data.tokenizer
    for fwd, rev in zip(forward, backward):
        a_b = tok.decode(fwd["input_ids"], skip_special_tokens=True)
        a, b = a_b.split(" = ")
        assert tok.decode(rev["input_ids"], skip_special_tokens=True) == f"{b} = {a}"
    loss = model.training_step(batch, 0)
    # recompute each direction on its own (unpadded to a common length) and weight by labelled tokens
    parts = [model.collate([{"input_ids": s["input_ids"], "labels": s["labels"]} for s in rows])
             for rows in (forward, backward)]
    sums, counts = [], []
    for part in parts:
        mean, count = token_cross_entropy(model(part["input_ids"], part["attention_mask"]), part["labels"])
        sums.append(mean * count)
        counts.append(count)
    torch.testing.assert_close(loss, (sums[0] + sums[1]) / (counts[0] + counts[1]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_standard_training_and_reverse_probability(tiny_backbone):
    model, _, batch = make(tiny_backbone, None)
    forward, backward = model.directions(batch)
    assert len(forward) == 8 and backward == []
    for p, expected in [(0.0, 0), (1.0, 8)]:
        model, _, batch = make(tiny_backbone, RandomSegmentReversal(k=2), reverse_probability=p)
        forward, backward = model.directions(batch)
        assert (len(forward), len(backward)) == (8 - expected, expected)
    model, _, batch = make(tiny_backbone, RandomSegmentReversal(k=1), reverse_probability=0.5)
    first = model.directions(batch)
    assert first == model.directions(batch)  # seeded by reverse_seed and the step
    assert 0 < len(first[1]) < 8
    with pytest.raises(ValueError, match="reverse_probability"):
        ReverseLM(reverse_probability=1.5)


def test_each_samples_draws_do_not_depend_on_its_batch(tiny_backbone):
    # what a rank draws for a sample is what one process draws for it in a batch twice as large
    model, _, batch = make(tiny_backbone, RandomSegmentReversal(k=2), reverse_probability=0.5)
    forward, backward = model.directions(batch)
    halves = [{key: value[rows] for key, value in batch.items()} for rows in (slice(0, 4), slice(4, 8))]
    parts = [model.directions(half) for half in halves]
    assert [row for part in parts for row in part[0]] == forward
    assert [row for part in parts for row in part[1]] == backward
    assert 0 < len(backward) < 8
    model.reverse_seed = 1
    assert model.directions(batch) != (forward, backward)  # the seed matters


@pytest.mark.slow
def test_cli_fit_logs_both_losses_and_exact_match(tmp_path):
    cli = run_lightning([
        "fit", "--config", str(REPO / "configs/reverse/symbolic.yaml"),
        "--model.init_args.transform=RandomSegmentReversal",
        "--model.init_args.backbone.init_args.hidden_size=32",
        "--model.init_args.backbone.init_args.num_hidden_layers=1",
        "--data.init_args.num_pairs=16", "--data.init_args.batch_size=8",
        "--trainer.max_steps=4", "--trainer.val_check_interval=4", "--trainer.log_every_n_steps=1",
        f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}",
        f"--trainer.callbacks.init_args.dirpath={tmp_path}", "--trainer.enable_progress_bar=false"])
    metrics = cli.trainer.callback_metrics
    for key in ["train/forward_loss", "train/reverse_loss", "val_forward/exact_match", "val_reverse/exact_match",
                "val_reverse/loss"]:
        assert key in metrics, key
    assert 0.0 <= float(metrics["val_reverse/exact_match"]) <= 1.0
    assert isinstance(cli.model.transform, RandomSegmentReversal)
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    assert "transform" not in torch.load(checkpoint, weights_only=True)["hyper_parameters"]
    model = AutoModelForCausalLM.from_pretrained(export(checkpoint, tmp_path / "hf"))
    assert model.config.vocab_size == len(cli.datamodule.tokenizer)


@pytest.mark.parametrize("config", sorted((REPO / "configs/reverse").glob("*.yaml")), ids=lambda p: p.name)
def test_configs_parse(config, capsys):
    with pytest.raises(SystemExit):
        run_lightning(["fit", "--config", str(config), "--print_config"])
    assert "ReverseLM" in capsys.readouterr().out


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_a_reverse_probability_outside_0_1_is_a_config_error(value):
    with pytest.raises(ConfigError, match=rf"^reverse_probability: must be in \[0, 1\] or null, got {value}$"):
        ReverseLM(reverse_probability=value)
    ReverseLM(reverse_probability=0.0)
