"""The PositionEncoding contract."""

from __future__ import annotations

from transformers import PreTrainedModel


class PositionEncoding:
    """Changes how one model's attention sees positions; attaching to one model never changes another."""

    def attach(self, model: PreTrainedModel) -> None:
        """Modify `model` in place (register attention/mask functions, add parameters, record itself in the config)."""
        raise NotImplementedError
