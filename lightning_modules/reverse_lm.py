"""Reverse training (Golovneva et al. 2024, "Reverse Training to Nurse the Reversal Curse").

Algorithm: for every training sample x, also train on REVERSE(x), the same next-token loss on both:

    L = sum over x in batch, r in {x, REVERSE(x)} of token cross-entropy(r) / (labelled tokens of both)

so the model sees each fact in both directions and can answer "B -> A" after reading only "A -> B". The reversal
type (token, word, entity-preserving, random segment) is a `ReversalTransform` plugin named in YAML; None is the
standard-training baseline. Forward and reverse losses are logged apart (`train/forward_loss`,
`train/reverse_loss`); validation adds `exact_match` (every answer token greedy-correct) per validation set.

Departures from the paper:
    1. Reversal happens on the fly in `training_step`, on token ids, so one datamodule serves every transform.
    2. `reverse_probability` is an extra mode (one direction per sample, reversed with probability p) that keeps the
       compute of standard training; the paper doubles the data (the default, `reverse_probability: null`).
    3. The draws (direction, random segments) of each sample come from its own
       `random.Random(f"{reverse_seed}-{global_step}-{its token ids}")`, so a resumed run repeats them and they do not
       depend on which rank holds the sample or where in the batch it sits (2 ranks x batch B draw what 1 process x
       batch 2B draws). Two identical samples in one step draw alike.
    4. The training loss is the mean over the labelled tokens of all ranks' batches (`causal_lm.global_mean`).
"""

from __future__ import annotations

import random

import torch
from litforge.lightning_modules.causal_lm import CausalLM, exact_matches, global_mean
from litforge.plugins.reversal.base import ReversalTransform

from litforge.data import Collator, Sample
from litforge.errors import require
from litforge.losses import token_cross_entropy


class ReverseLM(CausalLM):
    """A causal LM trained on each sample forward and reversed.

    Args:
        transform: how samples are reversed; None trains forward only (standard training).
        reverse_probability: None trains on both directions of every sample (data doubled, as in the paper);
            p in [0, 1] instead reverses each sample with probability p.
        reverse_seed: seed of the reversal draws (combined with the global step).
        **kwargs: see `LitforgeModule` (backbone, tokenizer, optimizer, ...).
    """

    plugin_fields = ("transform",)

    def __init__(self, transform: ReversalTransform | None = None, reverse_probability: float | None = None,
                 reverse_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        require(reverse_probability is None or 0.0 <= reverse_probability <= 1.0, "reverse_probability",
                f"must be in [0, 1] or null, got {reverse_probability}")
        self.transform = transform
        self.reverse_probability = reverse_probability
        self.reverse_seed = reverse_seed
        if transform is not None:
            transform.read_tokenizer(self.tokenizer)
        self.collate = Collator(self.tokenizer.pad_token_id)

    def directions(self, batch: dict[str, torch.Tensor]) -> tuple[list[Sample], list[Sample]]:
        """Split a padded batch into the samples trained forward and the reversed samples."""
        lengths = batch["attention_mask"].sum(-1).tolist()
        rows = [{key: batch[key][row, :length].tolist() for key in ("input_ids", "labels", "entity") if key in batch}
                for row, length in enumerate(lengths)]
        if self.transform is None:
            return rows, []
        rngs = [self.sample_rng(row) for row in rows]
        if self.reverse_probability is None:
            forward, backward = rows, list(zip(rows, rngs))
        else:
            flags = [rng.random() < self.reverse_probability for rng in rngs]
            forward = [row for row, flag in zip(rows, flags) if not flag]
            backward = [(row, rng) for row, rng, flag in zip(rows, rngs, flags) if flag]
        reversed_rows = [self.transform.reverse_ids(row["input_ids"], row["labels"], row.get("entity"), rng)
                         for row, rng in backward]
        return forward, reversed_rows

    def sample_rng(self, row: Sample) -> random.Random:
        """The draws of one sample at this step: seeded by the sample's tokens, not by its rank or batch position."""
        return random.Random(f"{self.reverse_seed}-{self.global_step}-{','.join(map(str, row['input_ids']))}")

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        forward, backward = self.directions(batch)
        combined = self.collate([{"input_ids": s["input_ids"], "labels": s["labels"]} for s in forward + backward])
        combined = {key: value.to(self.device) for key, value in combined.items()}
        logits = self(combined["input_ids"], combined["attention_mask"])
        split = len(forward)
        forward_loss, forward_count = token_cross_entropy(logits[:split], combined["labels"][:split])
        reverse_loss, reverse_count = token_cross_entropy(logits[split:], combined["labels"][split:])
        count = forward_count + reverse_count
        loss = (forward_loss * forward_count + reverse_loss * reverse_count) / count.clamp(min=1)
        size = len(forward) + len(backward)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        if forward:
            self.log("train/forward_loss", forward_loss, batch_size=len(forward))
        if backward:
            self.log("train/reverse_loss", reverse_loss, batch_size=len(backward))
        return global_mean(self, loss, count)

    def score(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        super().score(logits, batch, dataloader_idx)
        self.log_per_set("exact_match", exact_matches(logits, batch["labels"]), dataloader_idx)
