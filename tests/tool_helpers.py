"""Shared by the ToolVerifier tests: a real Llama whose next-token logits are a bigram table set by hand (so the
likelihood of any continuation is known), and a small library of confusable tools."""

from __future__ import annotations

import torch
from litforge.plugins.tools import Parameter, Tool
from transformers import LlamaConfig, LlamaForCausalLM

HIDDEN = 264  # >= the byte-level vocabulary (259): one-hot embeddings fit


def bigram_llama(tokenizer, table: dict[str, dict[str, float]]) -> LlamaForCausalLM:
    """A Llama whose next-token logits depend on the current token only: after character c the logit of character n
    is `table[c][n]` x sqrt(HIDDEN) (the final RMSNorm scales a one-hot state by sqrt(HIDDEN)); any character not in
    the table is followed by eos (logit 1 x sqrt(HIDDEN), the rest 0).

    Decoder blocks add zero to the residual stream (o_proj and down_proj are zero) and the embeddings are one-hot,
    so the logits are a column of lm_head.
    """
    vocab = len(tokenizer)

    def token(char: str) -> int:
        ids = tokenizer(char, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{char!r} is not one token"
        return ids[0]

    config = LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=8, max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
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
        model.lm_head.weight[tokenizer.eos_token_id, :vocab] = 1.0
        for current, following in table.items():
            column = token(current)
            model.lm_head.weight[:, column] = 0.0
            for nxt, logit in following.items():
                model.lm_head.weight[token(nxt), column] = logit
    return model.eval()


def weather_tools() -> list[Tool]:
    """Six confusable tools: weather x {now, tomorrow, last year} x {city, country}, named by two letters."""
    tools, names = [], iter(["ab", "cd", "ef", "gh", "ij", "kl"])
    for time in ("now", "tomorrow", "last year"):
        for place in ("city", "country"):
            tools.append(Tool(next(names), f"weather {time} by {place}", (Parameter(place, "string", f"the {place}"),),
                              "weather", (("place", place), ("time", time))))
    return tools
