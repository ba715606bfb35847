"""MoE finetuning speed: litforge's `MoECausalLM` under a Lightning Trainer against Hugging Face's
`MixtralForCausalLM` of the same config trained in a bare PyTorch loop (same batches, same optimizer), plus the
share of forward time spent in expert dispatch (the `MixtralExperts` modules), for the default ("grouped_mm") and
the per-expert loop ("eager") expert implementations.

    python benchmarks/moe_throughput.py [--steps 60] [--hidden 128] [--experts 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L
import torch
from litforge.datamodules.domains import MixedDomainDataModule
from litforge.lightning_modules import MoECausalLM
from litforge.plugins.moe import SparseUpcycle
from transformers import AutoModelForCausalLM

from litforge.backbones import LocalCheckpoint, TinyModel
from litforge.checkpoint import save_directory
from litforge.runtime import keep_freed_memory

WARMUP = 5


class StepTimer(L.Callback):
    """Wall time of training steps after the first WARMUP ones."""

    def __init__(self):
        self.start, self.steps = None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == WARMUP:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += batch_idx >= WARMUP
        self.end = time.perf_counter()


def litforge_tokens_per_s(path: str, data: MixedDomainDataModule, steps: int) -> float:
    """Tokens/s of `MoECausalLM` fit steps (load-balancing loss and all) under a plain Lightning Trainer."""
    module = MoECausalLM(backbone=LocalCheckpoint(path), router_aux_loss_coef=0.01,
                         optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3))
    timer = StepTimer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps + WARMUP, logger=False, callbacks=[timer],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    return timer.steps * data.batch_size * data.max_length / (timer.end - timer.start)


def bare_tokens_per_s(path: str, data: MixedDomainDataModule, steps: int, experts: str | None = None
                      ) -> tuple[float, float]:
    """Tokens/s of a bare loop on `MixtralForCausalLM` (HF's own aux loss), and the experts' share of forward time."""
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    if experts is not None:
        model.config._experts_implementation = experts
    model.config.use_cache = False
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    spent = {"experts": 0.0, "forward": 0.0}

    def enter(module, args):
        module._t0 = time.perf_counter()

    def leave(module, args, output):
        spent["experts"] += time.perf_counter() - module._t0

    for layer in model.model.layers:
        layer.mlp.experts.register_forward_pre_hook(enter)
        layer.mlp.experts.register_forward_hook(leave)
    loader = iter(data.train_dataloader())
    for step in range(steps + WARMUP):
        if step == WARMUP:
            start, spent["experts"], spent["forward"] = time.perf_counter(), 0.0, 0.0
        batch = next(loader)
        t0 = time.perf_counter()
        output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                       output_router_logits=True)
        spent["forward"] += time.perf_counter() - t0
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - start
    return steps * data.batch_size * data.max_length / elapsed, spent["experts"] / spent["forward"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    keep_freed_memory()  # what litforge's fit applies on CPU, here for the bare loops as well
    data = MixedDomainDataModule(num_train=1500, num_val=5, max_length=128, batch_size=16)
    data.setup("fit")
    tok = data.tokenizer
    dense = TinyModel(hidden_size=options.hidden, num_hidden_layers=2, num_attention_heads=4,
                      max_position_embeddings=256).build(len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    moe = SparseUpcycle(num_experts=options.experts, num_experts_per_tok=2, noise=0.05).merge([dense])
    with tempfile.TemporaryDirectory() as folder:
        path = str(save_directory(moe, tok, os.path.join(folder, "moe")))
        ours = litforge_tokens_per_s(path, data, options.steps)
        bare, share = bare_tokens_per_s(path, data, options.steps)
        eager, eager_share = bare_tokens_per_s(path, data, options.steps, experts="eager")
    print(f"\nMixtral {options.experts} experts top-2, hidden {options.hidden}, 2 layers, batch 16 x 128, "
          f"{options.steps} timed steps, {options.threads} thread(s)\n")
    print("| trainer | expert implementation | tokens/s | ratio to bare HF | expert share of forward |")
    print("|---|---|---|---|---|")
    print(f"| litforge MoECausalLM (Lightning) | grouped_mm (default) | {ours:,.0f} | {ours / bare:.2f} | - |")
    print(f"| bare loop, HF MixtralForCausalLM | grouped_mm (default) | {bare:,.0f} | 1.00 | {share:.0%} |")
    print(f"| bare loop, HF MixtralForCausalLM | eager (per-expert loop) | {eager:,.0f} | {eager / bare:.2f} | "
          f"{eager_share:.0%} |")


if __name__ == "__main__":
    main()
