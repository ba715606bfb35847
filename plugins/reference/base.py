"""The reference-source contract: where a preference objective's reference log-probs come from.

Reference forwards run under `torch.inference_mode` (no autograd bookkeeping at all) over the same shared-prompt
rows as the policy (`PreferenceModule.pair_logprobs`); an FSDP2-sharded model runs them under `torch.no_grad` instead
(`reference_mode`), as the parameters it gathers would otherwise become inference tensors that training cannot update.
Every source supports `reanchor(module)`: make the reference equal the current policy (iterative objectives call it
at every iteration boundary) and forget cached log-probs.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule


class ReferenceSource:
    """Supplies reference log-probs (log pi_ref(chosen|x), log pi_ref(rejected|x)) for a batch of pairs.

    `module` is the preference objective (lightning_modules/preference.py): its `model` and `pair_logprobs` are used.
    """

    def bind(self, module: LightningModule) -> None:
        """Tie the source to the policy once it is built (in `configure_model`): make or check what it needs."""

    def logprobs(self, module: LightningModule, batch: dict[str, Any], key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference (chosen, rejected) sequence log-probs, each (B,); `key` names the split ("train", "val0")."""
        raise NotImplementedError

    def reanchor(self, module: LightningModule) -> None:
        """Make the reference equal to the current policy and invalidate cached log-probs."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must remember about the source (beyond module weights)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output."""


def reference_mode(model: torch.nn.Module):
    """The no-gradient context of a reference forward: `torch.inference_mode`, or `torch.no_grad` for an FSDP2 model."""
    from torch.distributed.fsdp import FSDPModule

    return torch.no_grad() if isinstance(model, FSDPModule) else torch.inference_mode()
