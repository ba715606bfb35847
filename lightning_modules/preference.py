"""The base of the preference objectives (DPO+NLL, pairwise Cringe, LIFT-DPO, iterative loops).

A training step reads like the papers' algorithm box: reference log-probs from a `ReferenceSource`, one forward of
the policy over chosen and rejected together (a batch of 2B rows from `PairCollator`), a loss from
`litforge.losses` (the `loss` hook a subclass implements), then metrics.

Speed:
1. The prompt is computed once for both responses (`shared_prompt`, on by default): each pair becomes one row
   [prompt | chosen | rejected] (`share_prompts`), position ids restarting after the prompt for rejected, so each
   response sees exactly the context it has in its own sequence. With transformers' SDPA the attention runs as two
   dense blocks (`pair_sdpa_attention`): prompt and chosen attend among themselves, rejected attends to the prompt
   and to itself, and the (rejected x chosen) block is never computed. Eager attention and position plugins with
   their own attention (CoPE) get the same layout as one 4-D mask. The concatenated forward (2B rows, the prompt
   twice) remains for pairs whose prompts differ and for kernels that take no 4-D mask (flash, flex).
2. The language-model head and the log-softmax run only on response positions (prompt and padding rows of the
   hidden states are dropped before the vocabulary projection), so the (tokens x vocab) logits, usually the largest
   activation of a step, exist only where a loss is taken.
3. Reference log-probs are computed first in a step, under `torch.inference_mode` (see `litforge.reference`), so
   their forward's memory is free again before the policy's graph is built.
4. On CPU, `litforge.runtime.keep_freed_memory` (applied by every litforge module) keeps freed activations in the
   process instead of mapping fresh pages every step.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from torch import nn
from torchmetrics import MeanMetric
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

from litforge.data import IGNORE_INDEX
from litforge.losses import token_logprobs
from litforge.module import LitforgeModule
from litforge.reference import FrozenCopy, ReferenceSource

PAIR_ATTENTION = "litforge_pair_sdpa"
METRICS = ("reward_accuracy", "margin", "logp_chosen", "logp_rejected", "nll")


@dataclass
class PairLogprobs:
    """One concatenated forward over B pairs: sequence log-probs and the per-token pieces some losses need.

    Attributes:
        chosen: summed log-probs of the chosen responses (B,).
        rejected: summed log-probs of the rejected responses (B,).
        chosen_tokens: response tokens per chosen sequence (B,).
        rejected_tokens: response tokens per rejected sequence (B,).
        logits: logits at the response positions only (N, vocab).
        targets: the token each of those positions predicts (N,).
        rows: which of the 2B rows each position belongs to (N,); rows >= B are rejected.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor
    rows: torch.Tensor


class PreferenceModule(LitforgeModule):
    """Owns the policy (`self.model`), the reference source, the concatenated forward and the metrics.

    Subclasses implement `loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, pair)`. Metrics, logged
    as train/... and val/...: reward_accuracy (share of pairs whose log-ratio to the reference is higher for chosen),
    margin ((log pi - log pi_ref)(chosen) - (...)(rejected), without beta; without a reference log pi alone),
    logp_chosen, logp_rejected, nll (chosen NLL per token).

    Args:
        reference: where reference log-probs come from (FrozenCopy, PrecomputedReference, AdaptersDisabled).
        lora: peft `LoraConfig` arguments to train LoRA adapters instead of all weights (None: full fine-tuning).
        shared_prompt: run each pair as one row [prompt, chosen, rejected] (the prompt computed once) instead of
            two rows; the log-probs are the same.
        **kwargs: see `LitforgeModule`.
    """

    needs_reference = True

    def __init__(self, reference: ReferenceSource = lazy_instance(FrozenCopy), lora: dict[str, Any] | None = None,
                 shared_prompt: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["reference", "backbone", "tokenizer", "position", "optimizer", "scheduler"])
        self.reference = reference if self.needs_reference else None
        self.lora = lora
        self.shared_prompt = shared_prompt
        self.reference_model: nn.Module | None = None
        self.metrics = nn.ModuleDict({stage: nn.ModuleDict({name: MeanMetric() for name in METRICS})
                                      for stage in ("train_", "val_")})

    def build_model(self):
        model = super().build_model()
        if self.lora is not None:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **self.lora))
        return model

    def configure_model(self) -> None:
        super().configure_model()
        if self.reference is not None:
            self.reference.attach(self)

    def reanchor_reference(self) -> None:
        """Make the reference equal to the current policy (a frozen copy) and drop cached reference log-probs."""
        if self.reference is not None:
            self.reference.reanchor(self)

    def pair_logprobs(self, model: nn.Module, batch: dict[str, Any]) -> PairLogprobs:
        """Run `model` once over a batch of B pairs and return sequence log-probs of chosen and rejected."""
        shared = share_prompts(batch) if self.shared_prompt and accepts_4d_mask(model) else None
        decoder = model.get_decoder()
        if shared is None:  # 2B rows [prompt, response]; position t predicts token t+1
            hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             use_cache=False).last_hidden_state  # (2B, T, hidden)
            targets = batch["labels"][:, 1:]
            mask = targets != IGNORE_INDEX
            rows, columns = mask.nonzero(as_tuple=True)
            half = hidden.size(0) // 2
            hidden = hidden[rows, columns]  # (N, hidden): response positions only
        else:  # B rows [prompt | chosen | rejected]; see `share_prompts`
            hidden = None
            if uses_plain_sdpa(model):  # two dense attention blocks instead of one masked (T x T)
                blocks = PairBlocks.of(shared)
                with pair_attention(model):
                    hidden = decoder(input_ids=shared["input_ids"], position_ids=shared["position_ids"],
                                     use_cache=False, pair_blocks=blocks).last_hidden_state  # (B, T, hidden)
                if blocks.calls == 0:  # a wrapper whose attention reads another config: plain causal, wrong here
                    warnings.warn(f"{type(model).__name__}: the two-block attention was not reached; using a 4-D mask")
                    hidden = None
            if hidden is None:  # eager, or a position plugin's attention: one additive 4-D mask (CoPE reads it too)
                dtype = model.get_input_embeddings().weight.dtype
                allowed = full_pair_mask(shared)
                mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
                mask.masked_fill_(~allowed, torch.finfo(dtype).min)
                hidden = decoder(input_ids=shared["input_ids"], attention_mask=mask,
                                 position_ids=shared["position_ids"], use_cache=False).last_hidden_state
            mask = shared["labels"] != IGNORE_INDEX
            pairs, columns = mask.nonzero(as_tuple=True)
            targets = shared["labels"]
            half = hidden.size(0)
            rows = pairs + half * (shared["segment"][pairs, columns] == 2).long()
            hidden = hidden[pairs, shared["source"][pairs, columns]]
        logits = model.get_output_embeddings()(hidden)  # (N, vocab)
        targets = targets[mask]
        total = logits.new_zeros(2 * half, dtype=torch.float32).index_add(0, rows, token_logprobs(logits, targets))
        counts = torch.bincount(rows, minlength=2 * half)
        return PairLogprobs(total[:half], total[half:], counts[:half], counts[half:], logits, targets, rows)

    def loss(self, policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor | None,
             ref_rejected: torch.Tensor | None, pair: PairLogprobs) -> torch.Tensor:
        """The objective's scalar loss from (B,) sequence log-probs (and `pair` for per-token terms)."""
        raise NotImplementedError

    def step(self, batch: dict[str, Any], stage: str, key: str) -> torch.Tensor:
        """Forward, reference, loss and metrics for one batch of pairs."""
        ref_chosen = ref_rejected = None
        if self.reference is not None:  # first: its forward's memory is free again before the policy's graph exists
            ref_chosen, ref_rejected = self.reference.logprobs(self, batch, key)
        pair = self.pair_logprobs(self.model, batch)
        loss = self.loss(pair.chosen, pair.rejected, ref_chosen, ref_rejected, pair)
        chosen_ratio = pair.chosen.detach() - (ref_chosen if ref_chosen is not None else 0)
        rejected_ratio = pair.rejected.detach() - (ref_rejected if ref_rejected is not None else 0)
        values = {"reward_accuracy": (chosen_ratio > rejected_ratio).float(), "margin": chosen_ratio - rejected_ratio,
                  "logp_chosen": pair.chosen.detach(), "logp_rejected": pair.rejected.detach(),
                  "nll": -pair.chosen.detach() / pair.chosen_tokens.clamp(min=1)}
        size = len(pair.chosen)
        for name, value in values.items():
            metric = self.metrics[f"{stage}_"][name]
            if stage == "train":
                metric(value)  # forward: this batch's value for on_step, accumulated for on_epoch
            else:
                metric.update(value)
            self.log(f"{stage}/{name}", metric, on_step=stage == "train", on_epoch=True, batch_size=size,
                     add_dataloader_idx=False)
        self.log(f"{stage}/loss", loss.detach(), prog_bar=True, on_step=stage == "train", on_epoch=stage != "train",
                 batch_size=size, add_dataloader_idx=False)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.step(batch, "train", "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.step(batch, "val", f"val{dataloader_idx}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.reference is not None:
            checkpoint["reference_source"] = self.reference.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.reference is not None and "reference_source" in checkpoint:
            self.reference.load_state_dict(checkpoint["reference_source"])


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
    prompt = (labels != IGNORE_INDEX).int().argmax(-1)  # (2B,): the leading unlabelled tokens
    in_prompt = torch.arange(ids.size(1), device=ids.device) < prompt[:, None]
    if not torch.equal(prompt[:half], prompt[half:]) or not torch.equal(*(ids * in_prompt).chunk(2)):
        return None
    prompt = prompt[:half]
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
def pair_attention(model: nn.Module):
    """Within the block, `model`'s attention layers run `pair_sdpa_attention` (the config field they read)."""
    config = model.get_decoder().config
    previous = config._attn_implementation_internal
    config._attn_implementation_internal = PAIR_ATTENTION  # the private field: no sub-configs to propagate to
    try:
        yield
    finally:
        config._attn_implementation_internal = previous


def uses_plain_sdpa(model: nn.Module) -> bool:
    """Whether the two-block path fits: transformers' own SDPA (no position plugin's attention), and no activation
    checkpointing (its recomputation runs in the backward, outside `pair_attention`, and would pick plain SDPA)."""
    checkpointing = any(getattr(module, "gradient_checkpointing", False) for module in model.modules())
    return getattr(model.get_decoder().config, "_attn_implementation", None) == "sdpa" and not checkpointing


def accepts_4d_mask(model: nn.Module) -> bool:
    """Whether the model's attention takes a custom 4-D mask (sdpa, eager, plugins' own; not flash or flex)."""
    implementation = str(getattr(model.config, "_attn_implementation", "sdpa"))
    return not any(name in implementation for name in ("flash", "flex", "paged"))
