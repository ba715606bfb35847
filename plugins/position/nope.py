"""NoPE (Kazemnejad et al. 2023): no position encoding; a causal decoder infers order from its mask alone."""

from __future__ import annotations

from litforge.plugins.position.base import PositionEncoding, disable_rotary, rotary_modules
from transformers import PreTrainedModel


class NoPE(PositionEncoding):
    """Turn the backbone's rotary embedding into the identity; attention (SDPA or eager) is left unchanged."""

    def attach(self, model: PreTrainedModel) -> None:
        rotary_modules(model)  # refuse before changing anything
        self.claim(model)
        disable_rotary(model)
        self.record(model)
