"""CoPE: hand-computed attention, NoPE equivalence, padding, cached generation, gradients, export round trip."""

from __future__ import annotations

import math

import pytest
import torch
from litforge.plugins.position import CoPE, NoPE
from litforge.plugins.position.cope import CoPETable, cope_attention, cope_core, cope_position_logits
from transformers import AutoModelForCausalLM

from litforge.backbones import LocalCheckpoint
from litforge.checkpoint import checkpoint_metadata, export, load_pretrained
from litforge.errors import ConfigError


def build(tiny_backbone, tokenizer, position, num_key_value_heads=None):
    if num_key_value_heads:
        tiny_backbone.num_key_value_heads = num_key_value_heads
    model = tiny_backbone.build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    position.attach(model)
    return model


def randomise_tables(model, scale=0.5):
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "cope.pos_emb" in name:
                param.normal_(0, scale)


def test_hand_computed_one_head_four_tokens():
    # d = 1 so every dot product is a plain product; scaling 1/sqrt(1) = 1
    q = torch.tensor([0.0, 1.0, 2.0, -1.0]).view(1, 1, 4, 1)
    k = torch.tensor([1.0, 0.0, -1.0, 2.0]).view(1, 1, 4, 1)
    v = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 4, 1)
    module = torch.nn.Module()
    module.cope = CoPETable(head_dim=1, npos_max=3)
    with torch.no_grad():
        module.cope.pos_emb.copy_(torch.tensor([[0.5, -1.0, 2.0]]))  # E: (d=1, npos_max=3)
    mask = torch.zeros(4, 4).masked_fill(torch.ones(4, 4).triu(1).bool(), torch.finfo(torch.float32).min)
    out, weights = cope_attention(module, q, k, v, mask.view(1, 1, 4, 4), scaling=1.0)

    sig = lambda x: 1 / (1 + math.exp(-x))
    expected_out, expected_w = [], []
    for i in range(4):
        logits = [q[0, 0, i, 0].item() * k[0, 0, j, 0].item() for j in range(i + 1)]
        gates = [sig(x) for x in logits]
        z = [q[0, 0, i, 0].item() * e for e in (0.5, -1.0, 2.0)]
        row = []
        for j in range(i + 1):
            p = min(sum(gates[j:i + 1]), 2.0)  # reverse cumulative sum, clamped to npos_max - 1
            lo, hi = math.floor(p), math.ceil(p)
            row.append(logits[j] + z[lo] * (1 - (p - lo)) + z[hi] * (p - lo))
        total = sum(math.exp(x) for x in row)
        w = [math.exp(x) / total for x in row] + [0.0] * (3 - i)
        expected_w.append(w)
        expected_out.append(sum(wj * vj for wj, vj in zip(w, [1.0, 2.0, 3.0, 4.0])))
    assert torch.allclose(weights[0, 0], torch.tensor(expected_w), atol=1e-6)
    assert torch.allclose(out.view(4), torch.tensor(expected_out), atol=1e-6)
    # row 3 by hand: logits (-1, 0, 1, -2), gates sum 0.269+0.5+0.731+0.119 = 1.619 -> p_30 = 1.619 (not clamped)
    assert weights[0, 0, 3, :].sum().item() == pytest.approx(1.0)


def test_positions_clamp_and_interpolate():
    # all gates 1 (huge logits): p_ij = i - j + 1, clamped at npos_max - 1 = 2; z = q . E = (0, 10, 20)
    gate_logits = torch.full((1, 1, 4, 4), 50.0)
    visible = torch.ones(4, 4).tril().bool()
    e = cope_position_logits(torch.ones(1, 1, 4, 1), gate_logits, torch.tensor([[0.0, 10.0, 20.0]]), visible)
    expected = torch.tensor([[10, 0, 0, 0], [20, 10, 0, 0], [20, 20, 10, 0], [20, 20, 20, 10]], dtype=torch.float)
    assert torch.allclose(e[0, 0] * visible, expected, atol=1e-4)
    # half gates: p = 1.5 interpolates halfway between z[1] and z[2]
    e = cope_position_logits(torch.ones(1, 1, 2, 1), torch.zeros(1, 1, 2, 2), torch.tensor([[0.0, 10.0, 20.0]]),
                             torch.ones(2, 2).tril().bool())
    assert e[0, 0, 1, 0].item() == pytest.approx(10.0)  # p = 0.5 + 0.5 = 1
    assert e[0, 0, 1, 1].item() == pytest.approx(5.0)  # p = 0.5


def autograd_position_logits(query, gate_logits, pos_emb, visible):
    """The eager formula (as in the reference code), differentiated by autograd: the custom backward's reference."""
    npos_max = pos_emb.size(-1)
    gates = torch.sigmoid(gate_logits) * visible
    positions = gates.flip(-1).cumsum(-1).flip(-1).clamp(min=0, max=npos_max - 1)
    logits_int = torch.matmul(query, pos_emb)
    floor, ceil = positions.detach().floor().long(), positions.detach().ceil().long()
    weight = positions - floor
    return logits_int.gather(-1, floor) * (1 - weight) + logits_int.gather(-1, ceil) * weight


def position_inputs(npos_max=6, clamped=False):
    """float64 inputs with a causal mask and a left-padded row; gates large enough to clamp when asked."""
    query = torch.randn(2, 3, 7, 4, dtype=torch.float64, requires_grad=True)
    gate_logits = (torch.randn(2, 3, 7, 7, dtype=torch.float64) + (3.0 if clamped else 0.0)).requires_grad_()
    pos_emb = torch.randn(4, npos_max, dtype=torch.float64, requires_grad=True)
    visible = torch.ones(7, 7).tril().bool().repeat(2, 1, 1, 1)
    visible[1, :, :, :2] = False  # padding
    return query, gate_logits, pos_emb, visible


@pytest.mark.parametrize("clamped", [False, True])
def test_custom_backward_matches_autograd(clamped):
    query, gate_logits, pos_emb, visible = position_inputs(clamped=clamped)
    expected = autograd_position_logits(query, gate_logits, pos_emb, visible)
    got = cope_position_logits(query, gate_logits, pos_emb, visible)
    assert torch.allclose(got, expected, atol=1e-12)
    if clamped:  # some positions are past npos_max - 1, so the clamp's gradient is exercised
        gates = torch.sigmoid(gate_logits.detach()) * visible
        assert (gates.flip(-1).cumsum(-1).flip(-1) > pos_emb.size(-1) - 1).any()
    upstream = torch.randn_like(expected)
    grads = torch.autograd.grad((expected * upstream).sum(), (query, gate_logits, pos_emb))
    grads_custom = torch.autograd.grad((got * upstream).sum(), (query, gate_logits, pos_emb))
    for reference, custom in zip(grads, grads_custom):
        assert torch.allclose(custom, reference, atol=1e-10)
    # and against finite differences
    inputs = (query, gate_logits, pos_emb)
    assert torch.autograd.gradcheck(lambda q, g, e: cope_position_logits(q, g, e, visible), inputs)


def test_zero_table_equals_nope(tiny_backbone, tokenizer):
    cope, nope = build(tiny_backbone, tokenizer, CoPE(npos_max=16)), build(tiny_backbone, tokenizer, NoPE())
    ids = torch.randint(3, 200, (2, 12))
    mask = torch.ones_like(ids)
    assert torch.allclose(cope(ids, attention_mask=mask).logits, nope(ids, attention_mask=mask).logits, atol=1e-5)


def test_padding_does_not_change_real_tokens(tiny_backbone, tokenizer):
    model = build(tiny_backbone, tokenizer, CoPE(npos_max=16), num_key_value_heads=1)  # GQA path too
    randomise_tables(model)
    short, long = torch.randint(3, 200, (1, 6)), torch.randint(3, 200, (1, 10))
    alone = model(short, attention_mask=torch.ones_like(short)).logits
    batch = torch.cat([torch.cat([short, torch.full((1, 4), tokenizer.pad_token_id)], 1), long])
    mask = torch.tensor([[1] * 6 + [0] * 4, [1] * 10])
    padded = model(batch, attention_mask=mask).logits
    assert torch.allclose(padded[0, :6], alone[0], atol=1e-5)
    assert torch.allclose(padded[1], model(long, attention_mask=torch.ones_like(long)).logits[0], atol=1e-5)


@pytest.mark.parametrize("gate_key", [False, True])
def test_cached_generation_equals_recomputation(tiny_backbone, tokenizer, gate_key):
    model = build(tiny_backbone, tokenizer, CoPE(npos_max=8, gate_key=gate_key)).eval()
    randomise_tables(model, scale=2.0)  # positions clamp at 7 within the 20 tokens
    prompt = torch.randint(3, 200, (2, 5))
    kwargs = {"max_new_tokens": 15, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    cached = model.generate(prompt, use_cache=True, **kwargs)
    recomputed = model.generate(prompt, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)
    # and greedy by hand: each token is the argmax of a full forward pass
    ids = prompt
    for _ in range(15):
        ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(cached, ids)


def test_gradients_reach_the_position_table(tiny_backbone, tokenizer):
    model = build(tiny_backbone, tokenizer, CoPE(npos_max=16, gate_key=True))
    ids = torch.randint(3, 200, (2, 10))
    model(ids, labels=ids).loss.backward()
    for layer in model.model.layers:  # the table starts at zero, yet receives gradient at once
        assert layer.self_attn.cope.pos_emb.grad.abs().sum() > 0
        assert layer.self_attn.cope.gate_key.grad is None or layer.self_attn.cope.gate_key.grad.abs().sum() == 0
    randomise_tables(model)  # gates only matter once the table is non-zero
    model.zero_grad()
    model(ids, labels=ids).loss.backward()
    for layer in model.model.layers:
        assert layer.self_attn.cope.gate_key.grad.abs().sum() > 0


def test_other_models_are_untouched(tiny_backbone, tokenizer):
    plain = tiny_backbone.build(
        len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    ids = torch.randint(3, 200, (1, 8))
    before = plain(ids).logits
    build(tiny_backbone, tokenizer, CoPE(npos_max=16))
    assert plain.config._attn_implementation == "sdpa"
    assert torch.equal(plain(ids).logits, before)


def test_save_export_load_gives_same_logits(tiny_backbone, tokenizer, tmp_path):
    model = build(tiny_backbone, tokenizer, CoPE(npos_max=16, gate_key=True)).eval()
    randomise_tables(model)
    ids = torch.randint(3, 200, (2, 12))
    expected = model(ids).logits
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                  "litforge": checkpoint_metadata(model, tokenizer)}
    torch.save(checkpoint, tmp_path / "last.ckpt")
    out = export(tmp_path / "last.ckpt", tmp_path / "hf")
    loaded = load_pretrained(out)
    assert loaded.config.litforge_position["init_args"] == {"npos_max": 16, "gate_key": True}
    assert torch.allclose(loaded(ids).logits, expected, atol=1e-5)
    # plain transformers does not know CoPE: it loads the backbone with RoPE and drops the tables
    plain = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert not any("cope" in k for k in plain.state_dict())
    assert not torch.allclose(plain(ids).logits, expected, atol=1e-3)
    # the LocalCheckpoint backbone (what YAML names to train on from an export) re-attaches CoPE
    backbone = LocalCheckpoint(str(out)).build(len(tokenizer), tokenizer.pad_token_id, None, None)
    assert backbone.config.litforge_position["class_path"].endswith("CoPE")
    assert torch.allclose(backbone(ids).logits, expected, atol=1e-5)
    with pytest.raises(ConfigError, match="^position: .* already has a position encoding"):  # would zero E
        CoPE(npos_max=16).attach(backbone)



def test_float64_attention_matches_a_float64_reference():
    query, gate_logits, pos_emb, visible = position_inputs()
    query, key, value = query.detach(), torch.randn_like(query), torch.randn_like(query)
    mask = torch.zeros(visible.shape, dtype=torch.float64).masked_fill(~visible, torch.finfo(torch.float64).min)
    out, weights = cope_core(query, key, value, mask, pos_emb.detach(), None, 0.5, 0.0)
    logits = torch.matmul(query, key.transpose(2, 3)) * 0.5
    logits = logits + autograd_position_logits(query, logits, pos_emb.detach(), visible) + mask
    expected = torch.softmax(logits, -1).masked_fill(~visible.any(-1, keepdim=True), 0)  # float64 throughout
    assert weights.dtype == torch.float64
    assert torch.allclose(weights, expected, atol=1e-12, rtol=0)
    assert torch.allclose(out, torch.matmul(expected, value).transpose(1, 2), atol=1e-12, rtol=0)


def test_a_query_that_sees_no_key_attends_to_nothing():
    query, gate_logits, pos_emb, visible = position_inputs()
    visible[0, :, 2] = False  # query 2 of row 0 sees nothing
    mask = torch.zeros(visible.shape, dtype=torch.float64).masked_fill(~visible, torch.finfo(torch.float64).min)
    out, weights = cope_core(query.detach(), query.detach(), query.detach(), mask, pos_emb.detach(), None, 0.5, 0.0)
    assert not weights.isnan().any()
    assert torch.equal(weights[0, :, 2], torch.zeros_like(weights[0, :, 2]))
    assert torch.equal(out[0, 2], torch.zeros_like(out[0, 2]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_left_padded_batch_forward_and_generate(tiny_backbone, tokenizer, dtype):
    model = build(tiny_backbone, tokenizer, CoPE(npos_max=8)).to(dtype).eval()
    randomise_tables(model)
    short, long = torch.randint(3, 200, (1, 4)), torch.randint(3, 200, (1, 7))
    batch = torch.cat([torch.cat([torch.full((1, 3), tokenizer.pad_token_id), short], 1), long])
    mask = torch.tensor([[0] * 3 + [1] * 4, [1] * 7])
    logits = model(batch, attention_mask=mask).logits
    assert not logits.isnan().any()
    alone = model(short, attention_mask=torch.ones_like(short)).logits
    assert torch.allclose(logits[0, 3:], alone[0], atol=1e-5)
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    generated = model.generate(batch, attention_mask=mask, **kwargs)
    assert torch.equal(generated[0, 3:], model.generate(short, **kwargs)[0])
    assert torch.equal(generated[1], model.generate(long, **kwargs)[0])
