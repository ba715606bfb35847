"""The PositionEncoding contract, and the per-model surgery the encodings share.

Every change is made to one model instance: attention functions are registered under a litforge name and selected
through that model's own config, the rotary module is wrapped on that model only, and parameters are added as
submodules of that model (so they train, checkpoint and export under ordinary state-dict keys).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from litforge.checkpoint import POSITION_KEY
from litforge.errors import require

ATTACHED = "litforge_position_attached"  # the model attribute that marks an encoding as attached to that instance


class PositionEncoding:
    """Changes how one model's attention sees positions; attaching to one model never changes another."""

    def attach(self, model: PreTrainedModel) -> None:
        """Modify `model` in place (register attention/mask functions, add parameters, record itself in the config)."""
        raise NotImplementedError

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments, recorded in the model config so the encoding can be re-attached on load."""
        return {}

    def claim(self, model: PreTrainedModel) -> None:
        """Mark `model` as carrying this encoding (first thing in `attach`); ConfigError if one is attached already."""
        attached = getattr(model, ATTACHED, None)
        require(attached is None, "position",
                f"{type(model).__name__} already has a position encoding attached ({attached}); a backbone loaded "
                "from a litforge export brings its own, so leave `position:` unset")
        setattr(model, ATTACHED, type(self).__name__)

    def record(self, model: PreTrainedModel) -> None:
        """Write `{class_path, init_args}` into `model.config`; `litforge.checkpoint.reattach` reads it back."""
        cls = type(self)
        setattr(model.config, POSITION_KEY, {"class_path": f"{cls.__module__}.{cls.__qualname__}",
                                           "init_args": self.init_args()})


def attention_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The self-attention modules of a decoder (those with a `layer_idx` and a `head_dim`), in layer order."""
    found = [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "head_dim")
             and type(m).__name__.endswith("Attention")]
    require(bool(found), "position", f"{type(model).__name__} has no attention modules with layer_idx/head_dim; "
            "position plugins need an AttentionInterface model (Llama, Qwen2/3, Mistral, Gemma 2/3, Phi-3 ...)")
    return found


class NoRotary(nn.Module):
    """Wraps one model's rotary module so that it returns cos = 1, sin = 0: rotary embedding becomes the identity."""

    def __init__(self, rotary: nn.Module):
        super().__init__()
        self.rotary = rotary

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.rotary(x, position_ids, *args)  # Gemma 3 passes the layer type (local/global RoPE)
        return torch.ones_like(cos), torch.zeros_like(sin)


def rotary_modules(model: PreTrainedModel) -> list[tuple[str, nn.Module]]:
    """The model's rotary embedding module(s) by name; ConfigError naming `position` when it has none."""
    found = [(name, module) for name, module in model.named_modules()
             if type(module).__name__.endswith("RotaryEmbedding")]
    require(bool(found), "position", f"{type(model).__name__} has no rotary embedding module to turn off "
            "(its positions are not RoPE)")
    return found


def disable_rotary(model: PreTrainedModel) -> None:
    """Turn RoPE off for this model only, by wrapping its rotary module(s) in `NoRotary`."""
    for name, module in rotary_modules(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, NoRotary(module))
