"""MoE plugins: BTX merge, sparse upcycling, Branch-Train-Merge, the load-balancing loss and routing statistics."""

from __future__ import annotations

import math

import pytest
import torch
from litforge.plugins.moe import BranchTrainMerge, BTXMerge, SparseUpcycle
from litforge.plugins.moe.router import freeze_experts, routing_fractions

from litforge.backbones import TinyModel
from litforge.errors import ConfigError
from litforge.losses import load_balancing_loss


def build(tokenizer, seed=0, **overrides):
    """A tiny Llama (32 wide, 2 layers) with its own random weights."""
    spec = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "max_position_embeddings": 64, "seed": seed}
    spec.update(overrides)
    return TinyModel(**spec).build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                                   tokenizer.eos_token_id).eval()


@pytest.fixture
def ids():
    return torch.randint(3, 250, (2, 12))


@pytest.mark.parametrize("include_seed", [False, True])
def test_btx_of_identical_experts_equals_the_dense_seed(tokenizer, ids, include_seed):
    seed = build(tokenizer)
    moe = BTXMerge(num_experts_per_tok=2, include_seed=include_seed).merge([seed, seed, seed], seed)
    assert type(moe).__name__ == "MixtralForCausalLM"
    assert moe.config.num_local_experts == 3 + include_seed and moe.config.num_experts_per_tok == 2
    with torch.no_grad():
        torch.testing.assert_close(moe(input_ids=ids).logits, seed(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


def test_btx_averages_shared_parts_and_keeps_each_experts_ffn(tokenizer):
    experts = [build(tokenizer, seed=s) for s in (1, 2, 3)]
    moe = BTXMerge().merge(experts)
    state, states = moe.state_dict(), [e.state_dict() for e in experts]
    for key in ("model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight", "model.norm.weight",
                "model.layers.0.input_layernorm.weight", "lm_head.weight"):
        torch.testing.assert_close(state[key], sum(s[key] for s in states) / 3)
    for e, expert in enumerate(experts):
        mlp = expert.model.layers[1].mlp
        gate_up = state["model.layers.1.mlp.experts.gate_up_proj"][e]
        torch.testing.assert_close(gate_up[:64], mlp.gate_proj.weight)  # Mixtral keeps [gate; up] fused
        torch.testing.assert_close(gate_up[64:], mlp.up_proj.weight)
        torch.testing.assert_close(state["model.layers.1.mlp.experts.down_proj"][e], mlp.down_proj.weight)
    router = state["model.layers.0.mlp.gate.weight"]
    assert router.shape == (3, 32) and 0.01 < router.std() < 0.03  # fresh N(0, 0.02^2)


def test_experts_with_different_configs_give_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match=r"expert 1 does not match expert 0: .*mlp\.(down|gate|up)_proj.*shape"):
        BTXMerge().merge([build(tokenizer), build(tokenizer, intermediate_size=128)])
    with pytest.raises(ValueError, match="expert 1 does not match"):
        BranchTrainMerge().merge([build(tokenizer), build(tokenizer, num_hidden_layers=3)])
    with pytest.raises(ConfigError, match="^num_experts_per_tok: must be between 1 and the 2 experts, got 3$"):
        BTXMerge(num_experts_per_tok=3).merge([build(tokenizer), build(tokenizer)])


def test_each_family_gets_its_own_moe_and_gemma_is_refused(tokenizer, ids):
    qwen = build(tokenizer, model_type="qwen2")
    moe = BTXMerge().merge([qwen, qwen])
    assert type(moe).__name__ == "Qwen2MoeForCausalLM" and moe.config.norm_topk_prob
    with torch.no_grad():
        torch.testing.assert_close(moe(input_ids=ids).logits, qwen(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    gemma = build(tokenizer, model_type="gemma2", config={"head_dim": 16})
    with pytest.raises(ConfigError, match="^experts: cannot upcycle a 'gemma2' model: .*; supported: llama, "):
        BTXMerge().merge([gemma, gemma])


def test_sparse_upcycle_copies_the_ffn_and_noise_breaks_the_symmetry(tokenizer, ids):
    seed = build(tokenizer)
    exact = SparseUpcycle(num_experts=4).merge([], seed)
    with torch.no_grad():
        torch.testing.assert_close(exact(input_ids=ids).logits, seed(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    noisy = SparseUpcycle(num_experts=4, noise=0.1).merge([seed])
    experts = noisy.state_dict()["model.layers.0.mlp.experts.gate_up_proj"]
    original = torch.cat([seed.model.layers[0].mlp.gate_proj.weight, seed.model.layers[0].mlp.up_proj.weight])
    relative = (experts[0] - original).std() / original.std()
    assert 0.07 < relative < 0.13 and not torch.equal(experts[0], experts[1])
    with pytest.raises(ValueError, match="one dense model"):
        SparseUpcycle().merge([seed, seed])


def test_branch_train_merge_is_the_parameter_mean(tokenizer):
    experts = [build(tokenizer, seed=s) for s in (1, 2)]
    merged = BranchTrainMerge().merge(experts)
    assert type(merged) is type(experts[0])
    for key, value in merged.state_dict().items():
        torch.testing.assert_close(value, (experts[0].state_dict()[key] + experts[1].state_dict()[key]) / 2)
    weighted = BranchTrainMerge(weights=[3, 1]).merge(experts).state_dict()["model.norm.weight"]
    torch.testing.assert_close(weighted, 0.75 * experts[0].model.norm.weight + 0.25 * experts[1].model.norm.weight)


# two tokens, three experts, router probabilities chosen by hand:
# token 1: p = (0.5, 0.3, 0.2); token 2: p = (0.1, 0.6, 0.3); P = (0.3, 0.45, 0.25)
PROBS = torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]])


def test_load_balancing_loss_hand_computed():
    logits = PROBS.log() + 1.7  # softmax is shift invariant
    # top-1: token 1 -> e0, token 2 -> e1: f = (1/2, 1/2, 0); L = 3 * (0.5*0.3 + 0.5*0.45) = 1.125
    assert load_balancing_loss(logits, top_k=1).item() == pytest.approx(1.125, abs=1e-6)
    # top-2: slots e0,e1 | e1,e2: f = (1/4, 2/4, 1/4); L = 3 * (0.25*0.3 + 0.5*0.45 + 0.25*0.25) = 1.0875
    assert load_balancing_loss(logits, top_k=2).item() == pytest.approx(1.0875, abs=1e-6)
    # padding masked: only token 1 counts: f = (1, 0, 0), P = (0.5, 0.3, 0.2); L = 3 * 0.5 = 1.5
    assert load_balancing_loss(logits, 1, mask=torch.tensor([1, 0])).item() == pytest.approx(1.5, abs=1e-6)
    # a tuple of layers is stacked; uniform routing gives the minimum, 1
    uniform = torch.zeros(1, 4, 4)
    assert load_balancing_loss((uniform[0], uniform[0]), 2).item() == pytest.approx(1.0)


def test_load_balancing_loss_pushes_probability_away_from_the_overloaded_expert():
    logits = PROBS.log().clone().requires_grad_(True)
    load_balancing_loss(logits, top_k=1).backward()
    # e2 receives no tokens (f_2 = 0) so its gradient only comes through the softmax coupling; e0/e1 are overloaded
    assert logits.grad[0, :, :2].sum() > 0 > logits.grad[0, :, 2].sum()


def test_routing_fractions_count_top_k_slots():
    counts, tokens = routing_fractions(PROBS.log(), top_k=2)
    torch.testing.assert_close(counts, torch.tensor([[1.0, 2.0, 1.0]]))
    assert tokens.item() == 2
    counts, tokens = routing_fractions((PROBS[0].log(),), top_k=1, mask=torch.tensor([0, 1]))
    torch.testing.assert_close(counts / tokens, torch.tensor([[0.0, 1.0, 0.0]]))


def test_freeze_experts_leaves_router_and_shared_parts_trainable(tokenizer):
    seed = build(tokenizer)
    moe = BTXMerge().merge([seed, seed])
    assert freeze_experts(moe) == 2 * 2  # gate_up and down of two layers
    trainable = {name for name, p in moe.named_parameters() if p.requires_grad}
    assert "model.layers.0.mlp.gate.weight" in trainable and "model.layers.0.self_attn.q_proj.weight" in trainable
    assert not any("experts" in name for name in trainable)
    assert math.isclose(sum(p.numel() for p in moe.parameters() if not p.requires_grad), 2 * 2 * 3 * 32 * 64)


@pytest.mark.parametrize("make, field", [
    (lambda: BTXMerge(num_experts_per_tok=0), "num_experts_per_tok"),
    (lambda: BTXMerge(router_std=0.0), "router_std"),
    (lambda: SparseUpcycle(num_experts=0), "num_experts"),
    (lambda: SparseUpcycle(num_experts=2, num_experts_per_tok=3), "num_experts_per_tok"),
    (lambda: SparseUpcycle(noise=-0.1), "noise"),
    (lambda: SparseUpcycle(router_std=-1.0), "router_std"),
    (lambda: BranchTrainMerge(weights=[1.0, -1.0]), "weights"),
    (lambda: BranchTrainMerge(weights=[0.0, 0.0]), "weights"),
])
def test_bad_hyperparameters_are_config_errors_naming_the_field(make, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        make()
    assert caught.value.field == field


def test_merge_time_mismatches_name_the_field(tokenizer):
    model = build(tokenizer)
    with pytest.raises(ConfigError, match="^weights: 3 weights for 2 experts$"):
        BranchTrainMerge(weights=[1.0, 1.0, 1.0]).merge([model, model])
    with pytest.raises(ConfigError, match="^seed: BTXMerge"):
        BTXMerge(include_seed=True).merge([model, model])
