"""Objective hyperparameters are checked where they are declared: a bad value is a ConfigError naming its field."""

from __future__ import annotations

import pytest
from litforge.lightning_modules import (DPONLL, IterativeCringe, IterativeRPO, LiftDPO, MoECausalLM, PairwiseCringe,
                                        ReverseLM, SelfRewarding)

from litforge.errors import ConfigError

BAD = [
    (DPONLL, {"beta": -1}, "beta: must be > 0, got -1"),
    (DPONLL, {"beta": 0}, "beta: must be > 0, got 0"),
    (DPONLL, {"alpha": -0.5}, "alpha: must be >= 0, got -0.5"),
    (PairwiseCringe, {"alpha": -1}, "alpha: must be >= 0, got -1"),
    (PairwiseCringe, {"b": -2}, r"b: must be >= 0 \(a margin in nats\), got -2"),
    (PairwiseCringe, {"tau": 0}, "tau: must be > 0, got 0"),
    (PairwiseCringe, {"k": 0}, "k: must be >= 1, got 0"),
    (LiftDPO, {"max_new_tokens": 0}, "max_new_tokens: must be >= 1, got 0"),
    (LiftDPO, {"beta": -1}, "beta: must be > 0, got -1"),  # inherited from DPONLL
    (MoECausalLM, {"router_aux_loss_coef": -0.01}, "router_aux_loss_coef: must be >= 0, got -0.01"),
    (ReverseLM, {"reverse_probability": 1.5}, r"reverse_probability: must be in \[0, 1\] or null, got 1.5"),
    (ReverseLM, {"reverse_probability": -0.1}, r"reverse_probability: must be in \[0, 1\] or null, got -0.1"),
    # the iterative objectives' own settings (lightning_modules/iterative.py, iterative_preference.py)
    (IterativeRPO, {"candidates": 1}, "candidates: must be >= 2 to make a pair, got 1"),
    (IterativeRPO, {"temperature": -0.5}, "temperature: must be >= 0, got -0.5"),
    (IterativeRPO, {"top_p": 0.0}, r"top_p: must be in \(0, 1\], got 0.0"),
    (IterativeRPO, {"top_p": 1.5}, r"top_p: must be in \(0, 1\], got 1.5"),
    (IterativeRPO, {"max_new_tokens": 0}, "max_new_tokens: must be >= 1, got 0"),
    (IterativeRPO, {"stop": ["\n", ""]}, r"stop: must be non-empty strings .*, got \['\\n', ''\]"),
    (IterativeRPO, {"generation_batch_size": 0}, "generation_batch_size: must be >= 1, got 0"),
    (IterativeRPO, {"num_heldout": -1}, "num_heldout: must be >= 0, got -1"),
    (IterativeRPO, {"num_judge_heldout": -1}, "num_judge_heldout: must be >= 0, got -1"),
    (IterativeRPO, {"iterations": 0}, "iterations: must be >= 1, got 0"),
    (IterativeRPO, {"epochs_per_iteration": 0}, "epochs_per_iteration: must be >= 1, got 0"),
    (IterativeRPO, {"beta": 0}, "beta: must be > 0, got 0"),  # the loss's own settings still checked
    (IterativeCringe, {"candidates": 0}, "candidates: must be >= 2 to make a pair, got 0"),
    (IterativeCringe, {"iterations": -1}, "iterations: must be >= 1, got -1"),
    (IterativeCringe, {"k": 0}, "k: must be >= 1, got 0"),
    (SelfRewarding, {"temperature": -1.0}, "temperature: must be >= 0, got -1.0"),
    (SelfRewarding, {"top_p": 2.0}, r"top_p: must be in \(0, 1\], got 2.0"),
    (SelfRewarding, {"epochs_per_iteration": 0}, "epochs_per_iteration: must be >= 1, got 0"),
]


@pytest.mark.parametrize("cls, kwargs, message", BAD, ids=[f"{c.__name__}-{next(iter(k))}" for c, k, _ in BAD])
def test_bad_hyperparameter_is_a_config_error_naming_the_field(cls, kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}$") as caught:
        cls(**kwargs)
    assert caught.value.field == next(iter(kwargs))


@pytest.mark.parametrize("cls, kwargs", [(DPONLL, {"beta": 0.1, "alpha": 0}), (PairwiseCringe, {"b": 0, "k": 1}),
                                         (ReverseLM, {"reverse_probability": 0.0}), (MoECausalLM, {}),
                                         (IterativeRPO, {"candidates": 2, "temperature": 0.0, "top_p": 1.0,
                                                         "iterations": 1, "epochs_per_iteration": 1,
                                                         "max_new_tokens": 1, "stop": ["\n"]}),
                                         (SelfRewarding, {}), (IterativeCringe, {})])
def test_boundary_values_are_accepted(cls, kwargs):
    cls(**kwargs)


@pytest.mark.parametrize("lora, message", [({"rr": 4}, "lora: .*'rr'"),
                                           ({"r": 0}, "lora: r must be a positive integer")])
def test_a_bad_lora_mapping_fails_when_declared(lora, message):
    pytest.importorskip("peft", reason="peft is the lora extra")
    with pytest.raises(ConfigError, match=f"^{message}"):
        DPONLL(lora=lora)
