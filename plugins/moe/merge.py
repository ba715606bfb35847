"""`litforge merge`: run an `Upcycler` (BTX, sparse upcycling, Branch-Train-Merge) over trained branches and write
a standard Hugging Face directory (Mixtral, Qwen2-MoE or Qwen3-MoE for MoE merges) that loads in plain `transformers`.

    litforge merge --config configs/btx/merge.yaml
    litforge merge --upcycler BTXMerge --experts [a/hf,b/hf,c/hf] --seed seed/hf --out merged

The CLI (litforge/cli.py) runs `merge_command`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from litforge.plugins.moe.base import Upcycler
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from litforge.checkpoint import model_from_checkpoint, refuse_nonempty, save_directory, torch_dtype
from litforge.errors import CheckpointError, ConfigError, require
from litforge.tokenizer import load_tokenizer


def load_branch(path: str | os.PathLike) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model and tokenizer from a `save_pretrained` directory or a litforge `.ckpt` (fp32, eval mode)."""
    path = Path(path)
    if path.is_file():
        return model_from_checkpoint(path)
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "is a directory without config.json"
        raise CheckpointError(path, f"{what}; a branch is a litforge .ckpt or a save_pretrained directory")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as error:  # missing or damaged weights, a config transformers cannot read
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(path, f"cannot be loaded as a Hugging Face model ({first})") from None
    return model.eval(), load_tokenizer(str(path))


def merge(upcycler: Upcycler, experts: list[str], out: str, seed: str | None = None,
          dtype: str | None = None) -> Path:
    """Load the branches (and seed), merge them with `upcycler`, and write the result to `out`."""
    require(bool(experts) or seed is not None, "experts", "nothing to merge: give --experts and/or --seed")
    refuse_nonempty(out)  # before the (slow) loads
    torch_dtype(dtype)
    loaded = [load_branch(path) for path in experts]
    seed_model, seed_tokenizer = load_branch(seed) if seed is not None else (None, None)
    tokenizer = loaded[0][1] if loaded else seed_tokenizer
    for path, (_, other) in zip(experts, loaded):
        if other.get_vocab() != tokenizer.get_vocab():
            raise ConfigError("experts", f"{path}: its tokenizer differs from {experts[0]}'s; branches must share "
                                         "the seed's")
    merged = upcycler.merge([model for model, _ in loaded], seed_model)
    return save_directory(merged, tokenizer, out, dtype)


def merge_parser() -> ArgumentParser:
    """The jsonargparse parser of `litforge merge` (YAML via --config, --print_config; upcycler by class_path: the
    upcyclers of this package resolve by short name)."""
    parser = ArgumentParser(prog="litforge merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these arguments")
    parser.add_argument("--upcycler", type=Upcycler, required=True, help="BTXMerge, SparseUpcycle, BranchTrainMerge")
    parser.add_argument("--experts", type=list[str], default=[], help="branch directories or litforge .ckpt files")
    parser.add_argument("--seed", type=str | None, default=None, help="the seed model (sparse upcycling, BTX+seed)")
    parser.add_argument("--out", type=str, required=True, help="new directory for the merged model")
    parser.add_argument("--dtype", type=str | None, default=None, help="float32, bfloat16 or float16 (default fp32)")
    return parser


def merge_command(args: list[str]) -> None:
    """`litforge merge`: merge trained branches into one Hugging Face checkpoint."""
    parser = merge_parser()
    config = parser.parse_args(args)  # --print_config (added by jsonargparse) prints the resolved config and exits
    objects = parser.instantiate_classes(config)
    path = merge(objects.upcycler, objects.experts, objects.out, objects.seed, objects.dtype)
    print(f"merged {len(objects.experts)} branches with {type(objects.upcycler).__name__} -> {path}")
