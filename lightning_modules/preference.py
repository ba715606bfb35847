"""The base of the preference objectives (DPO+NLL, pairwise Cringe, LIFT-DPO, iterative loops).

A training step reads like the papers' algorithm box: reference log-probs from a `ReferenceSource`, one forward of
the policy over chosen and rejected together (a batch of 2B rows from `PairCollator`), a loss from
`litforge.losses` (the `loss` hook a subclass implements), then metrics.

Speed:
0. No compute on padding (`padding_free`, on by default: on long-tailed lengths an epoch's forward and backward ran
   1.96x faster than in shared-prompt padded rows and 1.54x faster than in per-length groups of them on CPU,
   `benchmarks/pair_layouts.py`; see `litforge.packing`): all
   sequences of a batch run as one row of real tokens, positions restarting per pair, attention block-diagonal per
   pair. The padded layouts below remain for models whose attention cannot take it (`packing_refusal`).
1. The prompt is computed once for both responses (`shared_prompt`, on by default): each pair becomes one row
   [prompt | chosen | rejected] (`litforge.shared_prompt`). With transformers' SDPA the attention runs as two dense
   blocks and the (rejected x chosen) block is never computed; other attention gets the same layout as a 4-D mask.
   The concatenated forward (2B rows, the prompt twice) remains for pairs whose prompts differ, for kernels that
   take no 4-D mask (flash, flex) and for sliding windows that bind at the batch's length (Gemma 2/3, Mistral).
2. The language-model head and the log-softmax run only on response positions (prompt and padding rows of the
   hidden states are dropped before the vocabulary projection), so the (tokens x vocab) logits, usually the largest
   activation of a step, exist only where a loss is taken.
3. Reference log-probs are computed first in a step, under `torch.inference_mode` (see `plugins/reference/`), so
   their forward's memory is free again before the policy's graph is built.
4. On CPU, `litforge.runtime.keep_freed_memory` (applied by every litforge module) keeps freed activations in the
   process instead of mapping fresh pages every step.

Data parallel: every validation number (`val/loss` and the metrics) is a torchmetrics mean of per-pair values
weighted by pairs, added over ranks once when the epoch's value is computed, and a distributed sampler's padding
repeats are dropped from the batch before the step (`kept_rows`), so it is the whole set's value under any strategy.
Each rank holds the same number of pairs per training step, so the gradient average over ranks is the mean over all
pairs, as with one process and the whole batch.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from litforge.lazy import lazy_default
from lightning.pytorch.utilities import rank_zero_info
from litforge.lightning_modules.set_metrics import kept_rows, reset_metrics, select_rows
from litforge.plugins.reference import FrozenCopy, ReferenceSource
from torch import nn
from torchmetrics import MeanMetric

from litforge.data import IGNORE_INDEX
from litforge.errors import require
from litforge.losses import chunked_token_logprobs, token_logprobs
from litforge.module import LitforgeModule, shard_model
from litforge.packing import PackedPairs, pack_pairs, packed_hidden_states, packing_refusal
from litforge.shared_prompt import share_prompts, shared_hidden_states, shared_layout_fits

METRICS = ("reward_accuracy", "margin", "logp_chosen", "logp_rejected", "nll")


@dataclass
class PairLogprobs:
    """One forward over B pairs: sequence log-probs and the per-token pieces some losses need.

    Attributes:
        chosen: summed log-probs of the chosen responses (B,).
        rejected: summed log-probs of the rejected responses (B,).
        chosen_tokens: response tokens per chosen sequence (B,).
        rejected_tokens: response tokens per rejected sequence (B,).
        targets: the token each response position predicts (N,).
        rows: which of the 2B rows each position belongs to (N,); rows >= B are rejected.
        index: each pair's position in its split (B,), where the batch has one (`PairCollator` writes it).
        hidden: the final hidden states at the response positions (N, hidden), kept when the LM head ran in chunks.
        head: the model's output layer, for `logits` from `hidden`.
        computed_logits: the (N, vocab) logits once they exist (see `logits`).
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    targets: torch.Tensor
    rows: torch.Tensor
    index: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    head: nn.Module | None = None
    computed_logits: torch.Tensor | None = None

    @property
    def logits(self) -> torch.Tensor:
        """Logits at the response positions only (N, vocab); with `lm_head_chunk` built here on first use (a loss
        that reads them, such as Cringe's, gives back the memory the chunks saved)."""
        if self.computed_logits is None:
            self.computed_logits = self.head(self.hidden)
        return self.computed_logits


class PreferenceModule(LitforgeModule):
    """Owns the policy (`self.model`), the reference source, the concatenated forward and the metrics.

    Subclasses implement `loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, pair)`. Metrics, logged
    as train/... and val/...: reward_accuracy (share of pairs whose log-ratio to the reference is higher for chosen),
    margin ((log pi - log pi_ref)(chosen) - (...)(rejected), without beta; without a reference log pi alone),
    logp_chosen, logp_rejected, nll (chosen NLL per token).

    Args:
        reference: where reference log-probs come from (FrozenCopy, PrecomputedReference, AdaptersDisabled).
        shared_prompt: run each pair as one row [prompt, chosen, rejected] (the prompt computed once) instead of
            two rows; the log-probs are the same.
        padding_free: run all of a batch's sequences as one row without padding (`litforge.packing`: positions
            restart per pair, attention block-diagonal per pair), so no layer computes on padding; the log-probs
            and gradients are the padded forward's. A batch without padding (equal lengths) stays in its padded
            layout, which is then as small and a little faster (fewer copies). A model whose attention cannot take
            it (eager, CoPE, flash, activation checkpointing, a binding sliding window) takes the padded rows, said
            once in the log.
        lm_head_chunk: run the output layer and the log-softmax on this many response positions at a time, the
            backward recomputing each chunk's logits (`litforge.losses.chunked_token_logprobs`), so the
            (tokens x vocab) logits never exist whole (None: all at once, the fastest while they fit). A loss that
            reads `PairLogprobs.logits` (Cringe) still gets them, built whole when it asks.
        **kwargs: see `LitforgeModule`.
    """

    needs_reference = True
    metric_names: tuple[str, ...] = METRICS  # per-pair values logged as train/<name> and val/<name>
    plugin_fields = ("reference",)  # objects, kept out of the hyperparameters (LitforgeModule)

    def __init__(self, reference: ReferenceSource = lazy_default(FrozenCopy), shared_prompt: bool = True,
                 padding_free: bool = True, lm_head_chunk: int | None = None, **kwargs):
        require(lm_head_chunk is None or lm_head_chunk >= 1, "lm_head_chunk", f"must be >= 1, got {lm_head_chunk}")
        super().__init__(**kwargs)
        self.reference = reference if self.needs_reference else None
        self.shared_prompt = shared_prompt
        self.padding_free = padding_free
        self.lm_head_chunk = lm_head_chunk
        self.refusals: set[str] = set()  # reasons a model took padded rows, each logged once
        self.reference_model: nn.Module | None = None
        self.metrics = nn.ModuleDict({stage: nn.ModuleDict({name: MeanMetric() for name in self.metric_names})
                                      for stage in ("train_", "val_")})
        self.metrics["val_"]["loss"] = MeanMetric()
        self.extra_values: dict[str, torch.Tensor] = {}  # per-pair values a `loss` hook adds to the metrics

    def configure_model(self) -> None:
        if self.model is None:
            self.model = self.build_model()
        made = self.reference_model is None
        if self.reference is not None:
            self.reference.bind(self)  # before sharding: a frozen copy is made of the whole model, then sharded alike
        super().configure_model()
        if made and self.reference_model is not None and self.device_mesh is not None:
            shard_model(self.reference_model, self.device_mesh["data_parallel"])
        for model in (self.model, self.reference_model):
            if model is not None:
                register_pair_forward(model)

    def reanchor_reference(self) -> None:
        """Make the reference equal to the current policy (a frozen copy) and drop cached reference log-probs."""
        if self.reference is not None:
            self.reference.reanchor(self)

    def pair_logprobs(self, model: nn.Module, batch: dict[str, Any]) -> PairLogprobs:
        """Run `model` once over a batch of B pairs and return sequence log-probs of chosen and rejected."""
        length = batch["input_ids"].size(1)
        fits = self.shared_prompt and shared_layout_fits(model, length)
        layout = share_prompts(batch) if fits else None
        refusal = packing_refusal(model, length) if self.padding_free else None
        if refusal is not None and refusal not in self.refusals:  # said once per reason
            self.refusals.add(refusal)
            rank_zero_info(f"padding_free: {type(model).__name__} takes padded rows: {refusal}")
        padding = ~(layout["real"] if layout is not None else batch["attention_mask"].bool())
        if self.padding_free and refusal is None and bool(padding.any()):  # no padding, nothing to save: stay dense
            layout = pack_pairs(batch, self.shared_prompt)
        # an FSDP2 model runs it as a registered forward method (`register_pair_forward`): its root parameters gathered
        forward = getattr(model, "litforge_pair_forward", None) or partial(pair_forward, model)
        logprobs, logits, hidden, targets, rows, half = forward(batch, layout, self.lm_head_chunk)
        total = logprobs.new_zeros(2 * half).index_add(0, rows, logprobs)
        counts = torch.bincount(rows, minlength=2 * half)
        return PairLogprobs(total[:half], total[half:], counts[:half], counts[half:], targets, rows, batch.get("index"),
                            hidden, model.get_output_embeddings(), logits)

    def loss(self, policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor | None,
             ref_rejected: torch.Tensor | None, pair: PairLogprobs) -> torch.Tensor:
        """The objective's scalar loss from (B,) sequence log-probs (and `pair` for per-token terms)."""
        raise NotImplementedError

    def step(self, batch: dict[str, Any], stage: str, key: str, record: bool = True) -> torch.Tensor:
        """Forward, reference, loss and metrics for one batch of pairs (`record=False`: no metrics)."""
        ref_chosen = ref_rejected = None
        if self.reference is not None:  # first: its forward's memory is free again before the policy's graph exists
            ref_chosen, ref_rejected = self.reference.logprobs(self, batch, key)
        self.extra_values = {}
        pair = self.pair_logprobs(self.model, batch)
        loss = self.loss(pair.chosen, pair.rejected, ref_chosen, ref_rejected, pair)
        if not record:
            return loss
        chosen_ratio = pair.chosen.detach() - (ref_chosen if ref_chosen is not None else 0)
        rejected_ratio = pair.rejected.detach() - (ref_rejected if ref_rejected is not None else 0)
        values = {"reward_accuracy": (chosen_ratio > rejected_ratio).float(), "margin": chosen_ratio - rejected_ratio,
                  "logp_chosen": pair.chosen.detach(), "logp_rejected": pair.rejected.detach(),
                  "nll": -pair.chosen.detach() / pair.chosen_tokens.clamp(min=1), **self.extra_values}
        size = len(pair.chosen)
        for name, value in values.items():
            metric = self.metrics[f"{stage}_"][name]
            if stage == "train":
                metric(value)  # forward: this batch's value for on_step, accumulated for on_epoch
            else:
                metric.update(value)
            self.log(f"{stage}/{name}", metric, on_step=stage == "train", on_epoch=True, batch_size=size,
                     add_dataloader_idx=False)
        if stage == "train":
            self.log("train/loss", loss.detach(), prog_bar=True, batch_size=size)
        else:  # a mean over pairs, weighted by pairs: summed over ranks once, at the epoch's end
            self.metrics["val_"]["loss"].update(loss.detach(), size)
            self.log("val/loss", self.metrics["val_"]["loss"], prog_bar=True, on_epoch=True, batch_size=size,
                     add_dataloader_idx=False)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # token-budget batches (`max_tokens`) vary in pairs: `loss_scale` weighs every pair of the epoch alike
        return self.step(batch, "train", "train") * batch.get("loss_scale", 1.0)

    def on_validation_epoch_start(self) -> None:
        reset_metrics(self.metrics["val_"])  # fresh states a fit can update after a validate (see set_metrics)

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        pairs = len(batch["index"])
        keep = kept_rows(self, batch_idx, dataloader_idx, pairs)
        if len(keep) == 0:  # only a padding repeat: the forwards still run (sharded weights need every rank)
            self.step(batch, "val", f"val{dataloader_idx}", record=False)
            return
        if len(keep) < pairs:
            batch = select_pairs(batch, keep, pairs)
        self.step(batch, "val", f"val{dataloader_idx}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.reference is not None:
            checkpoint["reference_source"] = self.reference.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.reference is not None and "reference_source" in checkpoint:
            self.reference.load_state_dict(checkpoint["reference_source"])


def pair_forward(model: nn.Module, batch: dict[str, Any], layout: PackedPairs | dict[str, Any] | None,
                 lm_head_chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                                                             torch.Tensor, torch.Tensor, int]:
    """The model's part of `PreferenceModule.pair_logprobs`. `layout`: a padding-free row (`litforge.packing`),
    shared-prompt rows (`litforge.shared_prompt`) or None (2B padded rows). Returns, at the response positions only:
    the fp32 log-prob of each target (N,), the logits (N, vocab) or, with `lm_head_chunk`, None and the hidden states
    (N, hidden) instead, the targets (N,), each position's row among the 2B (rows >= B rejected), and B."""
    hidden = packed_hidden_states(model, layout) if isinstance(layout, PackedPairs) else None
    if hidden is not None:  # (N_real, hidden) -> the response positions
        hidden, targets, rows, half = hidden[layout.source], layout.targets, layout.rows, layout.half
    elif isinstance(layout, dict):  # B rows [prompt | chosen | rejected]
        hidden = shared_hidden_states(model, layout)  # (B, T, hidden)
        mask = layout["labels"] != IGNORE_INDEX
        pairs, columns = mask.nonzero(as_tuple=True)
        half = hidden.size(0)
        targets = layout["labels"][mask]
        rows = pairs + half * (layout["segment"][pairs, columns] == 2).long()
        hidden = hidden[pairs, layout["source"][pairs, columns]]
    else:  # 2B rows [prompt, response]; position t predicts token t+1
        hidden = model.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     use_cache=False).last_hidden_state  # (2B, T, hidden)
        targets = batch["labels"][:, 1:]
        mask = targets != IGNORE_INDEX
        rows, columns = mask.nonzero(as_tuple=True)
        half = hidden.size(0) // 2
        hidden, targets = hidden[rows, columns], targets[mask]  # (N, hidden): response positions only
    head = model.get_output_embeddings()
    if lm_head_chunk is not None:  # the (N x vocab) logits never exist whole, in forward or backward
        return chunked_token_logprobs(hidden, head, targets, lm_head_chunk), None, hidden, targets, rows, half
    logits = head(hidden)
    return token_logprobs(logits, targets), logits, None, targets, rows, half


def register_pair_forward(model: nn.Module) -> None:
    """Make `pair_forward` a forward method of an FSDP2-sharded model (`model.litforge_pair_forward`).

    It calls the decoder and the output layer directly, not the root's `forward`, so without this the parameters the
    root shard group holds (embeddings, final norm, output layer) would stay sharded and their gradients unreduced.
    """
    from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

    if isinstance(model, FSDPModule) and not hasattr(model, "litforge_pair_forward"):
        model.litforge_pair_forward = types.MethodType(pair_forward, model)
        register_fsdp_forward_method(model, "litforge_pair_forward")


def select_pairs(batch: dict[str, Any], keep: torch.Tensor, pairs: int) -> dict[str, Any]:
    """The pairs `keep` of a `PairCollator` batch: per-pair entries (B rows) and chosen-then-rejected ones (2B rows)."""
    both = torch.cat([keep, keep + pairs])
    picked = select_rows(batch, keep, pairs)
    return {key: value[both.to(value.device)] if torch.is_tensor(value) and value.dim() and value.size(0) == 2 * pairs
            else value for key, value in picked.items()}
