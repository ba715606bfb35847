"""Checkpoints to Hugging Face directories: what a Lightning checkpoint must carry to be exported on its own."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from litforge.backbones import config_from_dict
from litforge.plugins.position.base import reattach
from litforge.tokenizer import load_tokenizer


def checkpoint_metadata(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The model's config and the tokenizer's files, as plain data that `torch.load(weights_only=True)` accepts."""
    return {"hf_config": model.config.to_dict(), "tokenizer": tokenizer_files(tokenizer)}


def tokenizer_files(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """The files `save_pretrained` writes for the tokenizer, base64-encoded by name."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        return {path.name: base64.b64encode(path.read_bytes()).decode() for path in Path(folder).iterdir()}


def tokenizer_from_files(files: dict[str, str]) -> PreTrainedTokenizerBase:
    """Rebuild a tokenizer from `tokenizer_files` output."""
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(base64.b64decode(data))
        return load_tokenizer(folder)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a litforge Lightning checkpoint safely (weights_only) and check it carries export metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "litforge" not in checkpoint:
        raise ValueError(f"{path} was not written by a litforge module (no 'litforge' metadata in it)")
    return checkpoint


def model_from_checkpoint(path: str | os.PathLike) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The trained Hugging Face model (fp32, eval mode) and tokenizer stored in a litforge checkpoint."""
    checkpoint = load_checkpoint(path)
    meta = checkpoint["litforge"]
    config = config_from_dict(meta["hf_config"])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    reattach(model)  # the position encoding the config records (CoPE ...), if any
    prefix = "model."
    state = {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if key not in _tied_keys(model)]
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint weights do not fit the stored config "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.eval(), tokenizer_from_files(meta["tokenizer"])


def export(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, dtype: str | None = None) -> Path:
    """Write a checkpoint as a Hugging Face directory (safetensors + tokenizer), atomically."""
    refuse_nonempty(out_dir)  # before the (slow) load
    model, tokenizer = model_from_checkpoint(checkpoint)
    return save_directory(model, tokenizer, out_dir, dtype)


def refuse_nonempty(out: str | os.PathLike) -> None:
    """Raise FileExistsError when `out` exists with something in it: outputs never overwrite."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory")


def save_directory(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: str | os.PathLike,
                   dtype: str | None = None) -> Path:
    """Write model and tokenizer with `save_pretrained`, atomically.

    The directory appears complete or not at all: it is written beside its destination and renamed into place.
    """
    out = Path(out)
    refuse_nonempty(out)
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.config.use_cache = True
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _tied_keys(model: PreTrainedModel) -> set[str]:
    """Parameter names that are tied to another one (a list or a dict of names, depending on the model)."""
    return set(getattr(model, "_tied_weights_keys", None) or ())
