"""The causal-LM module inside a real Lightning Trainer."""

import lightning as L
import pytest
import torch
from functools import partial

from litforge.checkpoint import model_from_checkpoint
from litforge.datamodules import SyntheticTextDataModule
from litforge.lightning_modules import CausalLM
from litforge.lightning_modules.causal_lm import exact_matches
from litforge.cli import run_lightning

from helpers import REPO


def fit(module, data, tmp_path, steps=10, **trainer):
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=2, **trainer)
    trainer.fit(module, datamodule=data)
    return trainer


def test_training_lowers_validation_loss_and_logs_metrics(tiny_backbone, tmp_path):
    data = SyntheticTextDataModule(num_train=100, num_val=20, max_length=32, batch_size=8)
    module = CausalLM(backbone=tiny_backbone, tokenizer=data.tokenizer, optimizer=partial(torch.optim.AdamW, lr=3e-3))
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=2)
    before = trainer.validate(module, datamodule=data, verbose=False)[0]
    trainer = fit(module, data, tmp_path, steps=40, val_check_interval=40)
    after = trainer.callback_metrics
    assert after["val/loss"] < before["val/loss"] - 1.0
    assert torch.isclose(after["val/ppl"], torch.exp(after["val/loss"]))
    assert 0 < after["val/acc"] <= 1


def test_prompt_tokens_get_no_gradient(tiny_backbone, tokenizer):
    module = CausalLM(backbone=tiny_backbone, tokenizer=tokenizer)
    module.configure_model()
    input_ids = torch.tensor([[256, 10, 11, 12, 13, 257]])
    logits = module(input_ids).detach().requires_grad_(True)
    labels = torch.tensor([[-100, -100, -100, 12, 13, 257]])  # prompt = bos, 10, 11
    from litforge.losses import token_cross_entropy
    token_cross_entropy(logits, labels)[0].backward()
    # logits at t predict token t+1: only positions 2, 3, 4 (predicting 12, 13, eos) carry gradient
    assert logits.grad[0, :2].abs().sum() == 0 and logits.grad[0, 5].abs().sum() == 0
    assert (logits.grad[0, 2:5].abs().sum(-1) > 0).all()


def test_bitsandbytes_adamw8bit_trains_on_cpu(tiny_backbone, tmp_path):
    bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is a dev/bnb extra")
    data = SyntheticTextDataModule(num_train=60, num_val=10, max_length=32, batch_size=8)
    module = CausalLM(backbone=tiny_backbone, tokenizer=data.tokenizer,
                      optimizer=partial(bnb.optim.AdamW8bit, lr=3e-3))
    trainer = fit(module, data, tmp_path, steps=15, val_check_interval=15)
    optimizer = trainer.optimizers[0]
    assert type(optimizer).__name__ == "AdamW8bit"
    embedding_state = optimizer.state[module.model.get_input_embeddings().weight]
    assert embedding_state["state1"].dtype == torch.uint8  # the 8-bit state really is 8-bit
    assert trainer.callback_metrics["val/loss"] < 5.0


def test_checkpoint_carries_what_export_needs(tiny_backbone, tmp_path):
    data = SyntheticTextDataModule(num_train=40, num_val=10, max_length=32, batch_size=8)
    module = CausalLM(backbone=tiny_backbone, tokenizer=data.tokenizer)
    trainer = fit(module, data, tmp_path, steps=3)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    model, tokenizer = model_from_checkpoint(tmp_path / "m.ckpt")
    ids = torch.tensor([[256, 104, 105]])
    module.model.eval()
    assert torch.allclose(model(ids).logits, module.model(ids).logits, atol=1e-6)
    assert tokenizer("hi")["input_ids"] == data.tokenizer("hi")["input_ids"]


def test_predict_scores_each_sample(tiny_backbone, tmp_path):
    data = SyntheticTextDataModule(num_train=20, num_val=10, max_length=32, batch_size=4)
    module = CausalLM(backbone=tiny_backbone, tokenizer=data.tokenizer)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    batches = trainer.predict(module, datamodule=data)
    assert batches[0]["tokens"].tolist() == [31] * 4  # packed blocks of 32: 31 predicted tokens each
    assert (batches[0]["logprob"] < 0).all()


def test_exact_matches_counts_examples_whose_every_labelled_token_is_the_argmax():
    # vocab 2; each row predicts positions 1 and 2 from positions 0 and 1 (the last position predicts nothing)
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]],  # argmax 1, 0
                           [[0.0, 1.0], [0.0, 1.0], [0.0, 0.0]],  # argmax 1, 1
                           [[0.0, 1.0], [0.0, 1.0], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 1, 0],  # both answer tokens right: a hit
                           [-100, 1, 0],  # the second one wrong: a miss
                           [-100, -100, -100]])  # no answer: not counted
    assert exact_matches(logits, labels).tolist() == [1.0, 0.0]


def test_the_sft_config_parses(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_lightning(["fit", "--config", str(REPO / "configs/sft/arithmetic.yaml"), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "class_path: litforge.lightning_modules.CausalLM" in capsys.readouterr().out
