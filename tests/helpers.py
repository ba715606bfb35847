"""Test-only helpers that subprocess runs can name by class_path (tests/ is put on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from litforge.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


class WeightFingerprint(L.Callback):
    """At the end of fit, writes each rank's full weights (gathered from shards) to `<folder>/rank<r>.pt`."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        state, sharded = {}, False
        for name, value in pl_module.model.state_dict().items():
            if hasattr(value, "full_tensor"):  # an FSDP2 shard (DTensor)
                sharded, value = True, value.full_tensor()
            state[name] = value.detach().cpu().clone()
        state["__sharded__"] = torch.tensor(sharded)
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        torch.save(state, Path(self.folder) / f"rank{trainer.global_rank}.pt")


def load_benchmark(name: str):
    """The module of `benchmarks/<name>.py` (benchmarks are scripts, not a package). The environment variables a
    script sets for its own runs (e.g. no progress bars) are taken back, so later tests' subprocesses do not inherit
    them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    environment = dict(os.environ)
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(environment)
    return module


def write_yaml(path: Path, config: dict) -> Path:
    """Write a config file (JSON is valid YAML)."""
    path.write_text(json.dumps(config, indent=1))
    return path


def run_litforge(args: list[str], cwd: Path = REPO, env: dict | None = None, timeout: int = 300,
                 check: bool = True) -> subprocess.CompletedProcess:
    """Run the `litforge` console script in a subprocess (as a user would), with tests/ importable."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
                "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "litforge.cli", *args], cwd=cwd, env=full_env, timeout=timeout,
                            capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"litforge {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def tiny_run_config(root: Path, max_steps: int = 6, **trainer) -> dict:
    """A complete fit config for a 2-layer, 32-wide Llama on the synthetic text source, writing under `root`."""
    return {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": max_steps, "val_check_interval": max_steps,
                    "limit_val_batches": 2, "log_every_n_steps": 1, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(root),
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                               "init_args": {"save_dir": str(root), "name": "csv"}},
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(root / "checkpoints"), "filename": "last"}},
                                  {"class_path": "helpers.WeightFingerprint",
                                   "init_args": {"folder": str(root / "weights")}}],
                    **trainer},
        "model": {"class_path": "CausalLM", "init_args": {
            "backbone": {"class_path": "litforge.backbones.TinyModel",
                         "init_args": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                       "intermediate_size": 64, "max_position_embeddings": 64}},
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}}}},
        "data": {"class_path": "SyntheticTextDataModule",
                 "init_args": {"num_train": 64, "num_val": 16, "max_length": 32, "batch_size": 4}},
    }


def assert_config_error(build, kwargs: dict, message: str) -> None:
    """`build(**kwargs)` raises ConfigError whose text is exactly `message` (a regex) and whose field is the key."""
    with pytest.raises(ConfigError, match=f"^{message}$") as caught:
        build(**kwargs)
    assert caught.value.field == next(iter(kwargs))
