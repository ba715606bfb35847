"""Checkpoints and exports: every bad `.ckpt` is a CheckpointError naming the path and what is wrong; an export is
written whole or not at all, with normal permissions, and a killed export's staging folder is cleared by the next."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import zipfile

import lightning as L
import pytest
import torch
from helpers import REPO, run_litforge

from litforge.checkpoint import check_checkpoint, checkpoint_metadata, export, load_checkpoint, save_directory
from litforge.datamodules import SyntheticTextDataModule
from litforge.errors import CheckpointError, ConfigError
from litforge.lightning_modules import CausalLM


@pytest.fixture
def checkpoint(tmp_path, tiny_model, tokenizer):
    """A litforge checkpoint of the tiny model, as `export` reads it."""
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in tiny_model.state_dict().items()},
                "litforge": checkpoint_metadata(tiny_model, tokenizer)}, path)
    return path


def bad_checkpoint(kind, folder, good):
    """A file (or folder) at `folder / kind` that is not a usable checkpoint."""
    path = folder / f"{kind}.ckpt"
    data = good.read_bytes()
    if kind == "text":
        path.write_text("model: not really\n")
    elif kind == "random":
        path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                       dtype=torch.uint8).numpy().tobytes())
    elif kind == "half":
        path.write_bytes(data[:len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "unsafe":
        torch.save({"state_dict": {}, "hook": print}, path)  # a pickled function: weights_only refuses it
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
    return path


BAD = {
    "text": r"is not a PyTorch checkpoint \(torch.save writes a zip archive; this file is not one\)$",
    "random": "is not a PyTorch checkpoint",
    "half": r"is truncated: a zip archive without its end \(\d+ bytes\); the save was cut short",
    "empty": r"is empty \(0 bytes\)",
    "directory": "is a directory, not a checkpoint file",
    "missing": "does not exist",
    "unsafe": r"holds objects a safe load \(weights_only=True\) refuses: .*print",
    "tensor": "is a PyTorch file but not a Lightning checkpoint",
    "zip": r"is damaged or not a PyTorch checkpoint \(RuntimeError: ",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_checkpoint_names_its_path_and_what_is_wrong(tmp_path, checkpoint, kind):
    path = bad_checkpoint(kind, tmp_path, checkpoint)
    for read in (load_checkpoint, check_checkpoint, lambda p: export(p, tmp_path / "hf")):
        with pytest.raises(CheckpointError, match=f"^checkpoint {re.escape(str(path))}: {BAD[kind]}") as caught:
            read(path)
        assert caught.value.path == path
    assert not (tmp_path / "hf").exists()


def test_a_checkpoint_not_written_by_litforge_is_refused_by_export(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="was not written by a litforge module"):
        export(tmp_path / "plain.ckpt", tmp_path / "hf")


def test_check_checkpoint_accepts_a_resumable_checkpoint_and_refuses_weights_only(tmp_path, tiny_backbone):
    data = SyntheticTextDataModule(num_train=8, num_val=4, max_length=32, batch_size=4)
    module = CausalLM(backbone=tiny_backbone, tokenizer=data.tokenizer)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(tmp_path / "full.ckpt")
    trainer.save_checkpoint(tmp_path / "weights.ckpt", weights_only=True)
    check_checkpoint(tmp_path / "full.ckpt")
    check_checkpoint(tmp_path / "weights.ckpt", resume=False)
    with pytest.raises(CheckpointError, match="holds the weights only .* not resumed"):
        check_checkpoint(tmp_path / "weights.ckpt")
    (tmp_path / "sharded").mkdir()
    (tmp_path / "sharded" / ".metadata").write_bytes(b"")
    check_checkpoint(tmp_path / "sharded")  # left to Lightning
    with pytest.raises(CheckpointError, match="is a sharded checkpoint folder; consolidate it"):
        export(tmp_path / "sharded", tmp_path / "hf")


def test_export_checks_dtype_and_destination_before_loading(tmp_path, checkpoint):
    with pytest.raises(ConfigError, match="^dtype: must be one of float32, bfloat16, float16, got 'fp16'$"):
        export(checkpoint, tmp_path / "hf", dtype="fp16")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        export(checkpoint, tmp_path / "file")


def test_export_has_normal_permissions(tmp_path, checkpoint):
    previous = os.umask(0o022)
    try:
        out = export(checkpoint, tmp_path / "hf")
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o755
    assert {path.stat().st_mode & 0o777 for path in out.iterdir()} == {0o644}


def test_a_failed_save_leaves_nothing_behind(tmp_path, tiny_model):
    with pytest.raises(AttributeError):  # the weights are written, then the "tokenizer" cannot save itself
        save_directory(tiny_model, object(), tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []


CHILD = """
import os, signal, sys
from transformers import PreTrainedModel
from litforge.checkpoint import export

save = PreTrainedModel.save_pretrained

def save_then_die(self, folder, *args, **kwargs):
    save(self, folder, *args, **kwargs)  # the weights are on disk, the tokenizer is not: a half-written export
    os.kill(os.getpid(), signal.SIGKILL)

PreTrainedModel.save_pretrained = save_then_die
export(sys.argv[1], sys.argv[2])
"""


@pytest.mark.slow
def test_a_killed_export_leaves_a_staging_folder_that_the_next_export_clears(tmp_path, checkpoint):
    out = tmp_path / "hf"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", CHILD, str(checkpoint), str(out)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    [staging] = tmp_path.glob(".hf.staging-*")
    assert (staging / "model.safetensors").is_file() and not (staging / "tokenizer.json").exists()
    assert not out.exists()
    alive = tmp_path / f".hf.staging-{socket.gethostname()}-{os.getpid()}-0123abcd"  # a writer still at work
    alive.mkdir()
    export(checkpoint, out)
    assert list(tmp_path.glob(".hf.staging-*")) == [alive]
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["half", "directory"])
def test_litforge_export_of_a_bad_checkpoint_is_one_line_and_exit_2(tmp_path, checkpoint, kind):
    path = bad_checkpoint(kind, tmp_path, checkpoint)
    result = run_litforge(["export", str(path), str(tmp_path / "hf")], check=False)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()  # no traceback
    assert re.match(f"litforge: error: checkpoint {re.escape(str(path))}: {BAD[kind]}", line)
    assert not (tmp_path / "hf").exists()
