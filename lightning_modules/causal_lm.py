"""Causal language modelling: pretraining on all tokens, or SFT with the loss on response tokens only.

Which tokens carry loss is decided by the data (labels of -100 are skipped), so one module serves both.

Data parallel: the training loss is the mean over the labelled tokens of all ranks' batches together (`global_mean`),
so 2 ranks x batch B take the step of 1 process x batch 2B even when the ranks hold different numbers of tokens (a
mean of per-rank means would weight a short batch's tokens more). Validation leaves out a distributed sampler's
padding repeats (`kept_rows`), so every sample counts once.
"""

from __future__ import annotations

import torch
from litforge.lightning_modules.set_metrics import PerSetMetrics, kept_rows, select_rows

from litforge.data import IGNORE_INDEX
from litforge.losses import sequence_logprobs, shift, token_cross_entropy
from litforge.module import LitforgeModule


class CausalLM(PerSetMetrics, LitforgeModule):
    """Next-token prediction; validation reports loss, perplexity and next-token accuracy per validation set.

    Args: see `LitforgeModule`.
    """

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss, count = token_cross_entropy(logits, batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0))
        return global_mean(self, loss, count)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        rows = batch["input_ids"].size(0)
        keep = kept_rows(self, batch_idx, dataloader_idx, rows)
        if len(keep) == 0:  # only a padding repeat: the forward still runs (sharded weights need every rank)
            self(batch["input_ids"], batch["attention_mask"])
            return
        if len(keep) < rows:
            batch = select_rows(batch, keep, rows)
        self.score(self(batch["input_ids"], batch["attention_mask"]), batch, dataloader_idx)

    def score(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        """Update and log one evaluation set's metrics from the batch's logits (subclasses add their own)."""
        loss, count = token_cross_entropy(logits, batch["labels"])
        logits, targets = shift(logits, batch["labels"])
        labelled = targets != IGNORE_INDEX
        correct = (logits.argmax(-1) == targets)[labelled].float()
        self.log_per_set("loss", loss, dataloader_idx, weight=count, prog_bar=True)
        self.log_per_set("acc", correct, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        for index in range(len(self.set_metrics["loss"]) if "loss" in self.set_metrics else 0):
            loss = self.trainer.callback_metrics.get(f"{self.val_prefix(index)}/loss")
            if loss is not None:
                self.log(f"{self.val_prefix(index)}/ppl", torch.exp(loss), add_dataloader_idx=False, sync_dist=True)

    test_step = validation_step

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Per-sample summed log-probability of the labelled tokens and their count (for scoring data)."""
        logprobs, counts = sequence_logprobs(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])
        return {"logprob": logprobs, "tokens": counts}


def global_mean(module, loss: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """A per-rank token mean rescaled so that data parallel's gradient average is the mean over all ranks' tokens.

    loss_r * count_r * world / sum_r count_r: averaged over ranks, the per-token sum over all of them divided by their
    total count. One process (or equal counts on every rank): `loss` unchanged.
    """
    trainer = module._trainer
    world = trainer.world_size if trainer is not None else 1
    if world == 1:
        return loss
    total = trainer.strategy.reduce(count.detach().float().clone(), reduce_op="sum")
    return loss * (count * world / total.clamp(min=1))


def exact_matches(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per example with a labelled token, 1.0 when every labelled token is the argmax (greedy decoding would write the
    answer exactly), else 0.0; shape (examples with labels,). Teacher-forced, from one forward."""
    logits, targets = shift(logits, labels)
    labelled = targets != IGNORE_INDEX  # (batch, T - 1)
    hit = ((logits.argmax(-1) == targets) | ~labelled).all(-1)
    return hit[labelled.any(-1)].float()
