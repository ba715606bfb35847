"""The `litforge` command end to end, as a user runs it: fit -> validate -> export -> plain transformers."""

import contextlib
import io
import re

import pytest
import torch
import yaml
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
    result = run_litforge(["fit", *args, "--print_config"])
    return yaml.safe_load(result.stdout)


@pytest.mark.slow
def test_overlays_compose_and_print_the_whole_run():
    config = resolved(["--config", "configs/quickstart.yaml", "--config", "configs/strategy/ddp.yaml",
                       "--config", "configs/optim/adamw8bit.yaml", "--config", "configs/logger/wandb.yaml"])
    assert config["trainer"]["strategy"] == "ddp" and config["trainer"]["devices"] == 2
    shipped = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    assert config["trainer"]["max_steps"] == shipped["trainer"]["max_steps"]  # from the run config, not the overlays
    optimizer = config["model"]["init_args"]["optimizer"]
    assert optimizer["class_path"] == "bitsandbytes.optim.AdamW8bit"
    assert optimizer["init_args"]["lr"] == 0.003  # kept from the run config
    assert config["trainer"]["logger"]["class_path"] == "litforge.loggers.WandbLogger"
    assert config["data"]["init_args"]["max_length"] == 128


@pytest.mark.slow
def test_a_config_error_is_the_only_line_printed(tmp_path):
    """Nothing before the error line: not even Lightning's "Seed set to 0", said once the classes are built."""
    config = set_in(tiny_run_config(tmp_path), "data.init_args.batch_size", 0)
    result = run_litforge(["fit", "--config", str(write_yaml(tmp_path / "run.yaml", config))], check=False)
    assert result.returncode == 2
    printed = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert printed == ["litforge: error: batch_size: must be at least 1, got 0"], printed


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def csv_rows(root):
    """The rows of a tiny run's metrics.csv."""
    import csv

    with (root / "csv" / "version_0" / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def last_and_best(config, root):
    """The tiny run config with litforge's checkpoint callback in place of Lightning's."""
    config["trainer"]["callbacks"][0] = {"class_path": "LastAndBestCheckpoint",
                                         "init_args": {"dirpath": str(root / "checkpoints")}}
    return config


@pytest.mark.slow
def test_integer_val_check_interval_counts_batches_across_epochs_and_progress_shows_in_a_log(tmp_path):
    """4 batches an epoch, validation every 6: Lightning alone refuses (6 > 4); litforge counts across epochs."""
    from litforge.backbones import TinyModel

    TinyModel(hidden_size=32, num_hidden_layers=2, num_attention_heads=2).build(259, 258, 256, 257).save_pretrained(
        tmp_path / "start")  # loaded through LocalCheckpoint, which once left it in eval mode
    config = tiny_run_config(tmp_path, max_steps=10, val_check_interval=6, limit_train_batches=4,
                             enable_progress_bar=True, log_every_n_steps=5)
    config["model"]["init_args"]["backbone"] = {"class_path": "litforge.backbones.LocalCheckpoint",
                                                "init_args": {"path": str(tmp_path / "start")}}
    config["model"]["init_args"]["gradient_checkpointing"] = True
    result = run_litforge(["fit", "--config", str(write_yaml(tmp_path / "run.yaml", config))])
    assert [int(row["step"]) for row in csv_rows(tmp_path) if row.get("val/loss")] == [5]  # after step 6, 0-based
    lines = result.stdout.splitlines()  # stdout is a pipe here: plain progress lines, not a bar
    assert [line.split("  ")[0] for line in lines[:3]] == ["step 5/10", "step 6/10", "step 10/10"]
    assert lines[3].startswith("done: step 10/10 in ") and len(lines) == 4
    assert re.fullmatch(r"step 10/10  epoch 2  loss \S+  tokens/s [\d,]+  elapsed \S+  eta 0:00:00", lines[2])
    assert "flush_logs_every_n_steps: 5" in (tmp_path / "csv" / "version_0" / "config.yaml").read_text()
    for noise in ("Tip:", "LeafSpec", "eval mode", "FutureWarning"):
        assert noise not in result.stderr


@pytest.mark.slow
def test_integer_val_check_interval_under_the_ddp_overlay(tmp_path):
    """2 gloo processes, 2 batches each an epoch, validation every 3 steps."""
    config = tiny_run_config(tmp_path, max_steps=4, val_check_interval=3, limit_train_batches=2)
    config = last_and_best(config, tmp_path)
    run_litforge(["fit", "--config", str(write_yaml(tmp_path / "run.yaml", config)),
                  "--config", str(REPO / "configs/strategy/ddp.yaml")])
    assert [int(row["step"]) for row in csv_rows(tmp_path) if row.get("val/loss")] == [2]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4


@pytest.mark.slow
def test_ckpt_path_last_with_nothing_saved_starts_fresh_and_says_so(tmp_path):
    config = write_yaml(tmp_path / "run.yaml", last_and_best(tiny_run_config(tmp_path, max_steps=2), tmp_path))
    result = run_litforge(["fit", "--config", str(config), "--ckpt_path", "last"])
    assert "litforge: --ckpt_path last: no checkpoint saved yet; starting from the beginning" in result.stdout
    assert "no last checkpoint" not in result.stderr  # Lightning's multi-line warning is not shown as well
    resumed = run_litforge(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps", "3"])
    assert "starting from the beginning" not in resumed.stdout
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3


def run_main(args, capsys):
    """`litforge ARGS` in this process: (exit status, stdout, stderr)."""
    from litforge.cli import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    captured = capsys.readouterr()
    return stop.value.code, captured.out, captured.err


def one_line_error(stderr):
    """The error line, asserting it is the only thing on stderr that is not Lightning's start-up chatter."""
    lines = [line for line in stderr.splitlines() if line.startswith("litforge: error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("kind, reason", [("missing", "does not exist"), ("truncated", "is truncated"),
                                          ("text", "is not a PyTorch checkpoint"), ("directory", "is a directory")])
def test_ckpt_path_that_is_not_a_checkpoint_exits_2_before_writing(tmp_path, capsys, kind, reason):
    path = tmp_path / "given.ckpt"
    if kind == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "directory":
        path.mkdir()
    config = write_yaml(tmp_path / "run.yaml", tiny_run_config(tmp_path))
    code, _, err = run_main(["fit", "--config", str(config), "--ckpt_path", str(path)], capsys)
    assert code == 2
    assert one_line_error(err).startswith(f"litforge: error: checkpoint {path}: {reason}")
    assert not (tmp_path / "csv").exists() and not (tmp_path / "checkpoints").exists()


def set_in(config, dotted, value):
    """Set `config[a][b]...` from "a.b..." and return the config."""
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


@pytest.mark.parametrize("change, expected", [
    ("empty", "the file is empty"),
    ("list", "a config file holds a mapping of sections"),
    (("model.class_path", "CausalLMM"), "model: unknown class_path 'CausalLMM'; closest litforge names: CausalLM"),
    (("model.init_args.backbone.class_path", "TinyModle"), "closest litforge names: TinyModel"),
    (("trainer.max_steps", -5), "trainer: `max_steps` must be a non-negative integer"),
    (("model.init_args.backbone.init_args.model_type", "lama"),
     "model_type: unknown model_type 'lama'; closest: llama"),
    (("data.init_args.batch_size", "x"), "data.batch_size: Expected a <class 'int'>"),
    (("data.init_args.batch_size", 0), "batch_size: must be at least 1, got 0"),
    (("trainer.accumulate_grad_batches", 0), "trainer.accumulate_grad_batches: must be at least 1, got 0"),
    (("model.init_args.backbone.init_args.num_attention_heads", 3),
     "backbone: Class validation error for validator 'validate_architecture': ValueError: The hidden size (32) is "
     "not a multiple of the number of attention heads (3)."),
    (("model.init_args.backbone.init_args.hidden_size", 0), "hidden_size: must be at least 1, got 0"),
    (("data.init_args.num_workers", -1), "num_workers: must be 0 or more, got -1"),
    (("model.init_args.optimizer", {"class_path": "torch.optim.AdamW", "init_args": {"lr": -1.0}}),
     "optimizer: Invalid learning rate: -1.0"),
    (("model.init_args.scheduler", {"class_path": "torch.optim.lr_scheduler.LinearLR",
                                    "init_args": {"start_factor": 2.0}}),
     "scheduler: Starting multiplicative factor expected to be greater than 0 and less or equal to 1"),
])
def test_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, change, expected):
    path = tmp_path / "run.yaml"
    if change == "empty":
        path.write_text("# nothing here yet\n")
    elif change == "list":
        path.write_text("- trainer\n- model\n")
    else:
        write_yaml(path, set_in(tiny_run_config(tmp_path), *change))
    code, _, err = run_main(["fit", "--config", str(path)], capsys)
    assert code == 2 and expected in one_line_error(err)
    assert not (tmp_path / "csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("logger", ["csv", "wandb"])
def test_fit_failing_before_its_first_step_leaves_no_logger_run(tmp_path, logger):
    """The backbone is built after the logger made its run folder: that folder is removed again."""
    config = tiny_run_config(tmp_path)
    config["model"]["init_args"]["backbone"] = {"class_path": "litforge.backbones.LocalCheckpoint",
                                                "init_args": {"path": str(tmp_path / "no_model")}}
    if logger == "wandb":
        config["trainer"]["logger"] = {"class_path": "litforge.loggers.WandbLogger",
                                       "init_args": {"project": "litforge-test", "save_dir": str(tmp_path)}}
    result = run_litforge(["fit", "--config", str(write_yaml(tmp_path / "run.yaml", config))], check=False)
    assert result.returncode == 2 and "no config.json" in one_line_error(result.stderr)
    assert not list(tmp_path.glob("csv/version_*")) and not list(tmp_path.glob("wandb/*run-*"))


def test_help_with_model_and_data_shows_their_arguments(capsys):
    from litforge.cli import main

    main(["fit", "--model", "CausalLM", "--data", "SFTDataModule", "--help"])
    out = capsys.readouterr().out
    assert "--model.backbone" in out and "--model.gradient_checkpointing" in out
    assert "--data.train_path" in out


@pytest.mark.slow
def test_bitsandbytes_missing_kernel_hint_is_quiet():
    """bitsandbytes asks for the optional `kernels` package at import on AVX512-BF16 CPUs; the CLI drops that line."""
    import subprocess
    import sys

    from bitsandbytes.backends.cpu.ops import has_avx512bf16

    try:
        import kernels  # noqa: F401
        pytest.skip("the `kernels` package is installed: bitsandbytes has nothing to say")
    except ImportError:
        pass
    if not has_avx512bf16():
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes does not ask for the kernel")
    code = "import bitsandbytes"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "gemm_4bit_forward" in plain.stderr  # the line exists without the filter
    quiet = subprocess.run([sys.executable, "-c", "from litforge.cli import quiet_known_noise; quiet_known_noise(); "
                            + code], capture_output=True, text=True, check=True)
    assert "gemm_4bit_forward" not in quiet.stderr
