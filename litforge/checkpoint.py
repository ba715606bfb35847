"""Checkpoints to Hugging Face directories: what a Lightning checkpoint must carry to be exported on its own.

A LoRA policy (`lora:`, with or without a 4-bit base) is exported merged by default: each adapter's update is added
to its base weight (a 4-bit base weight is dequantized first) and the result is a plain transformers model. With
`adapters_only` the peft adapter is written alone (adapter_config.json + adapter_model.safetensors), to be loaded with
`PeftModel.from_pretrained` on the base it was trained on.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from litforge.backbones import config_from_dict
from litforge.data import atomic_path
from litforge.errors import CheckpointError, require
from litforge.tokenizer import load_tokenizer

EXPORT_DTYPES = ("float32", "bfloat16", "float16")
POSITION_KEY = "litforge_position"  # the model config field recording the position encoding a model was built with


def checkpoint_metadata(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The model's config and the tokenizer's files (and a LoRA policy's adapter config and a 4-bit base's quantization
    config, as JSON text), as plain data that `torch.load(weights_only=True)` accepts."""
    hf_config = model.config.to_dict()
    meta = {"hf_config": hf_config, "tokenizer": tokenizer_files(tokenizer)}
    if "quantization_config" in hf_config:  # a 4-bit base; as JSON text, since it holds an enum a safe load refuses
        meta["quantization"] = json.dumps(hf_config.pop("quantization_config"), default=str)
    if hasattr(model, "peft_config"):  # a peft model: its config is the base model's
        meta["lora"] = json.dumps(model.peft_config["default"].to_dict(), default=sorted)  # target_modules is a set
    return meta


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
    """Read a litforge Lightning checkpoint safely (weights_only); CheckpointError unless it carries export metadata."""
    checkpoint = read_checkpoint(path)
    if "litforge" not in checkpoint:
        raise CheckpointError(path, "was not written by a litforge module (no 'litforge' metadata in it)")
    return checkpoint


def check_checkpoint(path: str | os.PathLike, resume: bool = True) -> None:
    """Raise CheckpointError unless `path` is a readable Lightning checkpoint (and, with `resume`, one to resume).

    Cheap enough to call on `--ckpt_path` before a run starts: the tensors are memory-mapped, not read. A sharded
    checkpoint (a folder with `.metadata`, written by FSDP/ModelParallelStrategy) is left to Lightning.
    """
    if _sharded(path):
        return
    checkpoint = read_checkpoint(path, mmap=True)
    if resume and not {"optimizer_states", "loops"} <= checkpoint.keys():
        raise CheckpointError(path, "holds the weights only (saved with save_weights_only?): it can be exported "
                                    "with `litforge export`, not resumed")


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """`torch.load(path, weights_only=True)` of a Lightning checkpoint; a bad file raises CheckpointError saying why.

    Missing, a directory, empty, truncated, not a PyTorch file, holding objects a safe load refuses, or a PyTorch
    file that is not a Lightning checkpoint: each is named in the message.
    """
    path = Path(path)
    if _sharded(path):
        raise CheckpointError(path, "is a sharded checkpoint folder; consolidate it into one file first (python -m "
                                    "lightning.pytorch.utilities.consolidate_checkpoint)")
    if path.is_dir():
        raise CheckpointError(path, "is a directory, not a checkpoint file")
    if not path.exists():
        raise CheckpointError(path, "does not exist")
    try:
        zipfile.ZipFile(path).close()  # torch.save writes a zip archive; its directory is at the very end
    except zipfile.BadZipFile:
        raise CheckpointError(path, _not_a_zip(path)) from None
    except OSError as error:
        raise CheckpointError(path, f"cannot be read ({error.strerror})") from None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        reason = next((line.strip() for line in str(error).splitlines() if "WeightsUnpickler error" in line), error)
        raise CheckpointError(path, f"holds objects a safe load (weights_only=True) refuses: {reason}") from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(path, f"is damaged or not a PyTorch checkpoint ({type(error).__name__}: "
                                    f"{first})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(path, "is a PyTorch file but not a Lightning checkpoint (no 'state_dict' in it)")
    return checkpoint


def _sharded(path: str | os.PathLike) -> bool:
    """Whether `path` is a distributed checkpoint folder (torch.distributed.checkpoint writes `.metadata`)."""
    return (Path(path) / ".metadata").is_file()


def _not_a_zip(path: Path) -> str:
    """Why a file is no checkpoint archive: empty, cut short (a zip start without its end) or something else."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if not head:
        return "is empty (0 bytes)"
    if head == b"PK\x03\x04":
        return (f"is truncated: a zip archive without its end ({path.stat().st_size} bytes); "
                "the save was cut short or the copy is incomplete")
    return "is not a PyTorch checkpoint (torch.save writes a zip archive; this file is not one)"


def model_from_checkpoint(path: str | os.PathLike, merge: bool = True
                          ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The trained Hugging Face model (fp32, eval mode) and tokenizer stored in a litforge checkpoint.

    A LoRA policy comes back with its adapters merged into the base weights (a 4-bit base dequantized), or with
    `merge=False` as the peft model (the base in fp32, the adapters beside it).
    """
    checkpoint = load_checkpoint(path)
    meta = checkpoint["litforge"]
    hf_config = dict(meta["hf_config"])
    hf_config.pop("quantization_config", None)  # a 4-bit base is exported in full precision (`dequantized`)
    model = AutoModelForCausalLM.from_config(config_from_dict(hf_config), dtype=torch.float32)
    reattach(model)  # the position encoding the config records (CoPE ...), if any
    prefix = "model."
    state = {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    tied = _tied_keys(model)
    if not merge and "lora" not in meta:
        raise CheckpointError(path, "holds no LoRA adapters (trained without `lora:`): export it without "
                                    "--adapters-only")
    if "lora" in meta:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig.from_peft_type(**json.loads(meta["lora"])))
        state = dequantized(state)
        tied = {"base_model.model." + key for key in tied}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if key not in tied]
    if missing or unexpected:
        raise CheckpointError(path, f"its weights do not fit its stored config "
                                    f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    if "lora" in meta and merge:
        model = model.merge_and_unload()
    return model.eval(), tokenizer_from_files(meta["tokenizer"])


def dequantized(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with each bitsandbytes 4-bit weight (packed uint8 plus its quant-state entries) as a float32
    weight; other entries unchanged."""
    from bitsandbytes.functional import QuantState, dequantize_4bit

    marker = ".quant_state.bitsandbytes__"
    weights = {key.split(marker)[0] for key in state if marker in key}
    plain = {key: value for key, value in state.items()
             if not any(key.startswith(weight + ".") for weight in weights)}
    for weight in weights:
        parts = {key[len(weight) + 1:]: value for key, value in state.items() if key.startswith(weight + ".")}
        quant_state = QuantState.from_dict(parts, device=torch.device("cpu"))
        plain[weight] = dequantize_4bit(state[weight], quant_state).float()
    return plain


def export(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, dtype: str | None = None,
           adapters_only: bool = False) -> Path:
    """Write a checkpoint as a Hugging Face directory (safetensors + tokenizer), atomically.

    A LoRA policy is written merged into its base weights, or with `adapters_only` as the peft adapter alone.
    """
    refuse_nonempty(out_dir)  # before the (slow) load
    torch_dtype(dtype)
    model, tokenizer = model_from_checkpoint(checkpoint, merge=not adapters_only)
    return save_directory(model, tokenizer, out_dir, dtype)


def refuse_nonempty(out: str | os.PathLike) -> None:
    """Raise FileExistsError when `out` is a file or a folder with something in it: outputs never overwrite."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is a file; choose a new directory")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory")


def torch_dtype(name: str | None) -> torch.dtype | None:
    """The torch dtype named by an export's `dtype` argument (None keeps float32); ConfigError for another name."""
    require(name is None or name in EXPORT_DTYPES, "dtype", f"must be one of {', '.join(EXPORT_DTYPES)}, got {name!r}")
    return None if name is None else getattr(torch, name)


def save_directory(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: str | os.PathLike,
                   dtype: str | None = None) -> Path:
    """Write model and tokenizer with `save_pretrained`, atomically (a peft model writes its adapter alone).

    The directory appears complete or not at all: it is written beside its destination and renamed into place.
    """
    out = Path(out)
    refuse_nonempty(out)
    if dtype is not None:
        model = model.to(torch_dtype(dtype))
    with atomic_path(out, directory=True) as staging:
        model.config.use_cache = True
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    return out


def _tied_keys(model: PreTrainedModel) -> set[str]:
    """Parameter names that are tied to another one (a list or a dict of names, depending on the model)."""
    return set(getattr(model, "_tied_weights_keys", None) or ())


def recorded_position(config: Any) -> Any | None:
    """The position encoding a model config (or its `to_dict()`) records, rebuilt from its `{class_path, init_args}`
    (a `PositionEncoding` of plugins/position/ writes it); None when the model uses the backbone's own."""
    spec = config.get(POSITION_KEY) if isinstance(config, dict) else getattr(config, POSITION_KEY, None)
    if not spec:
        return None
    module, _, name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and callable(getattr(cls, "attach", None))):
        raise TypeError(f"{spec['class_path']} recorded in the model config is not a position encoding")
    return cls(**spec.get("init_args", {}))


def reattach(model: PreTrainedModel) -> PreTrainedModel:
    """Attach again the position encoding a saved model recorded (before loading its weights); returns the model."""
    position = recorded_position(model.config)
    if position is not None:
        position.attach(model)
    return model


def load_pretrained(path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                    attn_implementation: str | None = None) -> PreTrainedModel:
    """Load a directory written by `litforge export`, with its position encoding (plain transformers would not know it).

    `AutoModelForCausalLM.from_pretrained` on such a directory builds the backbone with RoPE, warns that the
    encoding's weights (e.g. `...self_attn.cope.pos_emb`) were not used, and returns a different model.
    `attn_implementation` applies where the encoding keeps the backbone's attention (CoPE brings its own).
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    model = reattach(AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation))
    state = {}
    for file in sorted(os.listdir(path)):
        if file.endswith(".safetensors"):
            state.update(load_file(os.path.join(path, file)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if key not in _tied_keys(model)]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.eval()
