"""One row per preference pair, [prompt | chosen | rejected]: the prompt is computed once for both responses.

`share_prompts` turns a `PairCollator` batch (2B rows [prompt, response]) into that layout, and
`shared_hidden_states` runs a model's decoder over it. Every response token sees exactly the context and the
positions it has in its own sequence, so log-probs and gradients equal those of two separate rows.

- With transformers' SDPA, attention runs as two dense blocks (`pair_sdpa_attention`): prompt and chosen among
  themselves, then rejected over the prompt and itself. The (rejected x chosen) block is never computed. The
  function is registered in `AttentionInterface` and selected for one forward by `pair_attention`.
- Eager attention, position plugins with their own attention (CoPE) and activation checkpointing get the same
  layout as one additive 4-D mask (`full_pair_mask`).
- A 4-D mask replaces the per-layer masks a model builds itself, so a model whose sliding window binds within the
  batch's length (Gemma 2/3, Mistral with a short window) takes the concatenated forward (`shared_layout_fits`).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

from litforge.data import IGNORE_INDEX

PAIR_ATTENTION = "litforge_pair_sdpa"


def share_prompts(batch: dict[str, Any]) -> dict[str, Any] | None:
    """Rearrange a `PairCollator` batch (2B rows [prompt, response]) into B rows [prompt | chosen | rejected].

    Each segment is padded to its longest in the batch (P, C, R), so every row has the same block layout: columns
    [0, P) hold the prompt, [P, P + C) chosen, [P + C, P + C + R) rejected, each followed by its padding. Position ids
    of both responses start where the pair's prompt ends, so every response token sees the positions it has in its
    own sequence. Returns input_ids, labels, position_ids, `real` (not padding), `segment` (0 prompt, 1 chosen,
    2 rejected) and `source` (the column whose hidden state predicts the token in column t: t - 1, but the prompt's
    last real column for the first token of each response), each (B, T), and `split` = (P, C). None when the two
    prompts of a pair differ.
    """
    ids, labels, lengths = batch["input_ids"], batch["labels"], batch["attention_mask"].sum(-1)
    half = ids.size(0) // 2
    prompt = prompt_lengths(batch)
    if prompt is None:
        return None
    sizes = torch.stack([prompt, lengths[:half] - prompt, lengths[half:] - prompt], -1)  # (B, 3)
    P, C, R = sizes.amax(0).tolist()  # one host sync for the whole layout
    t = torch.arange(P + C + R, device=ids.device)
    segment = (t >= P).long() + (t >= P + C).long()  # (T,)
    offset = t - torch.tensor([0, P, P + C], device=ids.device)[segment]  # index within its segment
    real = offset < sizes[:, segment]  # (B, T)
    column = (offset + prompt[:, None] * (segment > 0)).clamp(max=ids.size(1) - 1)  # where the token sits in its row
    row = torch.arange(half, device=ids.device)[:, None] + half * (segment == 2)
    source = torch.where((offset == 0) & (segment > 0), prompt[:, None] - 1, t - 1)
    return {"input_ids": ids[row, column].masked_fill(~real, 0),  # any id: padding is never attended to or scored
            "labels": labels[row, column].masked_fill(~real | (source < 0), IGNORE_INDEX),
            "position_ids": column.masked_fill(~real, 0), "real": real, "segment": segment.expand_as(real),
            "source": source, "split": (P, C)}


def prompt_lengths(batch: dict[str, Any]) -> torch.Tensor | None:
    """The prompt length of each pair of a `PairCollator` batch (B,), or None when the two prompts of a pair differ."""
    ids, labels = batch["input_ids"], batch["labels"]
    half = ids.size(0) // 2
    prompt = (labels != IGNORE_INDEX).int().argmax(-1)  # (2B,): the leading unlabelled tokens
    in_prompt = torch.arange(ids.size(1), device=ids.device) < prompt[:, None]
    if not torch.equal(prompt[:half], prompt[half:]) or not torch.equal(*(ids * in_prompt).chunk(2)):
        return None
    return prompt[:half]


def full_pair_mask(shared: dict[str, Any]) -> torch.Tensor:
    """The (B, 1, T, T) mask of a shared layout, True where a query may attend to a key: causal, real keys only,
    and rejected never sees chosen. No row is empty: every query sees at least its own prompt."""
    real, segment = shared["real"], shared["segment"]
    causal = torch.ones(real.size(1), real.size(1), dtype=torch.bool, device=real.device).tril()
    return (causal & real[:, None, :] & ~((segment[:, :, None] == 2) & (segment[:, None, :] == 1)))[:, None]


@dataclass
class PairBlocks:
    """The two dense blocks of a shared layout's attention, for `pair_sdpa_attention`.

    Queries [0, P + C) (prompt and chosen) attend to keys [0, P + C) under `first` (B, 1, P+C, P+C); queries
    [P + C, T) (rejected) attend to the keys [0, P) + [P + C, T) under `second` (B, 1, R, P+R). Together they
    cover (P+C)^2 + R(P+R) score entries instead of the full T^2 of one masked attention, and skip the
    (rejected x chosen) block entirely.
    """

    prompt: int
    split: int
    first: torch.Tensor
    second: torch.Tensor
    calls: int = 0  # layers that ran the two blocks (0 after a forward: the model's attention never read them)

    @classmethod
    def of(cls, shared: dict[str, Any]) -> PairBlocks:
        real, (P, C) = shared["real"], shared["split"]
        split, R = P + C, real.size(1) - P - C
        causal = torch.ones(split, split, dtype=torch.bool, device=real.device).tril()
        first = causal & real[:, None, :split]
        keys = torch.cat([real[:, :P], real[:, split:]], 1)  # (B, P + R)
        query, key = torch.arange(R, device=real.device)[:, None], torch.arange(P + R, device=real.device)
        second = ((key < P) | (key - P <= query)) & keys[:, None, :]
        return cls(P, split, first[:, None], second[:, None])


def pair_sdpa_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                        pair_blocks: PairBlocks | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """An `AttentionInterface` function: SDPA in two blocks for shared-prompt rows, plain SDPA otherwise."""
    if pair_blocks is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    pair_blocks.calls += 1
    groups = query.size(1) // key.size(1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    P, split = pair_blocks.prompt, pair_blocks.split
    first = F.scaled_dot_product_attention(query[:, :, :split], key[:, :, :split], value[:, :, :split],
                                           attn_mask=pair_blocks.first, dropout_p=dropout, scale=scaling)
    second = F.scaled_dot_product_attention(query[:, :, split:], torch.cat([key[:, :, :P], key[:, :, split:]], 2),
                                            torch.cat([value[:, :, :P], value[:, :, split:]], 2),
                                            attn_mask=pair_blocks.second, dropout_p=dropout, scale=scaling)
    return torch.cat([first, second], 2).transpose(1, 2).contiguous(), None


AttentionInterface.register(PAIR_ATTENTION, pair_sdpa_attention)  # selected per forward by `pair_attention`


@contextmanager
def attention_function(model: nn.Module, name: str):
    """Within the block, `model`'s attention layers run the `AttentionInterface` function `name` (the config field
    they read)."""
    config = model.get_decoder().config
    previous = config._attn_implementation_internal
    config._attn_implementation_internal = name  # the private field: no sub-configs to propagate to
    try:
        yield
    finally:
        config._attn_implementation_internal = previous


def pair_attention(model: nn.Module):
    """Within the block, `model`'s attention layers run `pair_sdpa_attention`."""
    return attention_function(model, PAIR_ATTENTION)


def uses_plain_sdpa(model: nn.Module) -> bool:
    """Whether the two-block path fits: transformers' own SDPA (no position plugin's attention), and no activation
    checkpointing (its recomputation runs in the backward, outside `pair_attention`, and would pick plain SDPA)."""
    checkpointing = any(getattr(module, "gradient_checkpointing", False) for module in model.modules())
    return getattr(model.get_decoder().config, "_attn_implementation", None) == "sdpa" and not checkpointing


def accepts_4d_mask(model: nn.Module) -> bool:
    """Whether the model's attention takes a custom 4-D mask (sdpa, eager, plugins' own; not flash or flex)."""
    implementation = str(getattr(model.config, "_attn_implementation", "sdpa"))
    return not any(name in implementation for name in ("flash", "flex", "paged"))


def sliding_window(model: nn.Module) -> int | None:
    """The attention window of the model's sliding layers (a key at distance >= window is not seen), or None when
    every layer sees the whole prefix. Read from the config: `layer_types` (Gemma 2/3, Qwen2/3) says which layers
    slide; without it (Mistral, Phi-3) `sliding_window` applies to every layer."""
    config = model.get_decoder().config
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if window is None or (layer_types is not None and "sliding_attention" not in layer_types):
        return None
    return int(window)


def shared_layout_fits(model: nn.Module, length: int) -> bool:
    """Whether the shared layout gives a 2B-row batch of `length` columns its own log-probs: the attention takes a
    4-D mask, and no sliding window binds within `length` positions (the mask would replace the window)."""
    window = sliding_window(model)
    return accepts_4d_mask(model) and (window is None or length <= window)


def shared_hidden_states(model: nn.Module, shared: dict[str, Any]) -> torch.Tensor:
    """The decoder's last hidden states (B, T, hidden) over a `share_prompts` layout."""
    decoder = model.get_decoder()
    if uses_plain_sdpa(model):  # two dense attention blocks instead of one masked (T x T)
        blocks = PairBlocks.of(shared)
        with pair_attention(model):
            hidden = decoder(input_ids=shared["input_ids"], position_ids=shared["position_ids"], use_cache=False,
                             pair_blocks=blocks).last_hidden_state
        if blocks.calls > 0:
            return hidden
        # a wrapper whose attention layers read another config ran plain causal attention: wrong for this layout
        warnings.warn(f"{type(model).__name__}: the two-block attention was not reached; using a 4-D mask")
    dtype = model.get_input_embeddings().weight.dtype  # eager adds the mask; CoPE reads it too
    allowed = full_pair_mask(shared)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, torch.finfo(dtype).min)
    return decoder(input_ids=shared["input_ids"], attention_mask=mask, position_ids=shared["position_ids"],
                   use_cache=False).last_hidden_state
