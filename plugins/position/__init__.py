"""Position-encoding plugins that attach to Hugging Face attention."""

from litforge.plugins.position.base import PositionEncoding

__all__ = ["PositionEncoding"]
