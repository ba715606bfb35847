"""Exact resume: a fit killed with SIGKILL at any step and rerun with `--ckpt_path last` ends with the same weights.

The slow tests run `litforge fit` in a subprocess that holds once the checkpoint of a chosen step is written (so the
kill lands at a known step without racing), kill its whole process group with SIGKILL, rerun the same command with
`--ckpt_path last`, and compare the final checkpoint with that of a run never interrupted, tensor by tensor.
"""

import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers import REPO, run_litforge, tiny_run_config, write_yaml

from litforge.resume import RandomState, capture, restore


class HoldAfterStep(L.Callback):
    """Test helper: with HOLD_AFTER_STEP=k in the environment, a fit writes `flag` once step k's checkpoint is saved
    and waits (before step k + 1) to be killed."""

    def __init__(self, flag: str):
        self.flag = Path(flag)
        self.step = int(os.environ.get("HOLD_AFTER_STEP", -1))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            if trainer.is_global_zero:
                self.flag.write_text(str(self.step))
            while True:
                time.sleep(1)


def draws():
    return torch.rand(3).tolist(), random.random(), np.random.rand()


def test_random_states_round_trip_through_a_weights_only_checkpoint():
    callback = RandomState()
    buffer = io.BytesIO()
    torch.save(callback.state_dict(), buffer)
    expected = draws()
    buffer.seek(0)
    resumed = RandomState()
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed.on_train_start(None, None)
    assert draws() == expected


def test_validation_leaves_the_training_stream_where_it_was():
    callback = RandomState()
    before = capture()
    callback.on_validation_start(None, None)
    draws()
    callback.on_validation_end(None, None)
    after = draws()
    restore(before)
    assert draws() == after


def run_config(root: Path, model: dict, data: dict, max_steps: int, **trainer) -> Path:
    """A tiny fit that saves last.ckpt after every step and can hold after one (HoldAfterStep)."""
    config = tiny_run_config(root, max_steps=max_steps, **trainer)
    config["trainer"]["callbacks"] = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": str(root / "checkpoints"), "save_last": True, "every_n_train_steps": 1,
                       "save_top_k": 0}},
        {"class_path": "test_resume.HoldAfterStep", "init_args": {"flag": str(root / "held")}}]
    config["model"] = model
    config["data"] = data
    return write_yaml(root / "run.yaml", config)


def kill_after(step: int, args: list[str], root: Path, timeout: float = 300) -> None:
    """Run `litforge ARGS` until it holds after `step`, then SIGKILL its process group (every rank)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "OMP_NUM_THREADS": "1", "HOLD_AFTER_STEP": str(step)}
    with open(root / "killed.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "litforge.cli", *args], cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not (root / "held").exists():
                assert process.poll() is None, (root / "killed.log").read_text()[-4000:]
                assert time.monotonic() < deadline, f"no hold after step {step} within {timeout} s"
                time.sleep(0.2)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == step


def final_state(root: Path) -> dict:
    checkpoint = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    return {"global_step": checkpoint["global_step"], "weights": checkpoint["state_dict"],
            "optimizer": checkpoint["optimizer_states"][0]["state"]}


def assert_same_run(expected: dict, resumed: dict) -> None:
    assert resumed["global_step"] == expected["global_step"]
    assert resumed["weights"].keys() == expected["weights"].keys()
    different = [name for name in expected["weights"] if not torch.equal(expected["weights"][name],
                                                                         resumed["weights"][name])]
    assert not different, f"weights differ after resuming: {different}"
    for index, state in expected["optimizer"].items():
        assert all(torch.equal(value, resumed["optimizer"][index][key]) for key, value in state.items())


def killed_and_resumed(tmp_path: Path, name: str, step: int, config: dict, overlay: list[str] = ()) -> dict:
    """Final state of a run killed after `step` and rerun with the same command plus `--ckpt_path last`."""
    root = tmp_path / name
    root.mkdir()
    args = ["fit", "--config", str(run_config(root, **config)), *overlay]
    kill_after(step, args, root)
    resumed = run_litforge(args + ["--ckpt_path", "last"])
    assert "not resumable" not in resumed.stderr  # Lightning's warning for a loader it cannot restart mid-epoch
    return final_state(root)


def straight(tmp_path: Path, config: dict, overlay: list[str] = ()) -> dict:
    """Final state of the same run never interrupted."""
    root = tmp_path / "straight"
    root.mkdir()
    run_litforge(["fit", "--config", str(run_config(root, **config)), *overlay])
    return final_state(root)


TINY = {"class_path": "litforge.backbones.TinyModel",
        "init_args": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                      "max_position_embeddings": 64, "config": {"attention_dropout": 0.2}}}  # steps draw at random
OPTIMIZER = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}}

# 6 batches per epoch, validation after batch 4 of each epoch, 14 steps: three epochs, the last one cut short
CAUSAL_LM = {"model": {"class_path": "CausalLM", "init_args": {"backbone": TINY, "optimizer": OPTIMIZER}},
             "data": {"class_path": "SyntheticTextDataModule",
                      "init_args": {"num_train": 24, "num_val": 8, "max_length": 32, "batch_size": 4}},
             "max_steps": 14, "val_check_interval": 4, "limit_val_batches": 1}


@pytest.mark.slow
def test_causal_lm_killed_at_any_step_resumes_exactly(tmp_path):
    expected = straight(tmp_path, CAUSAL_LM)
    # mid-epoch before a validation, right after one, at the end of the first epoch, mid-way through the second
    for step in (3, 4, 6, 9):
        assert_same_run(expected, killed_and_resumed(tmp_path, f"killed{step}", step, CAUSAL_LM))


def preference(model: str, **init_args) -> dict:
    """A preference run on the synthetic arithmetic pairs: 6 batches per epoch, 10 steps."""
    return {"model": {"class_path": model, "init_args": {"backbone": TINY, "optimizer": OPTIMIZER, **init_args}},
            "data": {"class_path": "ArithmeticPreferenceDataModule",
                     "init_args": {"num_train": 24, "num_val": 8, "max_length": 64, "batch_size": 4}},
            "max_steps": 10, "val_check_interval": 4, "limit_val_batches": 1}


@pytest.mark.slow
@pytest.mark.parametrize("config", [
    preference("DPONLL", reference={"class_path": "PrecomputedReference"}),
    preference("PairwiseCringe"),  # samples its positive tokens per pair, seeded by cringe_seed, step and pair index
], ids=["dpo_nll_precomputed_reference", "pairwise_cringe"])
def test_preference_killed_mid_epoch_resumes_exactly(tmp_path, config):
    expected = straight(tmp_path, config)
    for step in (4, 8):
        assert_same_run(expected, killed_and_resumed(tmp_path, f"killed{step}", step, config))


@pytest.mark.slow
def test_ddp_killed_mid_epoch_resumes_exactly(tmp_path):
    ddp = ["--config", "configs/strategy/ddp.yaml", "--trainer.accelerator=cpu"]
    config = dict(CAUSAL_LM, max_steps=5, val_check_interval=2)  # 3 batches per rank and epoch
    expected = straight(tmp_path, config, ddp)
    assert_same_run(expected, killed_and_resumed(tmp_path, "killed", 4, config, ddp))
