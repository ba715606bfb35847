"""The `litforge` command end to end, as a user runs it: fit -> validate -> export -> plain transformers."""

import contextlib
import io
import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers import REPO, run_litforge, tiny_run_config, write_yaml
from litforge.checkpoint import model_from_checkpoint


@pytest.mark.slow
def test_fit_validate_export_round_trip(tmp_path):
    config = write_yaml(tmp_path / "run.yaml", tiny_run_config(tmp_path, max_steps=8))
    run_litforge(["fit", "--config", str(config)])
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    metrics = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/loss" in metrics

    result = run_litforge(["validate", "--config", str(config), "--ckpt_path", str(checkpoint)])
    assert re.search(r"val/loss\s+\S+\s+\d", result.stdout)

    out = tmp_path / "hf"
    run_litforge(["export", str(checkpoint), str(out)])
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    reference, _ = model_from_checkpoint(checkpoint)
    ids = tokenizer("the cat sees the dog", return_tensors="pt")["input_ids"]
    assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-6)
    assert tokenizer.chat_template is not None and tokenizer.eos_token == "<|eos|>"

    again = run_litforge(["export", str(checkpoint), str(out)], check=False)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr


def resolved(args):
    """The config `--print_config` prints, parsed (JSON is printed as YAML; both parse with json after yaml load)."""
    import yaml

    result = run_litforge(["fit", *args, "--print_config"])
    return yaml.safe_load(result.stdout)


def test_overlays_compose_and_print_the_whole_run():
    config = resolved(["--config", "configs/quickstart.yaml", "--config", "configs/strategy/ddp.yaml",
                       "--config", "configs/optim/adamw8bit.yaml", "--config", "configs/logger/wandb.yaml"])
    assert config["trainer"]["strategy"] == "ddp" and config["trainer"]["devices"] == 2
    assert config["trainer"]["max_steps"] == 300  # from the run config, untouched by overlays
    optimizer = config["model"]["init_args"]["optimizer"]
    assert optimizer["class_path"] == "bitsandbytes.optim.AdamW8bit"
    assert optimizer["init_args"]["lr"] == 0.003  # kept from the run config
    assert config["trainer"]["logger"]["class_path"] == "litforge.loggers.WandbLogger"
    assert config["data"]["init_args"]["max_length"] == 128


def test_bad_data_exits_2_naming_file_line_field_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a", "respnse": "b"}\n')
    config = tiny_run_config(tmp_path)
    config["data"] = {"class_path": "SFTDataModule", "init_args": {"train_path": str(bad), "max_length": 32}}
    result = run_litforge(["fit", "--config", str(write_yaml(tmp_path / "run.yaml", config))], check=False)
    assert result.returncode == 2
    assert f"{bad}:2: field 'response': missing" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "csv").exists()


def test_wandb_offline_run_records_group_tags_and_config(tmp_path):
    pytest.importorskip("wandb")
    config = tiny_run_config(tmp_path, max_steps=2)
    config["trainer"]["logger"] = {"class_path": "litforge.loggers.WandbLogger",
                                   "init_args": {"project": "litforge-test", "save_dir": str(tmp_path),
                                                 "tags": ["smoke"]}}
    run_litforge(["fit", "--config", str(write_yaml(tmp_path / "run.yaml", config))],
                 env={"WANDB_API_KEY": "", "WANDB_MODE": ""})
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "no offline wandb run directory"
    record = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"CausalLM" in record and b"smoke" in record  # group = objective, tags
    assert b'"max_length":32' in record.replace(b" ", b"")  # the whole resolved config
    assert b"train/loss" in record
    compared = run_litforge(["compare", str(tmp_path / "wandb"), "--plot", str(tmp_path / "loss.png")])
    assert "train/loss" in compared.stdout and (tmp_path / "loss.png").is_file()  # history read back from the run


def test_every_shipped_config_parses():
    """Each YAML starts with the command that runs it, and that command's parser accepts it (--print_config)."""
    from litforge.cli import main

    paths = sorted((REPO / "configs").rglob("*.yaml"))
    assert paths, "no configs found"
    for path in paths:
        first_line = path.read_text().splitlines()[0]
        assert first_line.startswith("# "), f"{path} must start with a comment giving the command that runs it"
        overlay = path.parent.name in {"strategy", "logger", "optim"}
        if "litforge merge" in first_line:
            args = ["merge"]
        elif overlay:
            args = ["fit", "--config", str(REPO / "configs/quickstart.yaml")]
        else:
            args = ["fit"]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as stop:
            main([*args, "--config", str(path), "--print_config"])
        assert stop.value.code in (0, None), f"{path} does not parse"
        assert "class_path" in printed.getvalue()
