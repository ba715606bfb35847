"""One LightningModule per objective. Importing this package makes their short names usable in YAML."""

from litforge.lightning_modules.causal_lm import CausalLM
from litforge.lightning_modules.moe_lm import MoECausalLM

__all__ = ["CausalLM"]
__all__ += ["MoECausalLM"]
