"""A frozen deep copy of the policy as the reference, run beside it every step (saved in the checkpoint)."""

from __future__ import annotations

import copy

import torch

from litforge.plugins.reference.base import ReferenceSource, reference_mode


class FrozenCopy(ReferenceSource):
    """A frozen deep copy of the policy, registered as `module.reference_model` (so it moves and is checkpointed)."""

    def bind(self, module):
        if getattr(module, "reference_model", None) is None:
            module.reference_model = freeze(copy.deepcopy(module.model))

    def logprobs(self, module, batch, key):
        module.reference_model.eval()  # Lightning puts every submodule in train mode at the start of fit
        with reference_mode(module.reference_model):
            out = module.pair_logprobs(module.reference_model, batch)
        return out.chosen.clone(), out.rejected.clone()  # clones are ordinary tensors, usable next to the policy's

    def reanchor(self, module):
        module.reference_model.load_state_dict(module.model.state_dict())
        freeze(module.reference_model)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no gradients."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
