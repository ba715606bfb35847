"""Backbone specs: small classes YAML can name that build a `transformers.PreTrainedModel`."""

from __future__ import annotations

import difflib
import tempfile
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from litforge.errors import ConfigError, require


class Backbone:
    """Builds the network a LightningModule trains; the tokenizer's size and special ids are passed in."""

    def build(self, vocab_size: int, pad_token_id: int, bos_token_id: int | None, eos_token_id: int | None
              ) -> PreTrainedModel:
        """Return the model (on CPU, fp32 unless the spec says otherwise)."""
        raise NotImplementedError

    def build_quantized(self, quantization: Any, vocab_size: int, pad_token_id: int, bos_token_id: int | None,
                        eos_token_id: int | None) -> PreTrainedModel:
        """The model with its linear layers quantized by `quantization` (a transformers `BitsAndBytesConfig`).

        Built as `build` does, written to a temporary directory and loaded back through transformers' bitsandbytes
        integration, which picks the layers to quantize (every linear layer but the output head).
        """
        model = self.build(vocab_size, pad_token_id, bos_token_id, eos_token_id)
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            dtype = model.dtype
            del model
            quantized = AutoModelForCausalLM.from_pretrained(
                folder, local_files_only=True, dtype=dtype, quantization_config=quantization,
                attn_implementation=getattr(self, "attn_implementation", None))
        return quantized.train()


class TinyModel(Backbone):
    """A freshly initialised Hugging Face model from a config (Llama by default), seeded for reproducibility.

    Args:
        model_type: any `transformers` model type with a causal-LM head ("llama", "mistral", "qwen2", ...).
        hidden_size: width of the residual stream.
        num_hidden_layers: decoder layers.
        num_attention_heads: query heads.
        num_key_value_heads: key/value heads (None = same as query heads).
        intermediate_size: FFN width (None = 4 x hidden_size).
        max_position_embeddings: longest sequence the model is built for.
        seed: seed of the random initialisation, so two runs build the same weights.
        attn_implementation: "sdpa" or "eager" (position plugins register their own); None = the family's default
            in transformers (SDPA where the family has it, eager for Gemma 2).
        config: any further config fields, passed to the config class as they are.
    """

    def __init__(self, model_type: str = "llama", hidden_size: int = 128, num_hidden_layers: int = 2,
                 num_attention_heads: int = 4, num_key_value_heads: int | None = None,
                 intermediate_size: int | None = None, max_position_embeddings: int = 512, seed: int = 0,
                 attn_implementation: str | None = None, config: dict[str, Any] | None = None):
        require(model_type in CONFIG_MAPPING, "model_type", f"unknown model_type {model_type!r}; closest: "
                + ", ".join(difflib.get_close_matches(model_type, list(CONFIG_MAPPING), n=5) or ["none"]))
        self.model_type = model_type
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.intermediate_size = intermediate_size or 4 * hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.seed = seed
        self.attn_implementation = attn_implementation
        self.config = dict(config or {})
        for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                      "intermediate_size", "max_position_embeddings"):
            require(getattr(self, field) >= 1, field, f"must be at least 1, got {getattr(self, field)}")
        try:  # the family's own checks (heads dividing the width, ...), before anything is built or written
            self.hf_config(256, 0, 1, 2)
        except (ValueError, StrictDataclassError) as error:
            raise ConfigError("backbone", str(error)) from error

    def hf_config(self, vocab_size: int, pad_token_id: int, bos_token_id: int | None,
                  eos_token_id: int | None) -> PretrainedConfig:
        """The Hugging Face config this spec describes."""
        fields = dict(vocab_size=vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
                      num_attention_heads=self.num_attention_heads, num_key_value_heads=self.num_key_value_heads,
                      intermediate_size=self.intermediate_size, max_position_embeddings=self.max_position_embeddings,
                      pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                      tie_word_embeddings=False)
        fields.update(self.config)
        return CONFIG_MAPPING[self.model_type](**fields)

    def build(self, vocab_size, pad_token_id, bos_token_id, eos_token_id):
        config = self.hf_config(vocab_size, pad_token_id, bos_token_id, eos_token_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = AutoModelForCausalLM.from_config(config, attn_implementation=self.attn_implementation,
                                                     dtype=torch.float32)
        return model


class LocalCheckpoint(Backbone):
    """A model saved with `save_pretrained` in a local directory; nothing is fetched from the network.

    A directory exported with a litforge position encoding (its config.json records `litforge_position`, e.g. CoPE)
    is loaded with that encoding re-attached, as `litforge.checkpoint.load_pretrained` does; so do not name a
    `position:` plugin as well.

    Args:
        path: the directory holding config.json and the weights.
        dtype: "float32", "bfloat16" or "float16".
        trust_remote_code: run code shipped with the checkpoint (off unless asked).
        attn_implementation: "sdpa" or "eager"; None = the family's default in transformers (SDPA where the family
            has it; Gemma 2 has only eager, since SDPA cannot soft-cap attention logits).
    """

    def __init__(self, path: str, dtype: str = "float32", trust_remote_code: bool = False,
                 attn_implementation: str | None = None):
        self.path = path
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.attn_implementation = attn_implementation

    def build(self, vocab_size, pad_token_id, bos_token_id, eos_token_id):
        return self.load(vocab_size, pad_token_id)

    def build_quantized(self, quantization, vocab_size, pad_token_id, bos_token_id, eos_token_id):
        return self.load(vocab_size, pad_token_id, quantization)  # quantized as it loads: never whole in full precision

    def load(self, vocab_size: int, pad_token_id: int, quantization: Any = None) -> PreTrainedModel:
        """`from_pretrained` of the directory (quantized by a `BitsAndBytesConfig`, if given), in train mode."""
        path = Path(self.path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no config.json; LocalCheckpoint needs a directory written by "
                                    "save_pretrained (litforge never downloads weights)")
        from litforge.checkpoint import load_pretrained, recorded_position

        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=self.trust_remote_code)
        if recorded_position(config) is not None:  # plain from_pretrained: RoPE, and e.g. the CoPE tables dropped
            require(quantization is None, "quantization", f"{path} records a litforge position encoding "
                                                          f"({config.litforge_position['class_path']}); it loads in "
                                                          "full precision only")
            model = load_pretrained(path, dtype=getattr(torch, self.dtype),
                                    attn_implementation=self.attn_implementation)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=getattr(torch, self.dtype),
                                                         trust_remote_code=self.trust_remote_code,
                                                         attn_implementation=self.attn_implementation,
                                                         quantization_config=quantization)
        if model.get_input_embeddings().num_embeddings < vocab_size:
            model.resize_token_embeddings(vocab_size)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = pad_token_id
        return model.train()  # from_pretrained returns eval mode: dropout would silently stay off in training


def config_from_dict(config: dict[str, Any]) -> PretrainedConfig:
    """Rebuild a Hugging Face config from `config.to_dict()` output."""
    config = dict(config)
    return AutoConfig.for_model(config.pop("model_type"), **config)
