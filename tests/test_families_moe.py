"""BTX and sparse upcycling for every model family (tests/family_helpers.py): Llama, Mistral and Phi-3 become Mixtral,
Qwen2 becomes Qwen2-MoE and Qwen3 Qwen3-MoE; Gemma 2 and 3 are refused by name. With identical experts the MoE is
the dense model (renormalised top-k), the merged directory loads in plain transformers with equal logits, and
`MoECausalLM` trains a step on it with the load-balancing loss."""

from __future__ import annotations

import json

import pytest
import torch
from family_helpers import FAMILIES, family_checkpoint
from litforge.datamodules import SFTDataModule
from litforge.lightning_modules import MoECausalLM
from litforge.plugins.moe import BTXMerge, SparseUpcycle
from litforge.plugins.moe.merge import merge
from litforge.plugins.moe.router import freeze_experts
from safetensors import safe_open
from transformers import AutoModelForCausalLM
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from litforge.backbones import LocalCheckpoint
from litforge.errors import ConfigError
from litforge.losses import load_balancing_loss, token_cross_entropy
from litforge.tokenizer import load_tokenizer

MOE_OF = {"llama": "MixtralForCausalLM", "mistral": "MixtralForCausalLM", "phi3": "MixtralForCausalLM",
          "qwen2": "Qwen2MoeForCausalLM", "qwen3": "Qwen3MoeForCausalLM"}
SUPPORTED = list(MOE_OF)
ON_DISK = {"MixtralForCausalLM": "model.layers.1.block_sparse_moe.experts.2.w1.weight",
           "Qwen2MoeForCausalLM": "model.layers.1.mlp.experts.2.gate_proj.weight",
           "Qwen3MoeForCausalLM": "model.layers.1.mlp.experts.2.gate_proj.weight"}


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Add N(0, 0.2^2) to every weight: at the checkpoints' N(0, 0.02^2) the FFN and attention barely move the
    logits, so equal logits would prove little."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def dense_dirs(tmp_path_factory):
    """name -> a perturbed copy of the family checkpoint with its tokenizer, written when first asked for."""
    written = {}

    def get(name):
        if name not in written:
            source = family_checkpoint(name, tmp_path_factory)
            folder = tmp_path_factory.mktemp(f"dense_{name}")
            perturb(AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)).save_pretrained(folder)
            load_tokenizer(str(source)).save_pretrained(folder)
            written[name] = folder
        return written[name]
    return get


@pytest.fixture(scope="module")
def merged_dirs(tmp_path_factory, dense_dirs):
    """name -> `litforge merge` of three identical branches of the perturbed checkpoint (BTX, top-2)."""
    written = {}

    def get(name):
        if name not in written:
            folder = str(dense_dirs(name))
            written[name] = merge(BTXMerge(num_experts_per_tok=2), [folder] * 3,
                                  str(tmp_path_factory.mktemp(f"merged_{name}")))  # a fresh folder each setup
        return written[name]
    return get


def dense(name: str, **overrides) -> torch.nn.Module:
    """A perturbed random model of the family with config overrides (vocab 101, no tokenizer)."""
    family = FAMILIES[name]
    config = CONFIG_MAPPING[family.model_type](vocab_size=101, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                               **dict(family.config, **overrides))
    return perturb(AutoModelForCausalLM.from_config(config).float())


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("name", SUPPORTED)
def test_identical_experts_give_the_dense_model_and_load_back_in_plain_transformers(name, dense_dirs, merged_dirs):
    dense_model = AutoModelForCausalLM.from_pretrained(dense_dirs(name), dtype=torch.float32).eval()
    loaded = AutoModelForCausalLM.from_pretrained(merged_dirs(name), dtype=torch.float32).eval()
    assert type(loaded).__name__ == MOE_OF[name] and loaded.config.num_experts_per_tok == 2
    ids = torch.randint(3, 400, (2, 24))
    expected = logits(dense_model, ids)
    assert expected.std() > 0.5  # the perturbed weights matter
    torch.testing.assert_close(logits(loaded, ids), expected, rtol=1e-5, atol=1e-5)
    hidden = torch.randn(2, 5, 32)  # and layer by layer: the routed experts are the dense FFN
    with torch.no_grad():
        for moe_layer, dense_layer in zip(loaded.model.layers, dense_model.model.layers):
            torch.testing.assert_close(moe_layer.mlp(hidden), dense_layer.mlp(hidden), rtol=1e-5, atol=1e-5)
    assert load_tokenizer(merged_dirs(name)).chat_template == FAMILIES[name].template
    with safe_open(merged_dirs(name) / "model.safetensors", "pt") as weights:  # the released per-expert names
        assert ON_DISK[MOE_OF[name]] in weights.keys()  # noqa: SIM118 (safe_open has no __contains__)


@pytest.mark.parametrize("name", SUPPORTED)
def test_sparse_upcycle_of_every_family_is_the_dense_model(name, dense_dirs):
    seed = AutoModelForCausalLM.from_pretrained(dense_dirs(name), dtype=torch.float32).eval()
    moe = SparseUpcycle(num_experts=4, num_experts_per_tok=3).merge([], seed)
    assert type(moe).__name__ == MOE_OF[name] and moe.config.num_experts_per_tok == 3
    ids = torch.randint(3, 400, (1, 16))
    torch.testing.assert_close(logits(moe, ids), logits(seed, ids), rtol=1e-5, atol=1e-5)


# settings that change the attention and must survive the merge: Llama 3's rope scaling, sliding windows that bind on
# 24 tokens, Phi-3's longrope past its original length, Qwen3's attention biases and a tied head
VARIANTS = [  # (family, config overrides, whether a window binds)
    ("llama", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}, False),
    ("mistral", {"sliding_window": 4}, True),
    ("phi3", {"sliding_window": 4}, True),
    ("phi3", {"max_position_embeddings": 64, "original_max_position_embeddings": 16,
              "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0, 1.1, 1.2, 1.3],
                                  "long_factor": [2.0, 3.0, 4.0, 5.0]}}, False),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}, True),  # layer 1 only
    ("qwen3", {"attention_bias": True, "tie_word_embeddings": True}, False),  # the small Qwen releases tie the head
    ("qwen3", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 0}, True),  # every layer
    ("qwen3", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 2}, False),  # the flag, no layer
]


@pytest.mark.parametrize("name, overrides, windowed", VARIANTS,
                         ids=[f"{n}-{'-'.join(o)}-{o.get('max_window_layers', '')}" for n, o, _ in VARIANTS])
def test_attention_settings_carry_over(name, overrides, windowed):
    seed = dense(name, **overrides)
    moe = BTXMerge().merge([seed, seed])
    ids = torch.randint(3, 101, (2, 24))
    torch.testing.assert_close(logits(moe, ids), logits(seed, ids), rtol=1e-5, atol=1e-5)
    for key in ("rope_parameters", "tie_word_embeddings"):
        if key in overrides:
            assert getattr(moe.config, key) == getattr(seed.config, key)
    if name == "qwen2":  # Qwen2's windows are per layer
        assert moe.config.layer_types == seed.config.layer_types == ["full_attention", "sliding_attention"]
    if moe.config.tie_word_embeddings:
        assert moe.lm_head.weight.data_ptr() == moe.model.embed_tokens.weight.data_ptr()
    if windowed:  # the window binds on these 24 tokens: the same weights without it give other logits
        assert moe.config.sliding_window == 4
        unwindowed = dense(name, **dict(overrides, sliding_window=None, use_sliding_window=False))
        assert not torch.allclose(logits(unwindowed, ids), logits(seed, ids), atol=1e-3)


def test_qwen2_moe_mapping_keeps_biases_and_has_no_shared_expert():
    seed = dense("qwen2")
    moe = BTXMerge().merge([seed, seed, seed])
    config, layer = moe.config, moe.model.layers[0]
    assert config.norm_topk_prob and config.shared_expert_intermediate_size == 0 and config.mlp_only_layers == []
    assert config.moe_intermediate_size == seed.config.intermediate_size
    torch.testing.assert_close(layer.self_attn.q_proj.bias, seed.model.layers[0].self_attn.q_proj.bias)
    assert layer.mlp.shared_expert.gate_proj.weight.numel() == 0
    torch.testing.assert_close(layer.mlp.shared_expert(torch.randn(3, 32)), torch.zeros(3, 32))
    assert freeze_experts(moe) == 2 * 2  # gate_up and down of two layers; the empty shared expert is not an expert


def test_phi3_fused_projections_are_split_into_mixtral_names():
    seed = dense("phi3")
    moe = BTXMerge().merge([seed, seed])
    qkv = seed.model.layers[1].self_attn.qkv_proj.weight  # rows: 4 query heads, 2 key heads, 2 value heads of 8
    attention = moe.model.layers[1].self_attn
    torch.testing.assert_close(attention.q_proj.weight, qkv[:32])
    torch.testing.assert_close(attention.k_proj.weight, qkv[32:48])
    torch.testing.assert_close(attention.v_proj.weight, qkv[48:])
    torch.testing.assert_close(moe.model.layers[1].mlp.experts.gate_up_proj[1],
                               seed.model.layers[1].mlp.gate_up_proj.weight)


REFUSED = [
    ("gemma2", {}, (r"cannot upcycle a 'gemma2' model: no transformers MoE has its decoder layer; supported: llama, "
                    r"mistral, phi3 \(to Mixtral\), qwen2 \(to Qwen2-MoE\), qwen3 \(to Qwen3-MoE\)")),
    ("gemma3", {}, "cannot upcycle a 'gemma3_text' model: .*; supported: llama, mistral, .*"),
    ("llama", {"attention_bias": True}, "this llama model uses attention or FFN biases, which Mixtral does not have"),
    ("llama", {"mlp_bias": True}, "this llama model uses attention or FFN biases, .*"),
    ("phi3", {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}},
     r"this phi3 model rotates part of each head \(partial_rotary_factor 0.5\), which Mixtral does not"),
    ("qwen3", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1},
     "this qwen3 model has sliding-window and full layers; Qwen3-MoE windows all layers or none"),
]


@pytest.mark.parametrize("name, overrides, message", REFUSED, ids=[f"{n}-{'-'.join(o)}" for n, o, _ in REFUSED])
def test_unmappable_models_are_refused_by_name_in_one_line(name, overrides, message):
    seed = dense(name, **overrides)
    for upcycler, models in ((BTXMerge(), [seed, seed]), (SparseUpcycle(), [seed])):
        with pytest.raises(ConfigError, match=f"^experts: {message}$") as caught:
            upcycler.merge(models)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", SUPPORTED)
def test_moe_finetune_step_on_each_merged_family(name, merged_dirs, tmp_path):
    folder = merged_dirs(name)
    path = tmp_path / "sft.jsonl"
    chats = [[{"role": "user", "content": "What is two plus three?"}, {"role": "assistant", "content": "2+3=5"}],
             [{"role": "user", "content": "Why is the cat red?"}, {"role": "assistant", "content": "Because."}]]
    path.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in chats))
    data = SFTDataModule(train_path=str(path), tokenizer=str(folder), batch_size=2, max_length=64)
    data.setup("fit")
    module = MoECausalLM(backbone=LocalCheckpoint(str(folder)), tokenizer=data.tokenizer, router_aux_loss_coef=0.5)
    module.configure_model()
    assert type(module.model).__name__ == MOE_OF[name]
    batch = next(iter(data.train_dataloader()))
    total = module.training_step(batch, 0)
    total.backward()
    mask = batch["attention_mask"].reshape(-1)
    with torch.no_grad():
        cross_entropy, _ = token_cross_entropy(module(batch["input_ids"], batch["attention_mask"]), batch["labels"])
        balance = load_balancing_loss(module.router_logits, 2, mask)
    assert len(module.router_logits) == 2 and module.router_logits[0].shape == (mask.numel(), 3)
    assert balance >= 1.0 - 1e-5  # N * sum f P is at least 1
    torch.testing.assert_close(total.detach(), cross_entropy + 0.5 * balance)
    for layer in module.model.model.layers:  # the fresh router learns
        assert layer.mlp.gate.weight.grad.abs().sum() > 0
