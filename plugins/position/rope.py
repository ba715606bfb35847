"""RoPE (Su et al. 2021): the backbone's own rotary embedding, kept as it is; named so YAML can choose it."""

from __future__ import annotations

from litforge.plugins.position.base import PositionEncoding
from transformers import PreTrainedModel


class RoPE(PositionEncoding):
    """Keep the backbone's rotary position embedding (the default of Llama, Mistral, Qwen2 ...)."""

    def attach(self, model: PreTrainedModel) -> None:
        self.claim(model)
        self.record(model)
