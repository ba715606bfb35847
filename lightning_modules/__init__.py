"""One LightningModule per objective. Importing this package makes their short names usable in YAML."""

from litforge.lightning_modules.causal_lm import CausalLM

__all__ = ["CausalLM"]
