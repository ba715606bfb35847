"""MoE finetuning of a Branch-Train-MiX model (Sukhbaatar et al. 2024, §2.3): next-token loss plus the router's
load-balancing loss, with per-expert routing fractions logged per validation domain.

loss = CE + alpha * N * sum_i f_i P_i   (`litforge.losses.load_balancing_loss`; alpha = router_aux_loss_coef)

The model is any Mixtral, Qwen2-MoE or Qwen3-MoE checkpoint (`litforge merge` output, loaded with `LocalCheckpoint`);
top-k routing (k = num_experts_per_tok, 2 by default) is the model's own.

Departures from the paper:
1. f_i counts routing slots, so sum_i f_i = 1 (Hugging Face's Mixtral loss lets it sum to k); alpha = 0.01 default.
2. The balancing loss is averaged over layers and computed on non-padding tokens only.
3. `freeze_experts` (train only the router and the averaged parts) is an option here; the paper trains everything.
4. Under data parallelism the balancing loss is each rank's own batch's (the token loss is over all ranks' tokens,
   `causal_lm.global_mean`), so it is not the single-process value when ranks hold different token counts.
"""

from __future__ import annotations

import torch
from litforge.lightning_modules.causal_lm import CausalLM, global_mean
from litforge.plugins.moe.router import freeze_experts, routing_fractions

from litforge.errors import require
from litforge.losses import load_balancing_loss, token_cross_entropy


class MoECausalLM(CausalLM):
    """Causal LM on a mixture of experts: adds the load-balancing loss and logs `val_<set>/route_e<i>` fractions.

    Args:
        router_aux_loss_coef: alpha, the weight of the load-balancing loss.
        freeze_experts: keep the expert FFNs fixed; train only the router and the shared (averaged) weights.
        *args, **kwargs: see `CausalLM` / `LitforgeModule` (backbone, optimizer, scheduler, ...).
    """

    def __init__(self, *args, router_aux_loss_coef: float = 0.01, freeze_experts: bool = False, **kwargs):
        require(router_aux_loss_coef >= 0, "router_aux_loss_coef", f"must be >= 0, got {router_aux_loss_coef}")
        super().__init__(*args, **kwargs)
        self.router_aux_loss_coef = router_aux_loss_coef
        self.freeze_experts = freeze_experts
        self.router_logits: tuple[torch.Tensor, ...] | None = None  # of the last forward: per layer (tokens, N)

    def configure_model(self) -> None:
        super().configure_model()
        require(hasattr(self.model.config, "num_experts_per_tok"), "backbone",
                f"MoECausalLM needs a mixture-of-experts model (Mixtral, Qwen2-MoE, Qwen3-MoE); got "
                f"{self.model.config.model_type!r} (merge branches with `litforge merge` and load the result with "
                "LocalCheckpoint)")
        if self.freeze_experts:
            freeze_experts(self.model)

    @property
    def top_k(self) -> int:
        """Experts per token (the model's num_experts_per_tok)."""
        return self.model.config.num_experts_per_tok

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, T, vocab); the router logits of every layer are kept in `self.router_logits`."""
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                            output_router_logits=True)
        self.router_logits = output.router_logits
        return output.logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss, count = token_cross_entropy(logits, batch["labels"])
        balance = load_balancing_loss(self.router_logits, self.top_k, batch["attention_mask"].reshape(-1))
        # the token loss is the mean over all ranks' tokens; the balance loss stays each rank's own (as in Switch)
        total = global_mean(self, loss, count) + self.router_aux_loss_coef * balance
        size = batch["input_ids"].size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/balance_loss", balance, batch_size=size)
        self.log("train/total_loss", total, batch_size=size)
        return total

    def score(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        super().score(logits, batch, dataloader_idx)
        counts, tokens = routing_fractions(self.router_logits, self.top_k, batch["attention_mask"].reshape(-1))
        # a token-weighted mean of this batch's fractions is the set's fraction: sum of slots / (tokens x k)
        fractions = (counts / (tokens * self.top_k).clamp(min=1)).mean(0)  # (N,), averaged over layers
        for expert, value in enumerate(fractions):
            self.log_per_set(f"route_e{expert}", value, dataloader_idx, weight=tokens)
