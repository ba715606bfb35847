"""The `Upcycler` base: turns dense branches of one seed model into one model (an MoE or a dense average).

Shared helpers live here: checking that branches fit together, averaging parameters, and building a
standard Mixtral-format `MixtralForCausalLM` from dense Llama/Mistral FFNs. Mixtral in transformers 5 keeps each
layer's experts as fused 3D tensors: `mlp.experts.gate_up_proj` (experts, 2 * intermediate, hidden) holding
[gate_proj; up_proj] and `mlp.experts.down_proj` (experts, hidden, intermediate); the router is `mlp.gate.weight`
(experts, hidden). `save_pretrained` writes the classic `block_sparse_moe.experts.{i}.w1/w2/w3` layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import MixtralConfig, MixtralForCausalLM, PreTrainedModel

from litforge.errors import ConfigError, require

DENSE_TYPES = ("llama", "mistral")  # decoder blocks whose non-FFN weights have Mixtral's names and shapes
CONFIG_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
                 "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings", "rope_parameters",
                 "attention_dropout", "initializer_range")


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


def mixtral_config(dense: PreTrainedModel, num_experts: int, num_experts_per_tok: int) -> MixtralConfig:
    """A Mixtral config with the dense model's shapes, rotary settings and special tokens, and `num_experts` FFNs."""
    config = dense.config
    require(config.model_type in DENSE_TYPES, "experts",
            f"cannot upcycle a {config.model_type!r} model to Mixtral; supported: {', '.join(DENSE_TYPES)}")
    require(not (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)), "experts",
            "Mixtral has no attention or FFN biases; the dense model uses them")
    require(1 <= num_experts_per_tok <= num_experts, "num_experts_per_tok",
            f"must be between 1 and the {num_experts} experts, got {num_experts_per_tok}")
    fields = {name: getattr(config, name) for name in CONFIG_FIELDS if getattr(config, name, None) is not None}
    fields["sliding_window"] = getattr(config, "sliding_window", None)
    return MixtralConfig(num_local_experts=num_experts, num_experts_per_tok=num_experts_per_tok, **fields)


def dense_ffn(model: PreTrainedModel, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's FFN as Mixtral expert tensors: gate_up (2 * intermediate, hidden) and down (hidden, intermediate)."""
    mlp = model.model.layers[layer].mlp
    gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], 0)
    return gate_up.detach().float(), mlp.down_proj.weight.detach().float()


def build_mixtral(shared: dict[str, torch.Tensor], experts: Sequence[Sequence[tuple[torch.Tensor, torch.Tensor]]],
                  config: MixtralConfig, router_std: float | None = None, seed: int = 0) -> MixtralForCausalLM:
    """Assemble a MixtralForCausalLM from the non-FFN weights and each layer's expert FFNs; the router is fresh.

    Args:
        shared: embeddings, attention, norms and head, under the dense model's names (which Mixtral shares).
        experts: experts[e][layer] = (gate_up, down) from `dense_ffn`.
        config: from `mixtral_config`.
        router_std: std of the router's normal initialisation (None = config.initializer_range).
        seed: seed of the router initialisation.
    """
    model = MixtralForCausalLM(config).float()
    state = dict(shared)
    generator = torch.Generator().manual_seed(seed)
    std = config.initializer_range if router_std is None else router_std
    for layer in range(config.num_hidden_layers):
        prefix = f"model.layers.{layer}.mlp."
        state[prefix + "experts.gate_up_proj"] = torch.stack([expert[layer][0] for expert in experts])
        state[prefix + "experts.down_proj"] = torch.stack([expert[layer][1] for expert in experts])
        state[prefix + "gate.weight"] = torch.randn(config.num_local_experts, config.hidden_size,
                                                    generator=generator) * std
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not (config.tie_word_embeddings and key == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"dense weights do not fit Mixtral (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.eval()
