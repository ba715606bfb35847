"""The causal-LM losses against numbers worked out by hand."""

import math

import torch

from litforge.losses import sequence_logprobs, token_cross_entropy


def test_token_cross_entropy_matches_hand_computation():
    # vocab of 2; position 0 predicts token at 1 (label 1), position 1 predicts token at 2 (ignored)
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, 1.0], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 1, -100]])
    loss, count = token_cross_entropy(logits, labels)
    # p(token 1 | pos 0) = 3 / (1 + 3) = 0.75
    assert count.item() == 1
    assert math.isclose(loss.item(), -math.log(0.75), rel_tol=1e-6)


def test_token_cross_entropy_averages_over_labelled_tokens_only():
    logits = torch.zeros(1, 4, 4)  # uniform over 4 tokens: every token costs log 4
    labels = torch.tensor([[7, 0, 3, -100]])  # the first label is never predicted (nothing precedes it)
    loss, count = token_cross_entropy(logits, labels)
    assert count.item() == 2
    assert math.isclose(loss.item(), math.log(4), rel_tol=1e-6)


def test_sequence_logprobs_sum_response_tokens():
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(4.0), 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    total, count = sequence_logprobs(logits, labels)
    assert count.tolist() == [2]
    assert math.isclose(total.item(), math.log(0.75) + math.log(0.8), rel_tol=1e-6)
