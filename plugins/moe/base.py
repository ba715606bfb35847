"""The `Upcycler` base: turns dense branches of one seed model into one model (an MoE or a dense average).

Shared helpers live here: checking that branches fit together, averaging parameters, and building the standard
transformers MoE whose decoder layer is the dense family's with the FFN replaced by routed experts:

| dense family        | MoE (transformers)  | router: softmax over experts, top-k, then                               |
|---------------------|---------------------|-------------------------------------------------------------------------|
| llama, mistral      | Mixtral             | renormalised over the k (Mixtral's only rule)                           |
| phi3                | Mixtral             | as above; the fused qkv_proj is split into q/k/v_proj                   |
| qwen2               | Qwen2-MoE           | renormalised (norm_topk_prob=True); no shared expert (width 0)          |
| qwen3               | Qwen3-MoE           | renormalised (norm_topk_prob=True, as the released Qwen3-MoE)           |

In memory all three keep each layer's experts as fused 3D tensors: `mlp.experts.gate_up_proj` (experts,
2 * intermediate, hidden) holding [gate_proj; up_proj] and `mlp.experts.down_proj` (experts, hidden, intermediate);
the router is `mlp.gate.weight` (experts, hidden). `save_pretrained` writes the released per-expert names
(Mixtral's `block_sparse_moe.experts.{i}.w1/w2/w3`, Qwen's `mlp.experts.{i}.gate_proj/up_proj/down_proj`).
Attention (Qwen2's q/k/v biases, Qwen3's q/k norms and head_dim), norms, rotary settings and sliding windows (Mistral's, Qwen2's per-layer `layer_types`) carry over as config fields both
configs name. Gemma 2/3 have no counterpart (their layers add sandwich norms around the FFN, scaled embeddings and
logit soft-capping, which no transformers MoE has; Gemma 4's MoE adds a dense FFN beside the experts) and are
refused by name, as are settings a target has no place for (biases in Mixtral, Phi's partial rotary, a Qwen3 that
windows some layers but not others: Qwen3-MoE windows all or none).

Departures from the released MoE configs (what BTX needs of them):
1. Qwen2-MoE's shared expert has width 0 (shared_expert_intermediate_size=0: its gated output is exactly 0), so the
   layer is the BTX mixture alone.
2. norm_topk_prob=True for both Qwen MoEs (Qwen1.5-MoE was released with False), so that identical experts give the
   dense model exactly.
3. Every layer is an MoE layer (decoder_sparse_step=1, no mlp_only_layers).
4. Phi-3's residual dropout (resid_pdrop, 0 in the releases) has no Mixtral field and is dropped.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    MixtralConfig,
    PreTrainedConfig,
    PreTrainedModel,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)
from transformers.initialization import no_init_weights

from litforge.errors import ConfigError, require


@dataclass(frozen=True)
class MoETarget:
    """A transformers MoE whose decoder layer is a dense family's with routed experts in place of the FFN."""

    config_class: type[PreTrainedConfig]
    experts_field: str  # the config field that holds the number of experts
    settings: dict[str, Any] = field(default_factory=dict)  # fixed: BTX's router rule, every layer an MoE layer


MIXTRAL = MoETarget(MixtralConfig, "num_local_experts")
QWEN_SETTINGS = {"norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": []}
TARGETS = {
    "llama": MIXTRAL,
    "mistral": MIXTRAL,
    "phi3": MIXTRAL,
    "qwen2": MoETarget(Qwen2MoeConfig, "num_experts", dict(QWEN_SETTINGS, shared_expert_intermediate_size=0)),
    "qwen3": MoETarget(Qwen3MoeConfig, "num_experts", QWEN_SETTINGS),
}
SUPPORTED = "llama, mistral, phi3 (to Mixtral), qwen2 (to Qwen2-MoE), qwen3 (to Qwen3-MoE)"
NOT_CARRIED = ("model_type", "architectures", "transformers_version", "_name_or_path", "dtype")


class Upcycler:
    """Merges dense branches trained from one seed into one model (YAML names a subclass by class_path)."""

    def merge(self, experts: Sequence[PreTrainedModel], seed: PreTrainedModel | None = None) -> PreTrainedModel:
        """The merged model (fp32, eval mode) from the branch models and, where the method uses it, the seed."""
        raise NotImplementedError


def check_compatible(models: Sequence[PreTrainedModel], names: Sequence[str] | None = None) -> None:
    """Raise ConfigError naming the first parameter whose name or shape differs between the models."""
    require(bool(models), "experts", "no models to merge")
    names = list(names) if names is not None else [f"model {index}" for index in range(len(models))]
    reference = {key: tuple(value.shape) for key, value in models[0].state_dict().items()}
    for model, name in zip(models[1:], names[1:]):
        if model.config.model_type != models[0].config.model_type:
            raise ConfigError("experts", f"{name} is a {model.config.model_type!r} model but {names[0]} is "
                                         f"{models[0].config.model_type!r}; branches must come from one seed")
        shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        for key in sorted(reference.keys() | shapes.keys()):
            if reference.get(key) != shapes.get(key):
                raise ConfigError("experts", f"{name} does not match {names[0]}: {key} has shape {shapes.get(key)} "
                                             f"vs {reference.get(key)} (None = missing); branches must share the "
                                             "seed's config")


def average_state(models: Sequence[PreTrainedModel], weights: Sequence[float] | None = None,
                  skip: str | None = None) -> dict[str, torch.Tensor]:
    """Weighted mean of the models' parameters (uniform by default), leaving out keys that contain `skip`."""
    weights = [1.0 / len(models)] * len(models) if weights is None else [w / sum(weights) for w in weights]
    states = [model.state_dict() for model in models]
    return {key: sum(w * state[key].float() for w, state in zip(weights, states))
            for key in states[0] if skip is None or skip not in key}


def head_dim(config: PreTrainedConfig) -> int:
    """Width of one attention head (families without a head_dim field use hidden_size / heads)."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def refuse_unmapped(config: PreTrainedConfig) -> None:
    """Raise ConfigError when the dense model uses a setting its MoE target has no place for."""
    name = config.model_type
    if TARGETS[name] is MIXTRAL:
        require(not (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)), "experts",
                f"this {name} model uses attention or FFN biases, which Mixtral does not have")
    rope = getattr(config, "rope_parameters", None) or {}
    require(rope.get("partial_rotary_factor", 1.0) == 1.0, "experts",
            f"this {name} model rotates part of each head (partial_rotary_factor {rope.get('partial_rotary_factor')}),"
            " which Mixtral does not")
    windows = {kind == "sliding_attention" for kind in getattr(config, "layer_types", None) or []}
    require(name != "qwen3" or len(windows) <= 1, "experts",
            "this qwen3 model has sliding-window and full layers; Qwen3-MoE windows all layers or none")


def moe_config(dense: PreTrainedModel, num_experts: int, num_experts_per_tok: int) -> PreTrainedConfig:
    """The MoE config of the dense model's family: its shapes, attention, rotary and special tokens, `num_experts`
    experts of the dense FFN's width, and top-k routing renormalised over the k chosen experts."""
    config = dense.config
    target = TARGETS.get(config.model_type)
    require(target is not None, "experts", f"cannot upcycle a {config.model_type!r} model: no transformers MoE has "
                                           f"its decoder layer; supported: {SUPPORTED}")
    refuse_unmapped(config)
    require(1 <= num_experts_per_tok <= num_experts, "num_experts_per_tok",
            f"must be between 1 and the {num_experts} experts, got {num_experts_per_tok}")
    accepted = inspect.signature(target.config_class.__init__).parameters
    fields = {name: value for name, value in config.to_dict().items() if name in accepted and name not in NOT_CARRIED}
    if "moe_intermediate_size" in accepted:
        fields["moe_intermediate_size"] = config.intermediate_size
    if config.model_type == "qwen3":  # Qwen3-MoE has no layer_types: one flag windows every layer
        fields["use_sliding_window"] = "sliding_attention" in config.layer_types
    fields.update(target.settings, head_dim=head_dim(config), num_experts_per_tok=num_experts_per_tok,
                  **{target.experts_field: num_experts})
    return target.config_class(**fields)


def dense_ffn(model: PreTrainedModel, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's FFN as expert tensors: gate_up (2 * intermediate, hidden) and down (hidden, intermediate)."""
    mlp = model.model.layers[layer].mlp
    if hasattr(mlp, "gate_up_proj"):  # Phi-3 keeps [gate; up] fused, the experts' own layout
        gate_up = mlp.gate_up_proj.weight
    else:
        gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], 0)
    return gate_up.detach().float(), mlp.down_proj.weight.detach().float()


def split_qkv(state: dict[str, torch.Tensor], config: PreTrainedConfig) -> dict[str, torch.Tensor]:
    """The state with Phi-3's fused `qkv_proj` rows split into `q_proj`, `k_proj`, `v_proj` (other keys unchanged)."""
    width = head_dim(config)
    sizes = [config.num_attention_heads * width] + [config.num_key_value_heads * width] * 2
    out = {}
    for key, value in state.items():
        if key.endswith("self_attn.qkv_proj.weight"):
            prefix = key.removesuffix("qkv_proj.weight")
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.split(sizes)):
                out[f"{prefix}{name}.weight"] = part
        else:
            out[key] = value
    return out


def build_moe(shared: dict[str, torch.Tensor], experts: Sequence[Sequence[tuple[torch.Tensor, torch.Tensor]]],
              config: PreTrainedConfig, router_std: float | None = None, seed: int = 0) -> PreTrainedModel:
    """Assemble the MoE model of `config` from the non-FFN weights and each layer's expert FFNs; the router is fresh.

    Args:
        shared: embeddings, attention, norms and head, under the dense model's names.
        experts: experts[e][layer] = (gate_up, down) from `dense_ffn`.
        config: from `moe_config`.
        router_std: std of the router's normal initialisation (None = config.initializer_range).
        seed: seed of the router initialisation.
    """
    with no_init_weights():  # every weight is overwritten below: skip the random init (minutes for a real model)
        model = AutoModelForCausalLM.from_config(config).float()
    model.tie_weights()  # part of the init skipped above
    state = split_qkv(shared, config)
    generator = torch.Generator().manual_seed(seed)
    std = config.initializer_range if router_std is None else router_std
    for layer in range(config.num_hidden_layers):
        prefix = f"model.layers.{layer}.mlp."
        state[prefix + "experts.gate_up_proj"] = torch.stack([expert[layer][0] for expert in experts])
        state[prefix + "experts.down_proj"] = torch.stack([expert[layer][1] for expert in experts])
        state[prefix + "gate.weight"] = torch.randn(len(experts), config.hidden_size, generator=generator) * std
    # Qwen2-MoE's shared expert has width 0: its output is empty-matrix zeros whatever its gate says
    state.update({key: torch.zeros_like(value) for key, value in model.state_dict().items() if ".shared_expert" in key})
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not (config.tie_word_embeddings and key == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"dense weights do not fit {type(model).__name__} (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    return model.eval()
