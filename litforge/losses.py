"""Training losses as pure functions of logits, labels and log-probabilities (no module state).

Conventions: `labels` hold the token each position should predict *before* the causal shift (as Hugging Face
models take them), with -100 on tokens that carry no loss (prompt, padding).

`chunked_token_logprobs` takes the LM head into the function, so that large vocabularies never hold the whole
(tokens x vocab) logits, the idea of Liger Kernel's fused linear cross-entropy and of Cut Cross-Entropy (Wijmans et al.
2024, "Cut Your Losses in Large-Vocabulary Language Models"). Departures:
1. Plain PyTorch, chunks of rows (no custom kernel): each chunk's (chunk x vocab) logits exist, one chunk at a time.
2. The backward recomputes each chunk's logits (one more head matmul per chunk) instead of computing gradients in
   the forward as Liger does: the log-probs stay an ordinary differentiable value that any loss can consume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


# --- preference objectives (DPO, DPO+NLL, Cringe, pairwise Cringe) ---


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per row: logits (N, vocab), targets (N,) -> (N,), computed in fp32."""
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1).float()
    return picked - torch.logsumexp(logits.float(), dim=-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO (Rafailov et al. 2023, eq. 7), per pair; inputs are summed response log-probs, each (B,).

    L = -log sigma(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))])

    Returns (loss (B,), chosen reward (B,), rejected reward (B,)), rewards = beta * (log pi - log pi_ref), detached.
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    return loss, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def dpo_nll_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                 ref_rejected: torch.Tensor, chosen_length: torch.Tensor, beta: float = 0.1, alpha: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO + NLL of Iterative Reasoning Preference Optimization (Pang et al. 2024, eq. 1), per pair.

    L = L_DPO + alpha * NLL(y_w|x) / |y_w|,  NLL(y_w|x) = -log pi(y_w|x) summed over the |y_w| chosen tokens.

    Returns (loss (B,), length-normalised chosen NLL (B,)); alpha = 0 is plain DPO.
    """
    loss, _, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    nll = -policy_chosen / chosen_length.clamp(min=1)
    return loss + alpha * nll, nll


def cringe_loss(logits: torch.Tensor, negatives: torch.Tensor, k: int = 5,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary Cringe loss (Adolphs et al. 2022; ParlAI projects/cringe) at each token of a negative sequence.

    Take the top-(k+1) logits, drop the negative token (or, when it is not among them, the (k+1)-th), sample a
    positive token s+ from the softmax over the remaining k, and contrast it with the negative token's logit s-:

    L_t = -log( exp(s+) / (exp(s+) + exp(s-)) )

    logits (N, vocab), negatives (N,) -> per-token loss (N,). The sample is never the negative token.
    """
    values, indices = logits.topk(k + 1, dim=-1)  # (N, k+1)
    drop = indices == negatives.unsqueeze(-1)
    drop[:, -1] |= ~drop.any(-1)  # the negative is outside the top-(k+1): keep the top k
    candidates = values.detach().masked_fill(drop, float("-inf")).float()
    sampled = torch.multinomial(candidates.softmax(-1), 1, generator=generator)  # (N, 1), never a dropped slot
    positive = values.gather(-1, sampled).squeeze(-1)
    negative = logits.gather(-1, negatives.unsqueeze(-1)).squeeze(-1)
    pair = torch.stack([positive, negative], -1).float()
    return F.cross_entropy(pair, torch.zeros_like(negatives), reduction="none")


def pairwise_cringe_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, chosen_nll: torch.Tensor,
                         rejected_cringe: torch.Tensor, alpha: float = 1.0, b: float = 2.0, tau: float = 1.0,
                         stop_gate_gradient: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise Cringe (Xu et al. 2023, sec. 2), per pair.

    L = NLL(y_w) + alpha * g * Cringe(y_l),  g = sigma((b - M) / tau),  M = log P(y_w|x) - log P(y_l|x)

    policy_* are summed response log-probs (B,); chosen_nll and rejected_cringe are per-sequence token means (B,).
    The gate switches the Cringe term off once the chosen response beats the rejected one by more than b.
    Returns (loss (B,), gate (B,)); with `stop_gate_gradient` no gradient flows through g.
    """
    gate = torch.sigmoid((b - (policy_chosen - policy_rejected)) / tau)
    if stop_gate_gradient:
        gate = gate.detach()
    return chosen_nll + alpha * gate * rejected_cringe, gate


class _ChunkedTokenLogprobs(torch.autograd.Function):
    """log softmax(hidden @ W^T + b)[target] computed `chunk` rows at a time; backward recomputes each chunk's logits.

    Saved for backward: hidden, weight, bias, targets and the (N,) fp32 log-normalisers, never the logits. With
    g = d loss / d logprob (N,), p = softmax(logits) and e_y the target's one-hot, d logprob / d logits = e_y - p, so
    per chunk: G = g * (e_y - p) (chunk, vocab); d hidden = G @ W, d W += G^T @ hidden, d b += sum of G's rows.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        logprobs = hidden.new_empty(hidden.size(0), dtype=torch.float32)
        normalisers = torch.empty_like(logprobs)
        for start in range(0, hidden.size(0), chunk):
            rows = slice(start, start + chunk)
            logits = F.linear(hidden[rows], weight, bias).float()  # (chunk, vocab), the only vocab-wide tensor
            normalisers[rows] = torch.logsumexp(logits, dim=-1)
            logprobs[rows] = logits.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1) - normalisers[rows]
        ctx.save_for_backward(hidden, weight, bias, targets, normalisers)
        ctx.chunk = chunk
        return logprobs

    @staticmethod
    def backward(ctx, grad_logprobs):
        hidden, weight, bias, targets, normalisers = ctx.saved_tensors
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need_bias else None
        for start in range(0, hidden.size(0), ctx.chunk):
            rows = slice(start, start + ctx.chunk)
            grad_logits = F.linear(hidden[rows], weight, bias).float()  # recomputed logits (chunk, vocab)
            grad_logits.sub_(normalisers[rows].unsqueeze(-1)).exp_()  # p
            grad_logits.mul_(-grad_logprobs[rows].unsqueeze(-1))  # -g p
            grad_logits.scatter_add_(-1, targets[rows].unsqueeze(-1), grad_logprobs[rows].unsqueeze(-1).float())
            grad_logits = grad_logits.to(hidden.dtype)  # the dtype the unchunked logits' gradient would have
            if need_hidden:
                grad_hidden[rows] = grad_logits @ weight
            if need_weight and grad_weight.dtype == grad_logits.dtype:
                grad_weight.addmm_(grad_logits.t(), hidden[rows])  # in place: no (vocab, H) temporary per chunk
            elif need_weight:
                grad_weight += grad_logits.t() @ hidden[rows]
            if need_bias:
                grad_bias += grad_logits.sum(0)
        grad_weight = grad_weight.to(weight.dtype) if need_weight else None
        grad_bias = grad_bias.to(bias.dtype) if need_bias else None
        return grad_hidden, grad_weight, grad_bias, None, None


def chunked_token_logprobs(hidden: torch.Tensor, head: nn.Module | torch.Tensor, targets: torch.Tensor,
                           chunk: int = 1024) -> torch.Tensor:
    """`token_logprobs(head(hidden), targets)` without ever holding the (N, vocab) logits, in forward or backward.

    The language-model head runs on `chunk` rows of `hidden` at a time; the backward pass recomputes each chunk's
    logits instead of keeping them, so peak memory holds one (chunk, vocab) block (plus its softmax) instead of the
    whole (N, vocab) logits and their gradient. Values and gradients (to hidden, head weight and bias) are those of
    the unchunked computation; the price is one extra head matmul per chunk in the backward pass.

    Args:
        hidden: (N, H) final hidden states at the positions that are scored.
        head: the LM head: an `nn.Linear`-like module (`weight` (vocab, H), optional `bias`) or its weight tensor
            (e.g. tied input embeddings' `weight`).
        targets: (N,) the token each position predicts (valid ids, no -100).
        chunk: rows per block of logits.

    Returns:
        (N,) fp32 log-probs.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    weight = head if isinstance(head, torch.Tensor) else head.weight
    bias = None if isinstance(head, torch.Tensor) else getattr(head, "bias", None)
    return _ChunkedTokenLogprobs.apply(hidden, weight, bias, targets, chunk)
