"""Miniature of Iterative Reasoning Preference Optimization (Pang et al. 2024): held-out accuracy per iteration.

From an SFT model on synthetic multi-step arithmetic with chain of thought, each method runs `--iterations` rounds
inside one `fit`: sample N candidates per training question, AnswerJudge marks them correct or incorrect, up to K
correct-vs-incorrect pairs per question, train, re-anchor the reference. Methods: DPO+NLL (alpha 1), plain DPO
(alpha 0) and an NLL-only control (beta 0: the DPO term is constant, only the chosen NLL trains), per
shared/PAPERS.md. Accuracy is greedy exact match of the final answer on held-out questions, for the model entering
each iteration (iteration 0 = the SFT model) and after the last one.

    python benchmarks/papers/iterative_rpo.py                # one seed, ~10 min on one thread
    python benchmarks/papers/iterative_rpo.py --seeds 0 1    # two seeds
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import lightning as L
import torch
from litforge.datamodules import ArithmeticIterativeDataModule, ArithmeticSFTDataModule
from litforge.lightning_modules import CausalLM, IterativeRPO
from litforge.plugins.judges import AnswerJudge
from litforge.plugins.pair_rules import CorrectVsIncorrect

from litforge.backbones import LocalCheckpoint, TinyModel

METHODS = {"DPO+NLL": dict(beta=0.1, alpha=1.0), "DPO": dict(beta=0.1, alpha=0.0),
           "NLL only": dict(beta=0.0, alpha=1.0)}


def trainer(root: Path, **kwargs) -> L.Trainer:
    """A quiet CPU trainer (no logger files, no checkpoints)."""
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=str(root), gradient_clip_val=1.0, **kwargs)


def sft(out: Path, seed: int, steps: int, max_operand: int) -> Path:
    """Fine-tune a fresh 128-wide 2-layer Llama on chain-of-thought arithmetic; save it as a HF directory."""
    target = out / f"sft_seed{seed}"
    if (target / "config.json").is_file():
        return target
    L.seed_everything(seed)
    data = ArithmeticSFTDataModule(num_train=2000, num_val=0, num_test=0, batch_size=32, seed=seed,
                                   max_operand=max_operand)
    module = CausalLM(backbone=TinyModel(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                         max_position_embeddings=64, seed=seed), tokenizer=data.tokenizer,
                      optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))
    trainer(out / "sft_run", max_steps=steps).fit(module, data)
    module.model.save_pretrained(target)
    data.tokenizer.save_pretrained(target)
    return target


def iterate(out: Path, start: Path, seed: int, name: str, args) -> dict:
    """One method's iterative run from the SFT model; returns `iterations/final.json`."""
    root = out / f"{name.replace(' ', '_').replace('+', '_')}_seed{seed}"
    final = root / "iterations" / "final.json"
    if final.is_file():
        return json.loads(final.read_text())
    L.seed_everything(seed)
    data = ArithmeticIterativeDataModule(num_train=args.questions, num_val=args.heldout, batch_size=16, seed=seed,
                                         max_operand=args.max_operand, tokenizer=str(start))
    module = IterativeRPO(backbone=LocalCheckpoint(str(start)), tokenizer=data.tokenizer, **METHODS[name],
                          judge=AnswerJudge(), pair_rule=CorrectVsIncorrect(max_pairs=args.pairs),
                          iterations=args.iterations, epochs_per_iteration=args.epochs, candidates=args.candidates,
                          temperature=0.8, max_new_tokens=24, num_heldout=args.heldout, seed=seed,
                          optimizer=lambda params: torch.optim.AdamW(params, lr=args.lr))
    trainer(root).fit(module, data)
    return json.loads(final.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--sft-steps", type=int, default=400)
    parser.add_argument("--max-operand", type=int, default=49, help="operands are 10..max (3 terms)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per iteration")
    parser.add_argument("--questions", type=int, default=400, help="training questions sampled each iteration")
    parser.add_argument("--candidates", type=int, default=8, help="samples per question (N)")
    parser.add_argument("--pairs", type=int, default=4, help="pairs per question at most (K)")
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", default="runs/bench/iterative_rpo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    started = time.perf_counter()
    rows = []
    for seed in args.seeds:
        start = sft(out, seed, args.sft_steps, args.max_operand)
        for name in args.methods:
            summary = iterate(out, start, seed, name, args)
            its = summary["iterations"]
            accuracy = [its[str(k)]["heldout_score"] for k in range(args.iterations)] + [summary["heldout_score"]]
            pairs = [its[str(k)]["pairs"] for k in range(args.iterations)]
            train_acc = [its[str(k)]["accuracy"] for k in range(args.iterations)]
            rows.append((name, seed, accuracy, pairs, train_acc))
            print(f"[{time.perf_counter() - started:6.0f}s] {name} seed {seed}: held-out {accuracy}", flush=True)
    header = " | ".join(f"M{k}" for k in range(args.iterations + 1))
    print(f"\n| method | seed | {header} | pairs per iteration | sampled accuracy per iteration |")
    print("|---|---|" + "---|" * (args.iterations + 1) + "---|---|")
    for name, seed, accuracy, pairs, train_acc in rows:
        cells = " | ".join(f"{a:.3f}" for a in accuracy)
        print(f"| {name} | {seed} | {cells} | {pairs} | {[round(a, 3) for a in train_acc]} |")
    for name in args.methods:
        mine = [accuracy for n, _, accuracy, _, _ in rows if n == name]
        mean = [sum(column) / len(column) for column in zip(*mine)]
        print(f"| {name} | mean | " + " | ".join(f"{a:.3f}" for a in mean) + " | | |")
    print(f"\nM0 = SFT model, Mk = after k iterations; {args.heldout} held-out questions, greedy decoding; "
          f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
