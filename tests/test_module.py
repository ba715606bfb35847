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


def test_lazy_default_is_lazy_instance_made_where_it_is_called():
    """`litforge.lazy.lazy_default` gives what jsonargparse's `lazy_instance` gives from the same module (the lazy
    class is registered on the caller's module and shared), and puts `inspect.stack` back."""
    import inspect

    from jsonargparse import lazy_instance

    from litforge.backbones import TinyModel
    from litforge.lazy import lazy_default

    real = inspect.stack
    made = lazy_default(TinyModel, hidden_size=48)
    assert inspect.stack is real
    reference = lazy_instance(TinyModel, hidden_size=48)
    assert type(made) is type(reference) and type(made).__module__ == __name__
    assert made.lazy_get_init_data() == reference.lazy_get_init_data()
    assert made.lazy_get_init_data().init_args.hidden_size == 48 and isinstance(made, TinyModel)
