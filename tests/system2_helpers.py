"""Shared by the System 2 tests: a real Llama whose weights make it write fixed strings (teacher-forcing known text
through the real generation path), and hand-made System 2 sample tables."""

from __future__ import annotations

import itertools

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from litforge.plugins.system2 import System2Output


def scripted_llama(tokenizer, scripts: dict[str, str]) -> LlamaForCausalLM:
    """A Llama that, after a prompt ending in the character `start`, writes `scripts[start]` and then eos.

    Every decoder block adds zero to the residual stream (o_proj and down_proj are zero) and the embeddings are
    one-hot, so the next token is a function of the current one only: a bigram table held in lm_head. Hence every
    character across the scripts (and their starts) must be distinct; any other last token gives eos at once.
    """
    vocab = len(tokenizer)

    def token(char: str) -> int:
        ids = tokenizer(char, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{char!r} is not one token"
        return ids[0]

    following = {}
    for start, text in scripts.items():
        chain = [token(start)] + [token(c) for c in text] + [tokenizer.eos_token_id]
        for current, nxt in itertools.pairwise(chain):
            assert current not in following, f"{tokenizer.decode([current])!r} appears twice in the scripts"
            following[current] = nxt
    config = LlamaConfig(vocab_size=vocab, hidden_size=264, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=8, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        model.lm_head.weight.zero_()
        for current in range(vocab):
            model.lm_head.weight[following.get(current, tokenizer.eos_token_id), current] = 1.0
    return model


def table(*rows: list[str | None]) -> list[list[System2Output]]:
    """System 2 outputs with the given answers: `rows[i][j]` is sample j of input i (None: unparsable)."""
    return [[System2Output(answer, {}, "" if answer is None else f"Answer: {answer}", 1) for answer in row]
            for row in rows]
