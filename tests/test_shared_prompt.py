"""The shared-prompt layout and its two-block attention, on hand-made batches."""

import pytest
import torch
from preference_helpers import hand_made_pairs

from litforge.data import IGNORE_INDEX
from litforge.shared_prompt import (
    PairBlocks,
    full_pair_mask,
    pair_sdpa_attention,
    share_prompts,
    shared_layout_fits,
    sliding_window,
)


def test_shared_layout_by_hand():
    shared = share_prompts(hand_made_pairs())  # segments padded to P = C = R = 3
    x = IGNORE_INDEX
    assert shared["split"] == (3, 3)
    assert shared["input_ids"].tolist() == [[1, 2, 0, 11, 12, 13, 21, 22, 0], [3, 4, 5, 14, 0, 0, 23, 24, 25]]
    assert shared["position_ids"].tolist() == [[0, 1, 0, 2, 3, 4, 2, 3, 0], [0, 1, 2, 3, 0, 0, 3, 4, 5]]
    assert shared["labels"].tolist() == [[x, x, x, 11, 12, 13, 21, 22, x], [x, x, x, 14, x, x, 23, 24, 25]]
    # the hidden state that predicts each token: the prompt's last real one for each response's first token
    assert shared["source"][0, 3:8].tolist() == [1, 3, 4, 1, 6]
    assert shared["source"][1, [3, 6, 7, 8]].tolist() == [2, 2, 6, 7]
    mask = full_pair_mask(shared)[0, 0].int()
    assert mask[7].tolist() == [1, 1, 0, 0, 0, 0, 1, 1, 0]  # rejected sees its prompt and itself, not chosen
    assert mask[5].tolist() == [1, 1, 0, 1, 1, 1, 0, 0, 0]  # chosen sees its prompt (not the pad) and itself
    assert bool(full_pair_mask(shared).any(-1).all())  # no query is left without a key


def test_two_block_attention_equals_one_masked_attention():
    """The sdpa path's two dense blocks give the full masked attention's output and gradients."""
    shared = share_prompts(hand_made_pairs())
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 9, 4, generator=generator, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    blocks, _ = pair_sdpa_attention(None, q, k, v, None, pair_blocks=PairBlocks.of(shared))
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=full_pair_mask(shared))
    full = full.transpose(1, 2)  # the interface's (B, T, heads, dim)
    real = shared["real"]
    assert torch.allclose(blocks[real], full[real], atol=1e-12)
    weights = torch.randn(full.shape, generator=generator, dtype=torch.float64) * real[:, :, None, None]
    got = torch.autograd.grad((blocks * weights).sum(), (q, k, v))
    expected = torch.autograd.grad((full * weights).sum(), (q, k, v))
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("model_type, fields, window", [
    ("llama", {}, None),
    ("mistral", {}, 4096),                                              # Mistral's default: every layer slides
    ("mistral", {"sliding_window": None}, None),
    ("qwen2", {"sliding_window": 16}, None),                            # set, but off without use_sliding_window
    ("qwen2", {"sliding_window": 16, "use_sliding_window": True, "max_window_layers": 0}, 16),
    ("gemma3_text", {"sliding_window": 16, "head_dim": 8,
                     "layer_types": ["sliding_attention", "full_attention"]}, 16),
    ("gemma3_text", {"sliding_window": 16, "head_dim": 8, "layer_types": ["full_attention"] * 2}, None),
])
def test_the_shared_layout_is_used_only_where_no_sliding_window_binds(model_type, fields, window):
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config = CONFIG_MAPPING[model_type](vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                        num_key_value_heads=2, intermediate_size=32, **fields)
    model = AutoModelForCausalLM.from_config(config)
    assert sliding_window(model) == window
    assert shared_layout_fits(model, 16)  # a window of 16 sees 15 tokens back: all of 16 columns
    assert shared_layout_fits(model, 17) == (window is None or window >= 17)
