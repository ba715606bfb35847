"""Training losses as pure functions of logits, labels and log-probabilities (no module state).

Conventions: `labels` hold the token each position should predict *before* the causal shift (as Hugging Face
models take them), with -100 on tokens that carry no loss (prompt, padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from litforge.data import IGNORE_INDEX


def shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align position t's logits with token t+1: (batch, T-1, vocab) logits and (batch, T-1) targets."""
    return logits[:, :-1], labels[:, 1:]


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token cross-entropy over labelled tokens, and the number of those tokens.

    L = -(1/N) * sum_t log p(x_{t+1} | x_{<=t}) over the N positions whose label is not -100.
    """
    logits, targets = shift(logits, labels)
    count = (targets != IGNORE_INDEX).sum()
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    return loss / count.clamp(min=1), count


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each sequence's labelled tokens, and how many tokens were summed.

    log pi(y|x) = sum_t log softmax(logits_t)[y_{t+1}] over response tokens; returns ((batch,), (batch,)).
    """
    logits, targets = shift(logits, labels)
    mask = targets != IGNORE_INDEX
    # gather before normalising: logsumexp over the vocabulary is the only (batch, T, vocab) reduction needed
    picked = torch.gather(logits, 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1).float()
    token_logprobs = picked - torch.logsumexp(logits.float(), dim=-1)
    return (token_logprobs * mask).sum(-1), mask.sum(-1)
