"""MoECausalLM: the load-balancing loss in training, routing fractions and the LM metrics per validation set."""

from __future__ import annotations

import lightning as L
import pytest
from litforge.datamodules import MixedDomainDataModule
from litforge.lightning_modules import MoECausalLM

from litforge.backbones import TinyModel
from litforge.errors import ConfigError

MIXTRAL = TinyModel(model_type="mixtral", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=128,
                    config={"num_local_experts": 3, "num_experts_per_tok": 2})


def validate(module, data):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    return trainer.validate(module, datamodule=data, verbose=False)


def test_a_validate_then_a_fit_starts_each_validation_from_fresh_metrics(tmp_path):
    # the metric reset (CausalLM.on_validation_epoch_start) makes states that a fit can update after a validate
    data = MixedDomainDataModule(num_train=8, num_val=3, max_length=64, batch_size=2)
    module = MoECausalLM(backbone=MIXTRAL)
    first, second = validate(module, data), validate(module, data)
    assert first == second  # not accumulated over the two runs
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    metrics = {key: value.item() for key, value in trainer.callback_metrics.items()}
    for domain in ("arithmetic", "code", "knowledge"):
        assert sum(metrics[f"val_{domain}/route_e{e}"] for e in range(3)) == pytest.approx(1.0, abs=1e-5)
        assert {f"val_{domain}/loss", f"val_{domain}/acc", f"val_{domain}/ppl"} <= set(metrics)


def test_training_adds_the_balancing_loss(tmp_path):
    data = MixedDomainDataModule(num_train=8, num_val=3, max_length=64, batch_size=2)
    module = MoECausalLM(backbone=MIXTRAL, router_aux_loss_coef=0.5)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    metrics = trainer.callback_metrics
    expected = metrics["train/loss"] + 0.5 * metrics["train/balance_loss"]
    assert metrics["train/total_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["train/balance_loss"].item() >= 1.0 - 1e-5  # N * sum f P is at least 1


def test_bad_hyperparameter_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"^router_aux_loss_coef: must be >= 0, got -0.01$"):
        MoECausalLM(router_aux_loss_coef=-0.01)
    MoECausalLM(router_aux_loss_coef=0)


def test_a_dense_model_is_refused(tiny_backbone):
    module = MoECausalLM(backbone=tiny_backbone)
    with pytest.raises(ConfigError, match="^backbone: MoECausalLM needs a mixture-of-experts model .*; got 'llama'"):
        module.configure_model()
