"""LoRA and QLoRA on every objective: a 4-bit NF4 base (bitsandbytes, on CPU) with peft adapters, the
adapters-disabled reference, bf16-mixed steps, and exports merged or adapters alone."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from family_helpers import FAMILIES, family_checkpoint
from helpers import REPO, run_litforge, tiny_run_config, write_yaml
from litforge.datamodules import SyntheticTextDataModule
from litforge.lightning_modules import DPONLL, CausalLM
from litforge.plugins.reference import AdaptersDisabled, FrozenCopy
from preference_helpers import make

from litforge.backbones import LocalCheckpoint, TinyModel
from litforge.checkpoint import export, model_from_checkpoint
from litforge.errors import CheckpointError, ConfigError

pytest.importorskip("peft", reason="peft is the lora extra")
bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is the qlora extra")

NF4 = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "float32",
       "bnb_4bit_use_double_quant": True}
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"}


@pytest.fixture
def backbone():
    """A tiny Llama 64 wide: bitsandbytes' 4-bit blocks are 64 inputs long, so every linear layer is quantizable."""
    return TinyModel(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                     max_position_embeddings=128)


def trainer(root, **options) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=root, limit_val_batches=0, **options)


def assert_qlora(model) -> None:
    """Every decoder linear layer is 4-bit (NF4, frozen); only LoRA matrices train."""
    from peft.tuners.lora import LoraLayer

    layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
    assert len(layers) == 2 * 7  # q, k, v, o, gate, up, down per layer; not the output head
    for layer in layers:
        base = layer.get_base_layer()
        assert isinstance(base, bnb.nn.Linear4bit) and isinstance(base.weight, bnb.nn.Params4bit)
        assert base.weight.quant_state.quant_type == "nf4" and not base.weight.requires_grad
    trained = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trained and all(".lora_A." in name or ".lora_B." in name for name in trained)


@pytest.mark.slow  # a 4-bit fit on CPU: several seconds
def test_qlora_sft_trains_only_the_adapters(backbone, tmp_path):
    data = SyntheticTextDataModule(num_train=64, num_val=8, max_length=32, batch_size=8)
    data.setup("fit")
    module = CausalLM(backbone=backbone, tokenizer=data.tokenizer, lora=LORA, quantization=NF4,
                      optimizer=partial(torch.optim.AdamW, lr=1e-2))
    module.configure_model()
    assert_qlora(module.model)
    batch = data.collate(data.splits["train"][:8])
    frozen = {name: p.detach().clone() for name, p in module.model.named_parameters() if not p.requires_grad}
    loss = lambda: torch.nn.functional.cross_entropy(
        module(batch["input_ids"], batch["attention_mask"])[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(),
        ignore_index=-100).item()
    start = loss()
    trainer(tmp_path, max_steps=8).fit(module, datamodule=data)
    assert loss() < start - 0.3
    after = dict(module.model.named_parameters())
    assert all(torch.equal(after[name].detach(), value) for name, value in frozen.items())


@pytest.mark.slow  # a 4-bit fit on CPU: several seconds
def test_qlora_dpo_step_with_the_base_as_reference(backbone, tmp_path):
    module, data = make(backbone=backbone, lora=LORA, quantization=NF4, reference=AdaptersDisabled(),
                        optimizer=partial(torch.optim.AdamW, lr=1e-2))
    assert_qlora(module.model)
    batch = data.collate(data.splits["train"][:8])
    base = module.model.get_base_model()
    with module.model.disable_adapter():
        expected = module.pair_logprobs(base, batch)
    reference = module.reference.logprobs(module, batch, "train")
    policy = module.pair_logprobs(module.model, batch)
    assert torch.allclose(reference[0], expected.chosen, atol=1e-5)  # the 4-bit base, adapters off
    assert torch.allclose(policy.chosen, reference[0], atol=1e-5)  # fresh adapters (B = 0): policy = base
    start = module.loss(policy.chosen, policy.rejected, *reference, policy).item()
    trainer(tmp_path, max_steps=6).fit(module, datamodule=data)
    policy = module.pair_logprobs(module.model, batch)
    reference_after = module.reference.logprobs(module, batch, "train")
    assert torch.allclose(reference_after[0], reference[0], atol=1e-4)  # the base did not move
    assert module.loss(policy.chosen, policy.rejected, *reference_after, policy).item() < start - 0.05


def test_a_frozen_copy_of_a_4bit_policy_is_the_base(backbone):
    """FrozenCopy deep-copies the quantized policy: it works, at twice AdaptersDisabled's memory."""
    module, data = make(backbone=backbone, lora=LORA, quantization=NF4, reference=FrozenCopy())
    batch = data.collate(data.splits["train"][:4])
    assert isinstance(module.reference_model.get_base_model().model.layers[0].mlp.up_proj.get_base_layer(),
                      bnb.nn.Linear4bit)
    reference = module.reference.logprobs(module, batch, "train")
    assert torch.allclose(reference[0], module.pair_logprobs(module.model, batch).chosen, atol=1e-5)


def test_a_validation_pass_leaves_the_adapter_gradients_unchanged(backbone):
    """bitsandbytes' CPU inference kernel (repacked weights, no backward) stays off: after an eval forward the
    gradients still flow through the 4-bit layers to every adapter, as before it."""
    module, data = make(backbone=backbone, lora={**LORA, "init_lora_weights": False}, quantization=NF4,
                        reference=AdaptersDisabled())
    batch = data.collate(data.splits["train"][:4])

    def gradients():
        module.model.train()
        module.model.zero_grad()
        module.pair_logprobs(module.model, batch).chosen.sum().backward()
        return {name: p.grad.clone() for name, p in module.model.named_parameters() if p.grad is not None}

    before = gradients()
    module.model.eval()
    with torch.no_grad():
        module.pair_logprobs(module.model, batch)
    after = gradients()
    assert len(before) == 2 * 2 * 7 and before.keys() == after.keys()
    assert all(torch.allclose(before[name], after[name], atol=1e-6) for name in before)


def test_a_4bit_policy_loads_back_strictly_from_its_state_dict(backbone):
    """What resuming a fit does: the saved 4-bit weights and their quantization state replace the freshly built ones."""
    kwargs = {"lora": {**LORA, "init_lora_weights": False}, "quantization": NF4, "reference": AdaptersDisabled()}
    module, data = make(backbone=backbone, **kwargs)
    backbone.seed = 1  # another base: the load must bring the saved one back
    other, _ = make(backbone=backbone, **kwargs)
    batch = data.collate(data.splits["train"][:4])
    assert not torch.allclose(other.pair_logprobs(other.model, batch).chosen,
                              module.pair_logprobs(module.model, batch).chosen, atol=1e-3)
    other.load_state_dict(module.state_dict(), strict=True)
    assert torch.equal(other.pair_logprobs(other.model, batch).chosen, module.pair_logprobs(module.model, batch).chosen)


def test_reanchoring_merges_the_adapters_into_the_4bit_base(backbone):
    module, data = make(backbone=backbone, lora={**LORA, "init_lora_weights": False}, quantization=NF4,
                        reference=AdaptersDisabled())
    batch = data.collate(data.splits["train"][:4])
    trained = module.pair_logprobs(module.model, batch).chosen.detach()
    assert not torch.allclose(module.reference.logprobs(module, batch, "train")[0], trained, atol=1e-2)
    module.reanchor_reference()
    policy = module.pair_logprobs(module.model, batch).chosen.detach()
    assert torch.equal(module.reference.logprobs(module, batch, "train")[0], policy)  # B = 0: policy = new base
    assert torch.allclose(policy, trained, rtol=0.02)  # the merged base, quantized again: the policy up to rounding
    assert_qlora(module.model)  # still 4-bit, still training only the adapters


def test_a_4bit_base_without_lora_is_refused(backbone, tokenizer):
    for cls in (CausalLM, DPONLL):
        with pytest.raises(ConfigError, match="^quantization: a 4-bit base cannot be trained itself"):
            cls(backbone=backbone, tokenizer=tokenizer, quantization=NF4)


@pytest.mark.parametrize("quantization, message", [
    ({"load_in_8bit": True}, "quantization: litforge quantizes the base in 4 bits only"),
    ({"load_in_4bit": True, "bnb_4bit_quant_typ": "nf4"}, r"quantization: unknown keys \['bnb_4bit_quant_typ'\]"),
    ({"load_in_4bit": True, "bnb_4bit_compute_dtype": "bfloat1"}, "quantization: .*bfloat1")])
def test_a_bad_quantization_mapping_fails_when_declared(quantization, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        CausalLM(quantization=quantization, lora=LORA)


def test_lora_on_sft(tiny_backbone, tokenizer):
    module = CausalLM(backbone=tiny_backbone, tokenizer=tokenizer, lora={"r": 4, "target_modules": ["q_proj"]})
    module.configure_model()
    trained = [name for name, parameter in module.model.named_parameters() if parameter.requires_grad]
    assert len(trained) == 4 and all("q_proj.lora_" in name for name in trained)
    assert module.hparams.lora == {"r": 4, "target_modules": ["q_proj"]}


def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.slow  # a 4-bit fit on CPU: several seconds
def test_qlora_exports_merged_into_the_dequantized_base_or_adapters_alone(backbone, tokenizer, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    base = tmp_path / "base"
    backbone.build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
                   ).save_pretrained(base)
    module, data = make(backbone=LocalCheckpoint(str(base)), lora=LORA, quantization=NF4, reference=AdaptersDisabled(),
                        optimizer=partial(torch.optim.AdamW, lr=1e-2))
    run = trainer(tmp_path, max_steps=2, enable_checkpointing=False)
    run.fit(module, datamodule=data)
    run.save_checkpoint(tmp_path / "qlora.ckpt")
    ids = data.collate(data.splits["train"][:4])["input_ids"]
    module.model.train()  # bitsandbytes' training kernel: the dequantized weights in fp32, as the export has them
    trained = logits_of(module.model, ids)

    merged = AutoModelForCausalLM.from_pretrained(export(tmp_path / "qlora.ckpt", tmp_path / "merged"))
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert "quantization_config" not in merged.config.to_dict()
    assert torch.allclose(logits_of(merged, ids), trained, atol=1e-4)

    adapters = export(tmp_path / "qlora.ckpt", tmp_path / "adapters", adapters_only=True)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {path.name for path in adapters.iterdir()}
    quantized = AutoModelForCausalLM.from_pretrained(base, quantization_config=BitsAndBytesConfig(**NF4))
    reloaded = PeftModel.from_pretrained(quantized, adapters).train()
    assert torch.allclose(logits_of(reloaded, ids), trained, atol=1e-4)  # on the base it was trained on
    full = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapters)
    assert (logits_of(full, ids) - trained).abs().max() < 0.5  # on the fp32 base: off by the 4-bit rounding only


def test_lora_exports_merged_and_adapters_only_refuses_a_full_finetune(tiny_backbone, tmp_path):
    from transformers import AutoModelForCausalLM

    data = SyntheticTextDataModule(num_train=16, num_val=4, max_length=32, batch_size=8)
    for lora in ({"r": 4, "target_modules": ["q_proj", "v_proj"], "init_lora_weights": False}, None):
        module = CausalLM(backbone=tiny_backbone, tokenizer=data.tokenizer, lora=lora)
        run = trainer(tmp_path, max_steps=1, enable_checkpointing=False)
        run.fit(module, datamodule=data)
        name = "lora" if lora else "full"
        run.save_checkpoint(tmp_path / f"{name}.ckpt")
    ids = torch.tensor([[256, 72, 105, 33, 10, 65]])
    policy, _ = model_from_checkpoint(tmp_path / "lora.ckpt", merge=False)
    merged = AutoModelForCausalLM.from_pretrained(export(tmp_path / "lora.ckpt", tmp_path / "merged"))
    assert torch.allclose(logits_of(merged, ids), logits_of(policy, ids), atol=1e-5)
    with policy.disable_adapter():
        assert not torch.allclose(logits_of(merged, ids), logits_of(policy, ids), atol=1e-3)  # the adapters count
    with pytest.raises(CheckpointError, match="holds no LoRA adapters"):
        export(tmp_path / "full.ckpt", tmp_path / "adapters", adapters_only=True)


@pytest.mark.parametrize("objective", ["sft", pytest.param("qlora_dpo", marks=pytest.mark.slow)])
def test_bf16_mixed_steps_on_cpu(objective, backbone, tmp_path):
    """`trainer.precision: bf16-mixed` runs on CPU: full SFT, and QLoRA DPO with a bf16 compute dtype."""
    if objective == "sft":
        data = SyntheticTextDataModule(num_train=16, num_val=4, max_length=32, batch_size=8)
        module = CausalLM(backbone=backbone, tokenizer=data.tokenizer)
    else:
        module, data = make(backbone=backbone, lora=LORA, quantization={**NF4, "bnb_4bit_compute_dtype": "bfloat16"},
                            reference=AdaptersDisabled())
    run = trainer(tmp_path, max_steps=2, precision="bf16-mixed", enable_checkpointing=False)
    run.fit(module, datamodule=data)
    assert torch.isfinite(run.callback_metrics["train/loss"])
    trained = [p for p in module.model.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)  # mixed: fp32 weights, bf16 autocast


@pytest.mark.slow
def test_cli_qlora_sft_with_the_overlay_then_both_exports(tmp_path):
    from transformers import AutoModelForCausalLM

    config = tiny_run_config(tmp_path / "run", max_steps=4)
    config["model"]["init_args"]["backbone"]["init_args"].update(hidden_size=64, intermediate_size=128)
    run_litforge(["fit", "--config", str(write_yaml(tmp_path / "run.yaml", config)),
                  "--config", str(REPO / "configs/optim/qlora.yaml")])
    checkpoint = tmp_path / "run/checkpoints/last.ckpt"
    saved = torch.load(checkpoint, weights_only=True)["hyper_parameters"]
    assert saved["quantization"]["bnb_4bit_quant_type"] == "nf4" and saved["lora"]["r"] == 16
    assert saved["gradient_checkpointing"]
    run_litforge(["export", str(checkpoint), str(tmp_path / "merged")])
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert model.config.hidden_size == 64 and not any("lora" in name for name, _ in model.named_parameters())
    run_litforge(["export", str(checkpoint), str(tmp_path / "adapters"), "--adapters-only"])
    assert (tmp_path / "adapters/adapter_config.json").is_file()


@pytest.mark.parametrize("name", FAMILIES)
def test_qlora_dpo_step_on_each_family(name, tmp_path_factory, tmp_path):
    """Every family's checkpoint loads in 4-bit through LocalCheckpoint with adapters on all its linear layers (Phi-3's
    fused qkv_proj included); fresh adapters: policy = reference, so the DPO term is log 2."""
    import math

    from litforge.datamodules import JSONLPreferenceDataModule

    folder = family_checkpoint(name, tmp_path_factory)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(f'{{"prompt": "Is {n} even?", "chosen": "{"yes" if n % 2 == 0 else "no"}", '
                             f'"rejected": "{"no" if n % 2 == 0 else "yes"} it is"}}\n' for n in range(4)))
    data = JSONLPreferenceDataModule(train_path=str(pairs), tokenizer=str(folder), max_length=48, batch_size=4)
    data.setup("fit")
    module = DPONLL(backbone=LocalCheckpoint(str(folder)), tokenizer=data.tokenizer, alpha=0.0, lora=LORA,
                    quantization=NF4, reference=AdaptersDisabled())
    module.configure_model()
    linear = [m for m in module.model.get_base_model().modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear and all(isinstance(m.weight, bnb.nn.Params4bit) for m in linear)
    loss = module.training_step(next(iter(data.train_dataloader())), 0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)
    loss.backward()
    trained = [n for n, p in module.model.named_parameters() if p.requires_grad]
    assert trained and all(".lora_" in n for n in trained)
    assert all(p.grad is not None for n, p in module.model.named_parameters() if p.requires_grad)
