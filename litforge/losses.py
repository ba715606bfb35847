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


def load_balancing_loss(router_logits: torch.Tensor, top_k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Switch-style router load-balancing loss of a mixture of experts (BTX §2.3, after Fedus et al. 2022).

    L = N * sum_i f_i * P_i, where over the tokens of every layer f_i is the fraction of the top-k routing slots
    sent to expert i (sum_i f_i = 1) and P_i the mean router probability softmax(W_r x)_i. L = 1 when routing is
    uniform and grows to N when one expert takes everything; the caller multiplies it by the coefficient alpha.
    (Hugging Face's `load_balancing_loss_func` lets f sum to k, so its value is k times this one.)

    Args:
        router_logits: (layers, tokens, N) router logits W_r x (a tuple of per-layer (tokens, N) is stacked).
        top_k: experts each token is sent to.
        mask: (tokens,) 1 for real tokens, 0 for padding; None counts every token.
    """
    if isinstance(router_logits, (tuple, list)):
        router_logits = torch.stack(list(router_logits))
    num_experts = router_logits.size(-1)
    probs = torch.softmax(router_logits.float(), dim=-1)  # (layers, tokens, N)
    chosen = torch.topk(probs, top_k, dim=-1).indices
    slots = F.one_hot(chosen, num_experts).sum(-2).float()  # (layers, tokens, N): 1 where routed
    weight = torch.ones(probs.shape[:2], device=probs.device) if mask is None else mask.float().expand(probs.shape[:2])
    tokens = weight.sum().clamp(min=1)
    fraction = (slots * weight.unsqueeze(-1)).sum((0, 1)) / (tokens * top_k)  # f_i
    mean_prob = (probs * weight.unsqueeze(-1)).sum((0, 1)) / tokens  # P_i
    return num_experts * (fraction * mean_prob).sum()
