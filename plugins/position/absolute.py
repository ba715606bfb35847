"""Learned absolute position embeddings (as in GPT-2): a table of vectors added to the token embeddings.

Departures: 1. positions come from the decoder's `position_ids` (or the cache length), so padded, packed and cached
inputs see the same positions as the backbone would give them; 2. RoPE is turned off.
"""

from __future__ import annotations

from typing import Any

import torch
from litforge.plugins.position.base import PositionEncoding, disable_rotary, rotary_modules
from torch import nn
from transformers import PreTrainedModel

from litforge.errors import require


class Absolute(PositionEncoding):
    """Add a learned embedding of each token's absolute position to its input embedding (RoPE off).

    Args:
        max_positions: table size (None = the config's `max_position_embeddings`).
        init_std: standard deviation of the table's normal initialisation.
    """

    def __init__(self, max_positions: int | None = None, init_std: float = 0.02):
        require(max_positions is None or max_positions >= 1, "max_positions",
                f"must be >= 1 or null, got {max_positions}")
        require(init_std >= 0, "init_std", f"must be >= 0, got {init_std}")
        self.max_positions = max_positions
        self.init_std = init_std

    def init_args(self) -> dict[str, Any]:
        return {"max_positions": self.max_positions, "init_std": self.init_std}

    def attach(self, model: PreTrainedModel) -> None:
        rotary_modules(model)  # refuse before changing anything
        self.claim(model)
        disable_rotary(model)
        decoder = model.base_model
        size = self.max_positions or model.config.max_position_embeddings
        table = nn.Embedding(size, model.config.hidden_size)
        nn.init.normal_(table.weight, std=self.init_std)
        decoder.embed_positions = table.to(model.get_input_embeddings().weight.dtype)
        decoder.register_forward_pre_hook(_add_positions, with_kwargs=True)
        self.record(model)


def _add_positions(decoder: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook of the decoder: replace `input_ids` by token + position embeddings."""
    kwargs = dict(kwargs)
    if args:  # input_ids given positionally
        kwargs["input_ids"], args = args[0], args[1:]
    embeds = kwargs.get("inputs_embeds")
    if embeds is None:
        embeds = decoder.embed_tokens(kwargs.pop("input_ids"))
    kwargs["input_ids"] = None
    positions = kwargs.get("position_ids")
    if positions is None:
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = cache.get_seq_length() if cache is not None else 0
        positions = torch.arange(past, past + embeds.size(1), device=embeds.device).unsqueeze(0)
    positions = positions.clamp(0, decoder.embed_positions.num_embeddings - 1)
    kwargs["inputs_embeds"] = embeds + decoder.embed_positions(positions)  # (batch, T, hidden)
    return args, kwargs
