"""The CoPE LM (Golovneva et al. 2024): a causal LM whose YAML picks the position encoding, scored by exact answers.

The encoding is the `position` plugin of `LitforgeModule` (RoPE, NoPE, Absolute, CoPE ...); this module adds the
paper's metric: the share of validation/test examples whose answer is not reproduced exactly (teacher-forced
argmax over every labelled token, 1 - `exact_matches`), per named set, logged as `val_<name>/error`.
"""

from __future__ import annotations

import torch
from litforge.lightning_modules.causal_lm import CausalLM, exact_matches


class CoPELM(CausalLM):
    """Next-token training; validation adds the exact-answer error of each named set.

    Args: see `LitforgeModule` (choose the encoding with `position: {class_path: CoPE, init_args: {npos_max: 64}}`).
    """

    def score(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        super().score(logits, batch, dataloader_idx)
        self.log_per_set("error", 1 - exact_matches(logits, batch["labels"]), dataloader_idx, prog_bar=True)
