"""Preference losses against numbers worked out by hand (not by the code under test)."""

import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from litforge.losses import (
    chunked_token_logprobs,
    cringe_loss,
    dpo_loss,
    dpo_nll_loss,
    pairwise_cringe_loss,
    token_logprobs,
)


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_token_logprobs_is_log_softmax_at_the_target():
    # softmax([0, log 3]) = [1/4, 3/4]
    assert torch.allclose(token_logprobs(t(0.0, math.log(3)).unsqueeze(0), torch.tensor([1])), t(math.log(0.75)))


def test_dpo_by_hand():
    # chosen log-ratio -1 - (-2) = 1, rejected -3 - (-2) = -1, beta 0.5 -> z = 0.5 * 2 = 1, L = log(1 + e^-1)
    loss, chosen_reward, rejected_reward = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.5)
    assert torch.allclose(loss, t(0.3132617))
    assert torch.allclose(chosen_reward, t(0.5)) and torch.allclose(rejected_reward, t(-0.5))


def test_dpo_with_policy_equal_reference_is_log_2_and_swapping_flips_the_margin():
    policy_chosen, policy_rejected = t(-5.0, -7.0), t(-6.0, -2.0)
    loss, _, _ = dpo_loss(policy_chosen, policy_rejected, policy_chosen, policy_rejected, beta=0.1)
    assert torch.allclose(loss, torch.full((2,), math.log(2)))
    ref_chosen, ref_rejected = t(-4.0, -8.0), t(-6.5, -1.0)
    _, chosen, rejected = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1)
    _, chosen_swapped, rejected_swapped = dpo_loss(policy_rejected, policy_chosen, ref_rejected, ref_chosen, beta=0.1)
    assert torch.allclose(chosen - rejected, -(chosen_swapped - rejected_swapped))
    assert not torch.allclose(chosen - rejected, torch.zeros(2))


def test_dpo_nll_adds_length_normalised_nll():
    # same DPO term as above (0.3132617); NLL = 1 / 4 tokens = 0.25, alpha 2 -> + 0.5
    loss, nll = dpo_nll_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), chosen_length=torch.tensor([4]), beta=0.5, alpha=2.0)
    assert torch.allclose(nll, t(0.25)) and torch.allclose(loss, t(0.8132617))
    # the same summed log-prob over twice the tokens is half the NLL
    _, nll_long = dpo_nll_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), chosen_length=torch.tensor([8]))
    assert torch.allclose(nll_long, t(0.125))
    # alpha 0 is plain DPO
    plain, _ = dpo_nll_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), chosen_length=torch.tensor([4]), beta=0.5, alpha=0.0)
    assert torch.allclose(plain, t(0.3132617))


def test_dpo_nll_gradient_of_nll_term():
    policy_chosen = t(-4.0).requires_grad_(True)
    # policy = reference: dL_dpo/d policy_chosen = -beta * sigma(0) = -0.05; NLL term: -alpha / |y_w| = -1/4
    loss, _ = dpo_nll_loss(policy_chosen, t(-3.0), t(-4.0), t(-3.0), torch.tensor([4]), beta=0.1, alpha=1.0)
    loss.sum().backward()
    assert torch.allclose(policy_chosen.grad, t(-0.05 - 0.25))


def test_cringe_by_hand_with_k_1():
    logits = t(3.0, 2.0, 1.0, 0.0, -1.0).repeat(2, 1)
    # row 0: negative = token 0 (top-1); top-2 minus it leaves token 1: log(1 + e^(3 - 2))
    # row 1: negative = token 4, not in the top-2: drop the 2nd, positive = token 0: log(1 + e^(-1 - 3))
    loss = cringe_loss(logits, torch.tensor([0, 4]), k=1)
    assert torch.allclose(loss, t(math.log(1 + math.e), math.log(1 + math.exp(-4))))


def test_cringe_never_samples_the_negative_token():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 7, generator=generator)
    negatives = logits.argsort(-1, descending=True)[torch.arange(2000), torch.randint(0, 3, (2000,))]
    loss = cringe_loss(logits, negatives, k=3, generator=generator)
    # a sampled negative would give the pair [s-, s-] and a loss of exactly log 2; every loss must instead be
    # log(1 + exp(s- - s+)) for some other token among the top 4
    s_neg = logits.gather(1, negatives[:, None])
    top_values, top_ids = logits.topk(4, dim=-1)
    allowed = torch.log1p(torch.exp(s_neg - top_values)).masked_fill(top_ids == negatives[:, None], float("nan"))
    matches = (allowed - loss[:, None]).abs() < 1e-5
    assert matches.any(-1).all()
    # and sampling does use more than the best candidate
    assert (loss > torch.nanquantile(allowed, 0.0, dim=-1) + 1e-4).any()


def test_cringe_gradient_lowers_the_negative_logit():
    logits = torch.randn(5, 11).requires_grad_(True)
    negatives = logits.detach().argmax(-1)
    cringe_loss(logits, negatives, k=4).sum().backward()
    assert (logits.grad[torch.arange(5), negatives] > 0).all()  # descent moves the negative logit down
    stepped = logits.detach() - 0.5 * logits.grad
    assert (stepped[torch.arange(5), negatives] < logits.detach()[torch.arange(5), negatives]).all()


def test_pairwise_cringe_by_hand_and_gate():
    # M = -1 - (-3) = 2 = b -> gate sigma(0) = 0.5; L = 0.5 + 1 * 0.5 * 2
    loss, gate = pairwise_cringe_loss(t(-1.0), t(-3.0), chosen_nll=t(0.5), rejected_cringe=t(2.0), b=2.0, tau=1.0)
    assert torch.allclose(gate, t(0.5)) and torch.allclose(loss, t(1.5))
    _, gate = pairwise_cringe_loss(t(-30.0, -1.0), t(-1.0, -40.0), t(0.0, 0.0), t(1.0, 1.0), b=2.0, tau=1.0)
    assert gate[0] > 0.999 and gate[1] < 1e-6  # margin << b: gate open; margin >> b: closed


def test_pairwise_cringe_gate_gradient_flag():
    for stop, expected in ((True, 0.0), (False, -0.5)):
        chosen = t(-1.0).requires_grad_(True)
        nll = t(0.5).requires_grad_(True)
        loss, _ = pairwise_cringe_loss(chosen, t(-3.0), nll, t(2.0), alpha=1.0, b=2.0, tau=1.0,
                                       stop_gate_gradient=stop)
        loss.sum().backward()
        # d/dM [alpha * c * sigma((b - M)/tau)] = -alpha * c * g (1 - g) / tau = -1 * 2 * 0.25 = -0.5
        grad = chosen.grad if chosen.grad is not None else torch.zeros(1)
        assert torch.allclose(grad, t(expected))


def head_and_inputs(bias, rows=10, hidden_size=6, vocab=13, seed=0):
    torch.manual_seed(seed)
    head = nn.Linear(hidden_size, vocab, bias=bias).double()
    hidden = torch.randn(rows, hidden_size, dtype=torch.float64, requires_grad=True)
    return head, hidden, torch.randint(vocab, (rows,))


def gradients(logprobs, weights, *inputs):
    return torch.autograd.grad((logprobs * weights).sum(), inputs)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 10, 64])  # one row, uneven chunks, exactly N, more than N
def test_chunked_token_logprobs_equal_the_whole_head_in_value_and_gradient(bias, chunk):
    head, hidden, targets = head_and_inputs(bias)
    weights = torch.linspace(-1, 2, hidden.size(0), dtype=torch.float64)  # a loss that weighs rows differently
    params = [hidden, head.weight] + ([head.bias] if bias else [])
    whole = token_logprobs(head(hidden), targets)
    chunked = chunked_token_logprobs(hidden, head, targets, chunk=chunk)
    assert chunked.dtype == torch.float32 and chunked.shape == (10,)
    assert torch.allclose(chunked, whole.float(), atol=1e-5)
    for ours, theirs in zip(gradients(chunked, weights, *params), gradients(whole, weights, *params)):
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_chunked_token_logprobs_with_tied_embeddings_accumulate_both_uses_of_the_weight():
    torch.manual_seed(1)
    embedding = nn.Embedding(11, 4)
    tokens, targets = torch.randint(11, (7,)), torch.randint(11, (7,))
    whole = token_logprobs(embedding(tokens) @ embedding.weight.t(), targets).sum()
    (expected,) = torch.autograd.grad(whole, embedding.weight)
    chunked = chunked_token_logprobs(embedding(tokens), embedding.weight, targets, chunk=3).sum()
    (ours,) = torch.autograd.grad(chunked, embedding.weight)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_chunked_token_logprobs_of_bf16_states_match_the_bf16_head():
    torch.manual_seed(2)
    head = nn.Linear(8, 50).bfloat16()
    hidden = torch.randn(9, 8, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(50, (9,))
    whole, chunked = token_logprobs(head(hidden), targets), chunked_token_logprobs(hidden, head, targets, chunk=4)
    assert torch.allclose(chunked, whole)  # the same bf16 logits, normalised in fp32
    ours = torch.autograd.grad(chunked.sum(), (hidden, head.weight))
    theirs = torch.autograd.grad(whole.sum(), (hidden, head.weight))
    assert ours[0].dtype == torch.bfloat16 and ours[1].dtype == torch.bfloat16
    for a, b in zip(ours, theirs):
        assert torch.allclose(a.float(), b.float(), atol=2e-2)


class LargestTensor(TorchDispatchMode):
    """Records the most elements of any tensor an aten op produces while active (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(value, torch.Tensor):
                self.numel = max(self.numel, value.numel())
        return out


def test_chunked_token_logprobs_never_make_a_tensor_of_all_rows_by_the_vocabulary():
    rows, vocab, chunk = 64, 1000, 8
    head = nn.Linear(16, vocab, bias=False)
    hidden = torch.randn(rows, 16, requires_grad=True)
    targets = torch.randint(vocab, (rows,))
    with LargestTensor() as whole:
        token_logprobs(head(hidden), targets).sum().backward()
    with LargestTensor() as chunked:
        chunked_token_logprobs(hidden, head, targets, chunk=chunk).sum().backward()
    assert whole.numel == rows * vocab
    assert chunked.numel == 16 * vocab  # the weight's gradient; the largest logits block is chunk x vocab
