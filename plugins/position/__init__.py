"""Position-encoding plugins that attach to Hugging Face attention (a saved model re-attaches its own on load:
`litforge.checkpoint.reattach`, `litforge.checkpoint.load_pretrained`)."""

from litforge.plugins.position.absolute import Absolute
from litforge.plugins.position.base import PositionEncoding
from litforge.plugins.position.cope import CoPE
from litforge.plugins.position.nope import NoPE
from litforge.plugins.position.rope import RoPE

__all__ = ["Absolute", "CoPE", "NoPE", "PositionEncoding", "RoPE"]
