"""Position plugins: RoPE/NoPE/Absolute attach per model, record themselves, keep padding and caching right."""

from __future__ import annotations

import pytest
import torch
from litforge.plugins.position import Absolute, CoPE, NoPE, RoPE
from litforge.plugins.position.base import ATTACHED, NoRotary

from litforge.checkpoint import POSITION_KEY, reattach, recorded_position
from litforge.errors import ConfigError


def build(tiny_backbone, tokenizer):
    return tiny_backbone.build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)


def test_rope_changes_nothing(tiny_backbone, tokenizer):
    plain, model = build(tiny_backbone, tokenizer), build(tiny_backbone, tokenizer)
    RoPE().attach(model)
    ids = torch.randint(3, 200, (2, 9))
    assert torch.equal(plain(ids).logits, model(ids).logits)
    assert model.config.litforge_position["class_path"].endswith("RoPE")


def test_nope_is_permutation_blind_on_the_first_token_pair(tiny_backbone, tokenizer):
    # without positions, one attention layer at the last token sees an unordered set of earlier tokens
    tiny_backbone.num_hidden_layers = 1
    model = build(tiny_backbone, tokenizer)
    NoPE().attach(model)
    assert isinstance(model.model.rotary_emb, NoRotary)
    a, b, c = 10, 20, 30
    first = model(torch.tensor([[a, b, c]])).logits[0, -1]
    swapped = model(torch.tensor([[b, a, c]])).logits[0, -1]
    assert torch.allclose(first, swapped, atol=1e-5)
    plain = build(tiny_backbone, tokenizer)  # the RoPE model does see the order
    assert not torch.allclose(plain(torch.tensor([[a, b, c]])).logits[0, -1],
                              plain(torch.tensor([[b, a, c]])).logits[0, -1], atol=1e-5)


def test_absolute_adds_a_trainable_table_and_caches(tiny_backbone, tokenizer):
    model = build(tiny_backbone, tokenizer)
    Absolute(max_positions=64).attach(model)
    assert "model.embed_positions.weight" in model.state_dict()
    ids = torch.randint(3, 200, (2, 10))
    model(ids, labels=ids).loss.backward()
    assert model.model.embed_positions.weight.grad[:10].abs().sum() > 0
    assert model.model.embed_positions.weight.grad[10:].abs().sum() == 0  # unused positions get nothing
    model.eval()
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    assert torch.equal(model.generate(ids[:, :4], use_cache=True, **kwargs),
                       model.generate(ids[:, :4], use_cache=False, **kwargs))


@pytest.mark.parametrize("position", [NoPE(), Absolute(), CoPE(npos_max=8, gate_key=True)])
def test_recorded_encoding_reattaches(tiny_backbone, tokenizer, position):
    model = build(tiny_backbone, tokenizer)
    position.attach(model)
    again = recorded_position(model.config.to_dict())
    assert type(again) is type(position) and again.init_args() == position.init_args()
    fresh = reattach(build(tiny_backbone, tokenizer).__class__(model.config))
    fresh.load_state_dict(model.state_dict())
    ids = torch.randint(3, 200, (1, 7))
    assert torch.allclose(fresh(ids).logits, model(ids).logits, atol=1e-6)


@pytest.mark.parametrize("position", [NoPE(), Absolute(), CoPE()], ids=["NoPE", "Absolute", "CoPE"])
def test_refuses_a_model_without_rotary_by_name_and_leaves_it_unchanged(position):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(ConfigError, match="^position: GPT2LMHeadModel has no (rotary embedding|attention modules)"):
        position.attach(model)
    assert not hasattr(model, ATTACHED) and not hasattr(model.config, POSITION_KEY)


@pytest.mark.parametrize("make, field", [
    (lambda: CoPE(npos_max=1), "npos_max"),
    (lambda: Absolute(max_positions=0), "max_positions"),
    (lambda: Absolute(init_std=-0.1), "init_std"),
])
def test_bad_hyperparameters_are_config_errors_naming_the_field(make, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        make()
    assert caught.value.field == field


@pytest.mark.parametrize("first, second", [(CoPE(npos_max=8), CoPE(npos_max=8)), (NoPE(), Absolute()),
                                           (CoPE(npos_max=8), RoPE()), (RoPE(), NoPE())])
def test_a_second_position_encoding_is_a_config_error(tiny_backbone, tokenizer, first, second):
    model = build(tiny_backbone, tokenizer)
    first.attach(model)
    with pytest.raises(ConfigError, match=f"^position: LlamaForCausalLM already has a position encoding attached "
                                          f"\\({type(first).__name__}\\)"):
        second.attach(model)
    assert model.config.litforge_position["class_path"].endswith(type(first).__name__)  # the first one stands
