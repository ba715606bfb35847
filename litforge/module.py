"""What every litforge LightningModule shares: building the Hugging Face model, the optimizer, checkpoint metadata.

LoRA and QLoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"; Dettmers et al. 2023, "QLoRA:
Efficient Finetuning of Quantized LLMs") are settings of every objective here: `lora:` trains peft adapters instead
of all weights, `quantization:` loads the frozen base in 4-bit NF4 through bitsandbytes. Departures from QLoRA:
1. No paged optimizer by default: the optimizer is whatever `optimizer:` names (configs/optim/qlora.yaml picks
   bitsandbytes' 8-bit AdamW, which also runs on CPU).
2. A freshly initialised `TinyModel` is quantized by writing it to a temporary directory and loading it back with
   the quantization config, so both backbones go through transformers' own 4-bit loading.
3. On CPU, bitsandbytes' inference repacking of 4-bit weights is turned off per model (`prepare_4bit_layers`): its
   kernel has no backward.
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
from litforge.lazy import lazy_default
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from litforge.backbones import Backbone, TinyModel
from litforge.checkpoint import checkpoint_metadata
from litforge.errors import ConfigError, require
from litforge.plugins.position.base import PositionEncoding
from litforge.resume import RandomState
from litforge.runtime import keep_freed_memory
from litforge.tokenizer import byte_level_tokenizer


class LitforgeModule(L.LightningModule):
    """Base of the objectives: owns `self.model` (a `transformers.PreTrainedModel`) and its tokenizer.

    The model is built in `configure_model`, after the strategy is known, so FSDP can shard it as it is made.

    Args:
        backbone: what to build (a tiny model from a config, or a local checkpoint).
        tokenizer: linked from the datamodule by the CLI; None builds the byte-level tokenizer.
        position: a position-encoding plugin attached to the model (None keeps the backbone's own, e.g. RoPE).
        gradient_checkpointing: recompute activations in the backward pass to save memory.
        optimizer: optimizer class and its arguments (any torch or bitsandbytes optimizer, named in YAML).
        scheduler: learning-rate scheduler class and its arguments (stepped every optimizer step), or None.
        lora: peft `LoraConfig` arguments (r, lora_alpha, lora_dropout, target_modules: a list or "all-linear", ...)
            to train LoRA adapters instead of all weights (None: full fine-tuning).
        quantization: transformers `BitsAndBytesConfig` arguments loading the frozen base in 4 bits (QLoRA), e.g.
            {load_in_4bit: true, bnb_4bit_quant_type: nf4, bnb_4bit_compute_dtype: bfloat16,
            bnb_4bit_use_double_quant: true}; needs `lora` (a 4-bit base cannot be trained itself).
    """

    plugin_fields: tuple[str, ...] = ("backbone", "tokenizer", "position", "optimizer", "scheduler")

    def __init__(self, backbone: Backbone = lazy_default(TinyModel), tokenizer: PreTrainedTokenizerBase | None = None,
                 position: PositionEncoding | None = None, gradient_checkpointing: bool = False,
                 optimizer: OptimizerCallable = torch.optim.AdamW, scheduler: LRSchedulerCallable | None = None,
                 lora: dict[str, Any] | None = None, quantization: dict[str, Any] | None = None):
        if lora is not None:
            lora_config(lora)  # a bad key fails here, not when the model is built
        if quantization is not None:
            quantization_config(quantization)
            require(lora is not None, "quantization", "a 4-bit base cannot be trained itself: set `lora:` to train "
                                                      "adapters on it (configs/optim/qlora.yaml)")
        super().__init__()
        # init arguments holding objects stay out of the hyperparameters (checkpoint, logger): each class names its
        # own in `plugin_fields`, and the union over the class hierarchy is ignored here, once
        ignored = {field for cls in type(self).__mro__ for field in vars(cls).get("plugin_fields", ())}
        self.save_hyperparameters(ignore=sorted(ignored))
        self.backbone = backbone
        self.tokenizer = tokenizer if tokenizer is not None else byte_level_tokenizer()
        self.position = position
        self.gradient_checkpointing = gradient_checkpointing
        check_optimizer(optimizer, scheduler)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.lora = lora
        self.quantization = quantization
        self.model: PreTrainedModel | None = None

    def build_model(self) -> PreTrainedModel:
        """Build the network from the backbone spec (4-bit with `quantization`), attach the position plugin, add the
        LoRA adapters."""
        tok = self.tokenizer
        ids = (len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
        if self.quantization is None:
            model = self.backbone.build(*ids)
        else:
            from peft import prepare_model_for_kbit_training

            model = self.backbone.build_quantized(quantization_config(self.quantization), *ids)
            # freezes the base, keeps norms and embeddings in fp32; checkpointing is switched on below when asked
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
            prepare_4bit_layers(model)
        if self.position is not None:
            self.position.attach(model)
        if self.gradient_checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # its new name; the old one warns since 5.x
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # training never reuses the cache; generation turns it back on
        if self.lora is not None:
            from peft import get_peft_model

            model = get_peft_model(model, lora_config(self.lora))
        return model

    def configure_model(self) -> None:
        if self.model is None:
            self.model = self.build_model()
        if self.device_mesh is not None:  # ModelParallelStrategy (FSDP2)
            shard_model(self.model, self.device_mesh["data_parallel"])

    def setup(self, stage: str) -> None:
        if self.trainer.strategy.root_device.type == "cpu":
            keep_freed_memory()  # reuse freed activations instead of new zeroed pages each step (litforge.runtime)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of shape (batch, T, vocab)."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(p for p in self.parameters() if p.requires_grad)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_callbacks(self) -> list[L.Callback]:
        return [RandomState()]  # checkpoints carry the random states, so a resumed fit draws what it would have

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["litforge"] = checkpoint_metadata(self.model, self.tokenizer)


def check_optimizer(optimizer: OptimizerCallable, scheduler: LRSchedulerCallable | None) -> None:
    """Build the optimizer and the scheduler once on a stand-in parameter, so that a value torch refuses (a negative
    lr, betas outside [0, 1), a start factor above 1) stops the run in one line, naming the field, before anything
    is written; torch itself would refuse it only once the trainer has set up its run."""
    try:
        probe = optimizer([nn.Parameter(torch.zeros(2, 2))])
    except ValueError as error:
        raise ConfigError("optimizer", str(error)) from error
    if scheduler is not None:
        try:
            scheduler(probe)
        except ValueError as error:
            raise ConfigError("scheduler", str(error)) from error


def prepare_4bit_layers(model: nn.Module) -> None:
    """Make this model's bitsandbytes 4-bit layers train correctly on CPU and load back from a checkpoint.

    1. On a CPU with AVX512-BF16, an eval-mode forward without gradients (validation) repacks each `Linear4bit`
       weight in place for a kernel (`gemv_4bit`) that has no backward and keeps the block scales in bf16: every later
       training step would pass no gradient through the frozen base layers to the adapters below them. Turned off.
    2. `Linear4bit` saves its quantization state beside the weight (`weight.absmax`, `weight.quant_map`, ...) but
       does not read it back, so a strict `load_state_dict` (resuming a fit) fails on those keys: a pre-hook rebuilds
       the weight from them.
    Set per layer, so other models in the process are untouched.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            module.register_load_state_dict_pre_hook(load_4bit_weight)


def load_4bit_weight(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *args) -> None:
    """`load_state_dict` pre-hook of a `Linear4bit`: its weight from the packed data and quantization state saved."""
    from bitsandbytes.nn import Params4bit

    key = prefix + "weight"
    stats = {name[len(key) + 1:]: state_dict.pop(name) for name in list(state_dict) if name.startswith(key + ".")}
    if stats and key in state_dict:
        module.weight = Params4bit.from_prequantized(state_dict[key], stats, requires_grad=False,
                                                     device=module.weight.device, module=module)


def lora_config(lora: dict[str, Any]) -> Any:
    """The peft `LoraConfig` of a `lora:` mapping; an unknown key or a bad value is a ConfigError naming `lora`."""
    from peft import LoraConfig

    try:
        config = LoraConfig(task_type="CAUSAL_LM", **lora)
    except (TypeError, ValueError) as error:
        raise ConfigError("lora", str(error)) from None
    require(isinstance(config.r, int) and config.r >= 1, "lora", f"r must be a positive integer, got {config.r!r}")
    return config


def quantization_config(quantization: dict[str, Any]) -> Any:
    """The transformers `BitsAndBytesConfig` of a `quantization:` mapping (4-bit only); ConfigError naming the field."""
    from transformers import BitsAndBytesConfig

    known = [name for name in inspect.signature(BitsAndBytesConfig).parameters if name != "kwargs"]
    unknown = sorted(set(quantization) - set(known))
    require(not unknown, "quantization", f"unknown keys {unknown}; BitsAndBytesConfig takes {', '.join(known)}")
    require(quantization.get("load_in_4bit") is True, "quantization",
            "litforge quantizes the base in 4 bits only: set load_in_4bit: true (QLoRA)")
    try:
        return BitsAndBytesConfig(**quantization)
    except (TypeError, ValueError, AttributeError) as error:  # e.g. a compute dtype torch does not have
        raise ConfigError("quantization", str(error)) from None


def shard_model(model: nn.Module, mesh) -> None:
    """FSDP2 over `mesh`: `fully_shard` each decoder block (the model's `_no_split_modules`), then the root."""
    from torch.distributed.fsdp import fully_shard

    blocks = set(model._no_split_modules or [])
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
