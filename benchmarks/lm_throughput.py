"""Tokens/s of a `litforge fit` training step against a bare PyTorch loop: same tiny Llama, same batches, 2 threads.

    python benchmarks/lm_throughput.py [--steps 30] [--repeats 2]

Both sides train the same freshly built model (TinyModel, seed 0) with AdamW on the same packed synthetic batches.
The litforge side is a real Trainer.fit of CausalLM with a progress bar and a CSV logger, timed from the first step
after warm-up to the last step's end (data loading, logging and hooks included). Prints the ratio
litforge / bare (>= 0.9 means the framework costs at most 10%). Both sides run with the malloc setting litforge applies on CPU
(`litforge.runtime.keep_freed_memory`), so the ratio measures the framework, not the allocator.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L
import torch

from litforge.backbones import TinyModel
from litforge.datamodules import SyntheticTextDataModule
from litforge.lightning_modules import CausalLM
from litforge.losses import token_cross_entropy
from litforge.runtime import keep_freed_memory

BACKBONE = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=256)
WARMUP = 3


def data_module() -> SyntheticTextDataModule:
    data = SyntheticTextDataModule(num_train=1500, num_val=10, max_length=256, batch_size=8)
    data.setup("fit")
    return data


def bare_loop(steps: int) -> float:
    """Tokens/s of a hand-written loop over the same batches."""
    data = data_module()
    tok = data.tokenizer
    model = TinyModel(**BACKBONE).build(len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = iter(data.train_dataloader())
    tokens, start = 0, None
    for step in range(WARMUP + steps):
        if step == WARMUP:
            start = time.perf_counter()
        batch = next(batches)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        loss, _ = token_cross_entropy(logits, batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= WARMUP:
            tokens += batch["input_ids"].numel()
    return tokens / (time.perf_counter() - start)


class StepTimer(L.Callback):
    """Times training steps after the warm-up."""

    def __init__(self):
        self.start, self.end, self.tokens = None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == WARMUP and self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.start is not None:
            self.tokens += batch["input_ids"].numel()
            self.end = time.perf_counter()


def litforge_fit(steps: int) -> float:
    """Tokens/s of Trainer.fit on CausalLM."""
    data = data_module()
    module = CausalLM(backbone=TinyModel(**BACKBONE), tokenizer=data.tokenizer,
                      optimizer=partial(torch.optim.AdamW, lr=1e-3))
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as folder:
        trainer = L.Trainer(accelerator="cpu", max_steps=WARMUP + steps, gradient_clip_val=1.0, limit_val_batches=0,
                            logger=L.pytorch.loggers.CSVLogger(folder), enable_checkpointing=False,
                            log_every_n_steps=10, callbacks=[timer], enable_model_summary=False,
                            default_root_dir=folder)
        trainer.fit(module, datamodule=data)
    return timer.tokens / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2, help="alternate runs of each side; the best is kept")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # what litforge's fit applies on CPU, here for both sides from the first run on
    bare, fit = [], []
    for _ in range(args.repeats):  # alternate, so a busy moment on the machine hits both sides
        bare.append(bare_loop(args.steps))
        fit.append(litforge_fit(args.steps))
    print(f"model: TinyModel {BACKBONE}, batch 8 x 256 tokens, {args.steps} timed steps, {args.threads} threads")
    print(f"bare PyTorch loop : {max(bare):9.0f} tokens/s   (runs: {', '.join(f'{x:.0f}' for x in bare)})")
    print(f"litforge fit      : {max(fit):9.0f} tokens/s   (runs: {', '.join(f'{x:.0f}' for x in fit)})")
    print(f"ratio litforge/bare: {max(fit) / max(bare):.3f}")


if __name__ == "__main__":
    main()
