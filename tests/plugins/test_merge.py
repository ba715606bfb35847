"""`litforge merge` end to end: Mixtral-format checkpoints that load in plain transformers, YAML and flag forms,
clear errors; MoE finetuning with the balancing loss and routing fractions; the synthetic domains."""

from __future__ import annotations

import pytest
import torch
from helpers import write_yaml
from litforge.datamodules.domains import DomainDataModule, MixedDomainDataModule
from litforge.plugins.moe import BTXMerge
from safetensors import safe_open
from transformers import AutoModelForCausalLM, MixtralForCausalLM

from litforge.backbones import TinyModel
from litforge.cli import main, run_lightning
from litforge.errors import CheckpointError, ConfigError
from litforge.plugins.moe.merge import load_branch, merge_command


def save_branch(tokenizer, folder, seed=0, **overrides):
    """Save a tiny Llama branch (save_pretrained + tokenizer) and return (path, model)."""
    spec = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "max_position_embeddings": 128, "seed": seed}
    spec.update(overrides)
    model = TinyModel(**spec).build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                                    tokenizer.eos_token_id).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder), model


@pytest.fixture
def branches(tmp_path, tokenizer):
    return [save_branch(tokenizer, tmp_path / f"expert{i}", seed=i) for i in range(3)]


def test_merged_checkpoint_loads_in_plain_transformers_and_matches(tmp_path, branches):
    out = tmp_path / "merged"
    main(["merge", "--upcycler", "BTXMerge", "--upcycler.num_experts_per_tok", "2",
          "--experts", "[" + ",".join(path for path, _ in branches) + "]", "--out", str(out)])
    loaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert isinstance(loaded, MixtralForCausalLM) and loaded.config.model_type == "mixtral"
    with safe_open(out / "model.safetensors", "pt") as weights:  # classic Mixtral names on disk
        assert "model.layers.0.block_sparse_moe.experts.2.w1.weight" in weights.keys()
    ours = BTXMerge(num_experts_per_tok=2).merge([model for _, model in branches])
    ids = torch.randint(3, 250, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, ours(input_ids=ids).logits)
    assert (out / "tokenizer.json").is_file()


def test_merge_from_yaml_with_a_seed_expert(tmp_path, tokenizer, branches):
    seed, _ = save_branch(tokenizer, tmp_path / "seed", seed=7)
    config = write_yaml(tmp_path / "merge.yaml", {
        "upcycler": {"class_path": "BTXMerge", "init_args": {"include_seed": True}},
        "experts": [path for path, _ in branches], "seed": seed, "out": str(tmp_path / "merged")})
    main(["merge", "--config", str(config)])
    model, tokenizer_back = load_branch(tmp_path / "merged")
    assert model.config.num_local_experts == 4 and len(tokenizer_back) == len(tokenizer)


def test_merge_errors_are_clear(tmp_path, tokenizer, branches):
    odd, _ = save_branch(tokenizer, tmp_path / "odd", intermediate_size=128)
    with pytest.raises(ConfigError, match="^experts: expert 1 does not match expert 0"):
        merge_command(["--upcycler", "BTXMerge", "--experts", f"[{branches[0][0]},{odd}]", "--out",
                       str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        from litforge.plugins.moe.merge import merge
        merge(BTXMerge(), [path for path, _ in branches], str(tmp_path / "full"))
    with pytest.raises(CheckpointError, match="missing: does not exist; a branch is a litforge .ckpt or a"):
        load_branch(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty: is a directory without config.json"):
        load_branch(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text('{"model_type": "llama"}')  # weights missing
    with pytest.raises(CheckpointError, match="empty: cannot be loaded as a Hugging Face model .*model.safetensors"):
        load_branch(tmp_path / "empty")
    with pytest.raises(ConfigError, match="^dtype: must be one of float32, bfloat16, float16, got 'fp8'$"):
        merge_command(["--upcycler", "BTXMerge", "--experts", f"[{branches[0][0]}]", "--out", str(tmp_path / "x"),
                       "--dtype", "fp8"])
    with pytest.raises(ConfigError, match="^experts: nothing to merge"):
        merge_command(["--upcycler", "BTXMerge", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_domains_are_distinct_and_validated_separately(tokenizer):
    data = MixedDomainDataModule(num_train=30, num_val=5, max_length=64)
    data.setup("fit")
    assert data.names("val") == ["arithmetic", "code", "knowledge"]
    single = DomainDataModule(domain="code", num_train=30, num_val=5, max_length=64)
    single.setup("fit")
    text = tokenizer.decode(single.splits["train"][0]["input_ids"])
    assert "def " in text and "=" in text and "The capital" not in text
    again = DomainDataModule(domain="code", num_train=30, num_val=5, max_length=64)
    again.setup("fit")
    assert again.splits["train"] == single.splits["train"]  # seeded
    with pytest.raises(ValueError, match="unknown domains"):
        MixedDomainDataModule(domains=["poetry"])


@pytest.mark.slow
def test_moe_finetune_logs_routing_and_exports_mixtral(tmp_path, branches):
    merged = tmp_path / "merged"
    main(["merge", "--upcycler", "BTXMerge", "--experts", "[" + ",".join(p for p, _ in branches) + "]",
          "--out", str(merged)])
    before = AutoModelForCausalLM.from_pretrained(merged, local_files_only=True).state_dict()
    config = write_yaml(tmp_path / "finetune.yaml", {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 4, "val_check_interval": 4,
                    "check_val_every_n_epoch": None, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp_path / "run"),
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                               "init_args": {"save_dir": str(tmp_path / "run")}},
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(tmp_path / "ckpt"), "filename": "last"}}]},
        "model": {"class_path": "MoECausalLM",
                  "init_args": {"router_aux_loss_coef": 0.01, "freeze_experts": True,
                                "backbone": {"class_path": "litforge.backbones.LocalCheckpoint",
                                             "init_args": {"path": str(merged)}},
                                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}}}},
        "data": {"class_path": "MixedDomainDataModule",
                 "init_args": {"num_train": 24, "num_val": 3, "max_length": 64, "batch_size": 4}}})
    cli = run_lightning(["fit", "--config", str(config)])
    metrics = cli.trainer.callback_metrics
    for domain in ("arithmetic", "code", "knowledge"):
        routes = [metrics[f"val_{domain}/route_e{e}"].item() for e in range(3)]
        assert sum(routes) == pytest.approx(1.0, abs=1e-5)
        assert f"val_{domain}/loss" in metrics
    assert metrics["train/balance_loss"].item() >= 1.0 - 1e-5  # N * sum f P is at least 1
    after = cli.model.model.state_dict()
    experts = "model.layers.0.mlp.experts.gate_up_proj"
    assert torch.equal(after[experts], before[experts])
    assert not torch.equal(after["model.layers.0.mlp.gate.weight"], before["model.layers.0.mlp.gate.weight"])
    main(["export", str(tmp_path / "ckpt" / "last.ckpt"), str(tmp_path / "hf")])
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert isinstance(exported, MixtralForCausalLM)
    torch.testing.assert_close(exported.state_dict()["model.layers.1.mlp.gate.weight"],
                               after["model.layers.1.mlp.gate.weight"])


def test_moe_module_refuses_a_dense_model(tmp_path, branches):
    from litforge.lightning_modules import MoECausalLM

    from litforge.backbones import LocalCheckpoint

    module = MoECausalLM(backbone=LocalCheckpoint(branches[0][0]))
    with pytest.raises(ConfigError, match="^backbone: MoECausalLM needs a mixture-of-experts model"):
        module.configure_model()
