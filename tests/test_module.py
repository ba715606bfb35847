"""LitforgeModule: plugin objects stay out of the saved hyperparameters (each class names its own in
`plugin_fields`); plain settings stay in."""

from __future__ import annotations

import pytest
from litforge.lightning_modules import DPONLL, IterativeRPO, LiftDPO, ReverseLM
from litforge.plugins.judges import LengthJudge
from litforge.plugins.reference import FrozenCopy
from litforge.plugins.reversal import WordReversal

INJECTED = {"backbone", "tokenizer", "position", "optimizer", "scheduler"}


@pytest.mark.parametrize("module, plugins, plain", [
    (lambda: DPONLL(reference=FrozenCopy(), beta=0.2), {"reference"}, {"beta": 0.2, "alpha": 1.0}),
    (lambda: LiftDPO(judge=LengthJudge(), max_new_tokens=5), {"judge", "reference"}, {"max_new_tokens": 5}),
    (lambda: ReverseLM(transform=WordReversal(), reverse_seed=3), {"transform"}, {"reverse_seed": 3}),
    (lambda: IterativeRPO(iterations=2, candidates=3), {"judge", "pair_rule", "heldout_judge", "reference"},
     {"iterations": 2, "candidates": 3}),
], ids=["DPONLL", "LiftDPO", "ReverseLM", "IterativeRPO"])
def test_plugins_are_dropped_and_settings_kept(module, plugins, plain):
    module = module()
    for recorded in (module.hparams, module.hparams_initial):
        assert not (plugins | INJECTED) & set(recorded)
        assert plain.items() <= dict(recorded).items()
