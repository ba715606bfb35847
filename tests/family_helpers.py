"""Tiny random checkpoints of real model families, each with a locally trained byte-level BPE tokenizer and a chat
template in its family's style, written with `save_pretrained` (nothing is downloaded).

`write_family(name, folder)` writes one; `FAMILIES` names them; `family_checkpoint(name, tmp_path_factory)` writes
each one once per test session, when first asked for. The tokenizers end a turn with their eos token, as
the instruct releases do (Llama-3 `<|eot_id|>`, Qwen `<|im_end|>`, Gemma `<end_of_turn>`, Phi-3 `<|end|>`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

VOCAB_SIZE = 420  # 256 bytes, the specials, and about 150 merges

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
PHI3_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass
class Family:
    """One family: its model type, config fields, special tokens and chat template."""

    model_type: str
    config: dict[str, Any]
    bos: str | None
    eos: str
    pad: str
    extra: list[str]
    template: str
    turn_end: str = ""  # what the template writes after the eos token that ends an assistant turn
    attn_implementation: str = "sdpa"
    notes: list[str] = field(default_factory=list)


COMMON = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "intermediate_size": 64, "max_position_embeddings": 256}

FAMILIES: dict[str, Family] = {
    "llama": Family("llama", dict(COMMON, rope_theta=500000.0), "<|begin_of_text|>", "<|eot_id|>",
                    "<|finetune_right_pad_id|>", ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"],
                    LLAMA3_TEMPLATE),
    "qwen2": Family("qwen2", dict(COMMON), None, "<|im_end|>", "<|endoftext|>", ["<|im_start|>"], CHATML_TEMPLATE,
                    turn_end="\n"),
    "qwen3": Family("qwen3", dict(COMMON, head_dim=8), None, "<|im_end|>", "<|endoftext|>", ["<|im_start|>"],
                    CHATML_TEMPLATE, turn_end="\n"),
    # Mistral's own default window (4096) never binds at these lengths
    "mistral": Family("mistral", dict(COMMON), "<s>", "</s>", "<pad>", ["[INST]", "[/INST]"],
                      "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                      "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}"
                      "{% endif %}{% endfor %}"),
    # a window of 8 binds on every sequence here: sliding layers differ from full ones; soft-capping as released
    "gemma2": Family("gemma2", dict(COMMON, head_dim=8, query_pre_attn_scalar=8, sliding_window=8,
                                    layer_types=["sliding_attention", "full_attention"]),
                     "<bos>", "<end_of_turn>", "<pad>", ["<eos>", "<start_of_turn>"], GEMMA_TEMPLATE, turn_end="\n",
                     attn_implementation="eager"),
    "gemma3": Family("gemma3_text", dict(COMMON, head_dim=8, query_pre_attn_scalar=8, sliding_window=512,
                                         layer_types=["sliding_attention", "full_attention"]),
                     "<bos>", "<end_of_turn>", "<pad>", ["<eos>", "<start_of_turn>"], GEMMA_TEMPLATE, turn_end="\n"),
    "phi3": Family("phi3", dict(COMMON), None, "<|end|>", "<|endoftext|>",
                   ["<|user|>", "<|assistant|>", "<|system|>"], PHI3_TEMPLATE, turn_end="\n"),
}

WORDS = ["the", "cat", "dog", "sat", "on", "a", "mat", "and", "ran", "to", "red", "blue", "green", "one", "two", "three",
         "four", "five", "what", "is", "sum", "of", "plus", "minus", "answer", "question", "please", "tell", "me", "why",
         "because", "yes", "no", "good", "bad", "small", "large"]


def corpus(lines: int = 400, seed: int = 0) -> list[str]:
    """Short generated sentences and sums: enough text to learn a few hundred merges."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10)))
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        out.append(f"{words.capitalize()}. {a}+{b}={a + b}\n")
    return out


def family_tokenizer(family: Family) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `corpus()`, with the family's special tokens and chat template."""
    specials = [token for token in [family.bos, family.eos, family.pad, *family.extra] if token]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=family.bos, eos_token=family.eos,
                                        pad_token=family.pad)
    tokenizer.add_special_tokens({"additional_special_tokens": family.extra})
    tokenizer.chat_template = family.template
    return tokenizer


def write_family(name: str, folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny random `name` checkpoint and its tokenizer into `folder` with `save_pretrained`."""
    family, folder = FAMILIES[name], Path(folder)
    tokenizer = family_tokenizer(family)
    ids = {f"{kind}_token_id": tokenizer.convert_tokens_to_ids(token) if token else None
           for kind, token in (("bos", family.bos), ("eos", family.eos), ("pad", family.pad))}
    config = CONFIG_MAPPING[family.model_type](vocab_size=len(tokenizer), **ids, **family.config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation=family.attn_implementation)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder



def family_checkpoint(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `name` checkpoint in the session's temporary folder, written when first asked for (test modules share
    it; under xdist each worker writes its own)."""
    folder = tmp_path_factory.getbasetemp() / "families" / name
    if not (folder / "config.json").is_file():
        write_family(name, folder)
    return folder
