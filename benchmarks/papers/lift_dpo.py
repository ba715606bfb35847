"""Miniature of LIFT-DPO (Yuan et al. 2024): DPO on length-biased pairs learns to ignore word limits; LIFT-DPO obeys.

From one starting model (SFT on the synthetic list task, which has seen length instructions but learned to ignore
them) we train plain DPO on the length-biased pairs and LIFT-DPO on the same pairs plus their length-instructed,
relabelled copies (same loss, steps, learning rate and seed). Then, with greedy decoding:

- on held-out length-instructed prompts: violation rate (share over the limit), mean words/limit, and the
  length-instructed score (share of responses that are good *and* within the limit: a violation counts as a loss);
- on unconstrained prompts: quality (share of good lists) and mean words.

    python benchmarks/papers/lift_dpo.py              # about 4 minutes on one thread
    python benchmarks/papers/lift_dpo.py --alpha 0    # pure DPO (no NLL term): see the README for what happens

Departure: the preference loss is the family's DPO with the NLL term (alpha = 1) by default, because pure DPO
collapsed the tiny model's output format here (as PAPERS.md's calibration notes for plain DPO); `--alpha 0` runs it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import lightning as L
import torch
from litforge.datamodules import LengthBiasedPreferenceDataModule, LengthBiasedSFTDataModule, LengthInstructedDataModule
from litforge.datamodules.list_task import LengthBiasedTask
from litforge.lightning_modules.causal_lm import CausalLM
from litforge.lightning_modules.lift_dpo import LiftDPO

from litforge.backbones import LocalCheckpoint, TinyModel
from litforge.generation import generate
from litforge.length import LengthInstruction, count_words, violation_rate, words_per_limit

TASK = LengthBiasedTask()
TEMPLATE = LengthInstruction()


def trainer(steps: int) -> L.Trainer:
    """A quiet CPU trainer for `steps` optimizer steps, no validation or checkpoints."""
    return L.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     gradient_clip_val=1.0)


def train_start(out_dir: str, steps: int, seed: int) -> str:
    """SFT the starting model on demonstrations and save it as a Hugging Face directory."""
    L.seed_everything(seed, verbose=False)
    backbone = TinyModel(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128,
                         seed=seed)
    module = CausalLM(backbone=backbone, optimizer=partial(torch.optim.AdamW, lr=3e-3))
    data = LengthBiasedSFTDataModule(num_train=3000, num_val=0, batch_size=32, task_seed=seed)
    trainer(steps).fit(module, datamodule=data)
    module.model.save_pretrained(out_dir)
    module.tokenizer.save_pretrained(out_dir)
    return out_dir


def train_preference(start: str, lift: bool, steps: int, lr: float, beta: float, alpha: float, seed: int) -> LiftDPO:
    """Plain DPO (lift=False) or LIFT-DPO from the starting model; returns the trained module."""
    L.seed_everything(seed, verbose=False)
    module = LiftDPO(backbone=LocalCheckpoint(start), beta=beta, alpha=alpha,
                     optimizer=partial(torch.optim.AdamW, lr=lr))
    source = LengthBiasedPreferenceDataModule(num_train=2000, num_val=0, num_length_prompts=0, batch_size=32,
                                              task_seed=seed)
    data = LengthInstructedDataModule(source=source, ratio=1.0, batch_size=32, seed=seed) if lift else source
    trainer(steps).fit(module, datamodule=data)
    return module


def evaluate(model, tokenizer, seed: int) -> dict[str, float]:
    """Greedy generations on 200 length-instructed and 200 unconstrained held-out prompts, scored."""
    prompts = TASK.length_prompts(200, 10_000 + seed, TEMPLATE)
    limits = [p["max_len"] for p in prompts]
    constrained = [t[0] for t in generate(model, tokenizer, [p["prompt"] for p in prompts], max_new_tokens=48,
                                          temperature=0).texts]
    plain = [TASK.prompt(topic) for topic in TASK.topics] * 25
    unconstrained = [t[0] for t in generate(model, tokenizer, plain, max_new_tokens=48, temperature=0).texts]
    scored = [TASK.is_good(p["instruction"], r) and count_words(r) <= p["max_len"]
              for p, r in zip(prompts, constrained)]
    return {"violation": violation_rate(constrained, limits), "words/limit": words_per_limit(constrained, limits),
            "li_score": sum(scored) / len(scored),
            "quality": sum(TASK.is_good(p, r) for p, r in zip(plain, unconstrained)) / len(plain),
            "words": sum(map(count_words, unconstrained)) / len(unconstrained)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-steps", type=int, default=400)
    parser.add_argument("--steps", type=int, default=200, help="preference steps (both methods)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of the NLL term on chosen responses")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = train_start(os.path.join(tmp, "start"), args.sft_steps, args.seed)
        module = LiftDPO(backbone=LocalCheckpoint(start))
        module.configure_model()
        rows["start (SFT)"] = evaluate(module.model, module.tokenizer, args.seed)
        for name, lift in [("DPO", False), ("LIFT-DPO", True)]:
            trained = train_preference(start, lift, args.steps, args.lr, args.beta, args.alpha, args.seed)
            rows[name] = evaluate(trained.model, trained.tokenizer, args.seed)
    print(f"\nLIFT-DPO miniature: seed {args.seed}, {args.steps} preference steps, lr {args.lr}, beta {args.beta}, "
          f"alpha {args.alpha}, {time.time() - started:.0f}s")
    print("| model | violation rate (LI) | words/limit (LI) | LI score | quality (unconstrained) | words (unconstr.) |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['violation']:.3f} | {row['words/limit']:.2f} | {row['li_score']:.3f} | "
              f"{row['quality']:.3f} | {row['words']:.2f} |")


if __name__ == "__main__":
    main()
