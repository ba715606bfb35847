"""With a LoRA policy (peft), the reference is the base model: the same forward with the adapters switched off."""

from __future__ import annotations

import torch
from litforge.plugins.reference.base import ReferenceSource, reference_mode

from litforge.errors import ConfigError


class AdaptersDisabled(ReferenceSource):
    """The policy's own forward with its LoRA adapters switched off; no second model in memory.

    `reanchor` merges each adapter's update into its base weight and zeroes the adapter's B matrix, so policy and
    reference both equal the current policy and training continues with fresh (zero) adapters. A 4-bit base is
    dequantized, updated and quantized again: the new anchor is the policy up to that rounding.
    """

    def bind(self, module):
        if not hasattr(module.model, "disable_adapter"):
            raise ConfigError("reference", "AdaptersDisabled needs a LoRA policy: set `lora:` on the model "
                                           "(configs/optim/qlora.yaml)")

    def logprobs(self, module, batch, key):
        with reference_mode(module.model), module.model.disable_adapter():
            out = module.pair_logprobs(module.model, batch)
        return out.chosen.clone(), out.rejected.clone()

    def reanchor(self, module):
        from peft.tuners.lora import LoraLayer

        with torch.no_grad():
            for layer in module.model.modules():
                if isinstance(layer, LoraLayer):
                    for name in layer.active_adapters:
                        if name in layer.lora_B:
                            # peft's merge: W += delta, or for a 4-bit base dequantize, add, quantize again
                            layer.merge(adapter_names=[name])
                            layer.merged_adapters.remove(name)  # the adapter trains on, from zero
                            layer.lora_B[name].weight.zero_()
