"""Position-encoding plugins that attach to Hugging Face attention."""

from litforge.plugins.position.absolute import Absolute
from litforge.plugins.position.base import PositionEncoding, from_config, load_pretrained, reattach
from litforge.plugins.position.cope import CoPE
from litforge.plugins.position.nope import NoPE
from litforge.plugins.position.rope import RoPE

__all__ = ["Absolute", "CoPE", "NoPE", "PositionEncoding", "RoPE", "from_config", "load_pretrained", "reattach"]
