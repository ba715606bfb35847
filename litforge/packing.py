"""Padding-free pair batches: every sequence's real tokens in ONE row, attention block-diagonal per pair.

Paper: none; this is packed-sequence training (sequences concatenated, positions restarting, attention kept inside
each sequence) applied to preference pairs, so that no layer computes anything on padding (issue 19, item 1).

`pack_pairs` turns a `PairCollator` batch (2B rows [prompt, response], right-padded) into one row of N real tokens:
per pair [prompt | chosen | rejected] when both prompts of every pair are equal (the prompt computed once, as in
`litforge.shared_prompt`), else each of the 2B sequences on its own. Position ids restart per pair (a rejected
response starts where its prompt ends), so every token has the position it has in its own sequence.
`packed_hidden_states` runs the decoder over that row with `packed_sdpa_attention` (registered in transformers'
`AttentionInterface`): per pair, prompt and chosen attend causally among themselves and rejected attends to the
prompt and, causally, to itself. No (N x N) mask is ever built; the projections and the MLP see the N real tokens.

Departures from a padded forward (none in the numbers: log-probs and gradients are equal, tested):
1. Attention runs as one SDPA call per sequence block (two per shared-prompt pair) in a Python loop; blocks that
   share one shape (equal-length pairs) run as one batched call instead.
2. It needs transformers' own SDPA attention in every layer and no sliding window that binds within the batch's
   length: `packing_refusal` says why a model cannot take it (eager or a plugin's own attention such as CoPE's,
   flash/flex kernels, activation checkpointing, a binding sliding window), and the caller falls back to the padded
   layouts.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

from litforge.data import IGNORE_INDEX
from litforge.shared_prompt import attention_function, prompt_lengths, shared_layout_fits, uses_plain_sdpa

PACKED_ATTENTION = "litforge_packed_sdpa"


@dataclass
class PackedPairs:
    """A batch of pairs as one padding-free row, and where each scored token's prediction is.

    Attributes:
        input_ids: the real tokens of all sequences, (1, N).
        position_ids: each token's position in its own sequence, (1, N).
        blocks: (start, prompt, split, length) per block: queries [start, start + split) attend causally among
            themselves; queries [start + split, start + length) (rejected) attend to the prompt's keys
            [start, start + prompt) and, causally, to their own. A sequence on its own has split = length.
        source: the packed position whose hidden state predicts each scored token, (M,).
        targets: the scored tokens, (M,), in the concatenated layout's order (row-major over the 2B rows).
        rows: which of the 2B rows each scored token belongs to, (M,); rows >= B are rejected.
        half: B.
        calls: attention layers that ran the blocks (0 after a forward: the model's attention never read them).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    blocks: list[tuple[int, int, int, int]]
    source: torch.Tensor
    targets: torch.Tensor
    rows: torch.Tensor
    half: int
    calls: int = 0
    groups: BlockGroups | None = None  # set by `packed_hidden_states`


def pack_pairs(batch: dict[str, Any], shared_prompt: bool = True) -> PackedPairs:
    """Pack a `PairCollator` batch into one row (see `PackedPairs`): with `shared_prompt` and equal prompts in every
    pair, each pair is one block [prompt | chosen | rejected], otherwise each of the 2B sequences is its own block."""
    ids, labels = batch["input_ids"], batch["labels"]
    half, device = ids.size(0) // 2, ids.device
    lengths = batch["attention_mask"].sum(-1)
    prompt = prompt_lengths(batch) if shared_prompt else None
    if prompt is not None:  # pieces: (row, first column, column after the last) of the batch, in packed order
        sizes = torch.stack([prompt, lengths[:half] - prompt, lengths[half:] - prompt], -1).tolist()  # one host sync
        pieces = [piece for i, (p, c, r) in enumerate(sizes) for piece in ((i, 0, p + c), (half + i, p, p + r))]
        shapes = [(p, p + c, p + c + r) for p, c, r in sizes]
    else:
        pieces = [(row, 0, length) for row, length in enumerate(lengths.tolist())]
        shapes = [(0, length, length) for _, _, length in pieces]
    row, first, size = (torch.tensor(column, device=device) for column in zip(*[(r, a, b - a) for r, a, b in pieces]))
    piece = torch.repeat_interleave(torch.arange(len(pieces), device=device), size)  # (N,): each token's piece
    start = torch.cumsum(size, 0) - size
    token_rows = row[piece]
    columns = first[piece] + torch.arange(len(piece), device=device) - start[piece]  # the token's original column
    where = torch.full(ids.shape, -1, dtype=torch.long, device=device)  # (2B, T): packed position of each token
    where[token_rows, columns] = torch.arange(len(piece), device=device)
    if prompt is not None:  # a rejected row's prompt is the chosen row's, packed once
        in_prompt = torch.arange(ids.size(1), device=device) < prompt[:, None]
        where[half:][in_prompt] = where[:half][in_prompt]
    scored = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t + 1
    rows, at = scored.nonzero(as_tuple=True)
    blocks, offset = [], 0
    for p, split, length in shapes:
        blocks.append((offset, p, split, length))
        offset += length
    return PackedPairs(ids[token_rows, columns][None], columns[None], blocks, where[rows, at], labels[:, 1:][rows, at],
                       rows, half)


@dataclass
class BlockGroups:
    """The blocks of a `PackedPairs` grouped by shape, so that equal blocks run as one batched SDPA call.

    Attributes:
        lengths: each block's length, in packed order (the row is split along these).
        shapes: (prompt, split, length) per group.
        members: per group, the indices of its blocks in packed order.
    """

    lengths: list[int]
    shapes: list[tuple[int, int, int]]
    members: list[list[int]]

    @classmethod
    def of(cls, packed: PackedPairs) -> BlockGroups:
        by_shape: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        for number, (_, prompt, split, length) in enumerate(packed.blocks):
            by_shape[(prompt, split, length)].append(number)
        return cls([length for *_, length in packed.blocks], list(by_shape), list(by_shape.values()))


def block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prompt: int, split: int, dropout: float,
                    scaling: float | None) -> torch.Tensor:
    """Attention within blocks of one shape, each (blocks, heads, length, dim): queries [0, split) causal among
    themselves; queries [split, length) over the keys [0, prompt) and, causally, their own."""
    length = q.size(2)
    if split == length:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True)
    (q1, q2), (k1, k2), (v1, v2) = (x.split([split, length - split], 2) for x in (q, k, v))
    first = F.scaled_dot_product_attention(q1, k1, v1, dropout_p=dropout, scale=scaling, is_causal=True)
    keys, values = torch.cat([k1[:, :, :prompt], k2], 2), torch.cat([v1[:, :, :prompt], v2], 2)
    mask = torch.ones(length - split, prompt + length - split, dtype=torch.bool, device=q.device).tril(prompt)
    second = F.scaled_dot_product_attention(q2, keys, values, attn_mask=mask, dropout_p=dropout, scale=scaling)
    return torch.cat([first, second], 2)


def packed_sdpa_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          packed_pairs: PackedPairs | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """An `AttentionInterface` function: block-diagonal SDPA over a packed row, plain SDPA without `packed_pairs`."""
    if packed_pairs is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    packed_pairs.calls += 1
    groups = packed_pairs.groups
    repeats = query.size(1) // key.size(1)
    key, value = repeat_kv(key, repeats), repeat_kv(value, repeats)  # (1, heads, N, dim)
    # one split per tensor (its backward is one concatenation), never a slice per block (a full-size zero gradient each)
    pieces = [x.split(groups.lengths, 2) for x in (query, key, value)]
    outputs: list[torch.Tensor | None] = [None] * len(groups.lengths)
    for (prompt, split, _), members in zip(groups.shapes, groups.members):
        q, k, v = (torch.cat([blocks[i] for i in members]) if len(members) > 1 else blocks[members[0]]
                   for blocks in pieces)  # (blocks, heads, length, dim)
        out = block_attention(q, k, v, prompt, split, dropout, scaling)
        for i, block in zip(members, out.split(1)):
            outputs[i] = block
    out = torch.cat(outputs, 2) if len(outputs) > 1 else outputs[0]  # (1, heads, N, dim)
    return out.transpose(1, 2).contiguous(), None  # (1, N, heads, dim)


AttentionInterface.register(PACKED_ATTENTION, packed_sdpa_attention)  # selected per forward by `packed_attention`


def packed_attention(model: nn.Module):
    """Within the block, `model`'s attention layers run `packed_sdpa_attention`."""
    return attention_function(model, PACKED_ATTENTION)


def packing_refusal(model: nn.Module, length: int) -> str | None:
    """Why `model` cannot run a padding-free batch of sequences up to `length` tokens, or None when it can."""
    if not shared_layout_fits(model, length):
        return ("its attention takes no custom layout (flash/flex kernels) or a sliding window binds within "
                f"{length} positions")
    if not uses_plain_sdpa(model):
        return ("its attention is not transformers' SDPA (eager, or a position plugin's own such as CoPE's) or "
                "activation checkpointing is on (its recomputation would not see the blocks)")
    return None


def packed_hidden_states(model: nn.Module, packed: PackedPairs) -> torch.Tensor | None:
    """The decoder's last hidden states over a packed row, (N, hidden); None (with a warning) when the model's
    attention layers never ran the blocks (a wrapper reading another config): the caller takes a padded layout."""
    packed.groups = BlockGroups.of(packed)
    with packed_attention(model):
        hidden = model.get_decoder()(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False,
                                     packed_pairs=packed).last_hidden_state
    if packed.calls == 0:  # causal attention over the whole row ran instead: wrong for this layout
        warnings.warn(f"{type(model).__name__}: the packed attention was not reached; using a padded layout")
        return None
    return hidden[0]
