"""Miniature of Self-Rewarding Language Models (Yuan et al. 2024): task accuracy and judge agreement per iteration.

A 128-wide 2-layer Llama is fine-tuned on both solving (IFT) and grading (EFT) synthetic arithmetic with chain of
thought (M0, the seed). Two self-rewarding iterations follow inside one `fit`: the policy samples 4 answers per new
question (temperature 0.7, top-p 0.9), judges each 3 times with the EFT prompt (mean of the parsed "Score: N"), pairs
best vs worst (ties dropped) and trains with DPO (beta 0.1) from itself as the reference. For M0, M1 and M2:
held-out task accuracy (greedy, exact final answer) and the judge's agreement with the true grade (the 0-5 rubric of
`litforge.datamodules.arithmetic.grade_points`) on 120 fixed test-split responses balanced over grades; for each
boundary: the judge's mean score of the candidates, its parse failures, the pairs built, and the shares of pairs whose
chosen response truly grades above, equal to or below the rejected one.

Controls (each reuses the seed model): `--judge true` pairs by the true grade instead of the policy's own judgement
(what a perfect judge would give the same DPO), `--alpha 1` adds the NLL term on the chosen response (DPO+NLL).

    python benchmarks/papers/self_reward.py                # one seed, ~7 min on one thread
    python benchmarks/papers/self_reward.py --seeds 0 1    # two seeds
    python benchmarks/papers/self_reward.py --judge true --alpha 1   # control: oracle judge, DPO+NLL
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
from litforge.datamodules import ArithmeticIterativeDataModule, SelfRewardSeedDataModule
from litforge.datamodules.arithmetic import GRADE_TEMPLATE, true_grade
from litforge.lightning_modules import CausalLM
from litforge.lightning_modules.self_reward import SelfRewarding
from litforge.plugins.judges import AnswerJudge, Judge, LLMJudge
from litforge.plugins.pair_rules import BestVsWorst

from litforge.backbones import LocalCheckpoint, TinyModel
from litforge.iterations import load_iteration


class TrueGradeJudge(Judge):
    """The control judge: the true grade of the response (`true_grade`), read from the question's operands."""

    def score(self, prompts, responses, references=None):
        return [float(true_grade([int(x) for x in p.rstrip("=").split("+")], r)) for p, r in zip(prompts, responses)]


def run_name(seed: int, args) -> str:
    """The folder of one self-rewarding run: the seed, plus the controls that differ from the paper's setting."""
    return f"self_reward_seed{seed}" + ("_true_judge" if args.judge == "true" else "") + (
        f"_alpha{args.alpha:g}" if args.alpha else "")


def trainer(root: Path, **kwargs) -> L.Trainer:
    """A quiet CPU trainer (no logger files, no checkpoints)."""
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=str(root), gradient_clip_val=1.0, **kwargs)


def seed_model(out: Path, seed: int, args) -> Path:
    """M0: a fresh 128-wide 2-layer Llama fine-tuned on IFT + EFT arithmetic, saved as a HF directory."""
    target = out / f"seed_seed{seed}"
    if (target / "config.json").is_file():
        return target
    L.seed_everything(seed)
    data = SelfRewardSeedDataModule(num_train=args.ift, num_eft=args.eft, num_val=0, num_test=0, batch_size=32,
                                    seed=seed, max_operand=args.max_operand, task_seed=1)
    module = CausalLM(backbone=TinyModel(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                         max_position_embeddings=128, seed=seed), tokenizer=data.tokenizer,
                      optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))
    trainer(out / "seed_run", max_steps=args.seed_steps).fit(module, data)
    module.model.save_pretrained(target)
    data.tokenizer.save_pretrained(target)
    return target


def self_reward(out: Path, start: Path, seed: int, args) -> dict:
    """Two self-rewarding iterations from the seed; returns `iterations/final.json`."""
    root = out / run_name(seed, args)
    final = root / "iterations" / "final.json"
    if final.is_file():
        return json.loads(final.read_text())
    L.seed_everything(seed)
    judge = LLMJudge(template=GRADE_TEMPLATE, samples=3, temperature=0.7, top_p=0.9, max_new_tokens=40, seed=seed)
    data = ArithmeticIterativeDataModule(
        num_train=args.questions * args.iterations, prompts_per_iteration=args.questions, num_val=args.heldout,
        batch_size=16, seed=seed, max_operand=args.max_operand, tokenizer=str(start))
    module = SelfRewarding(backbone=LocalCheckpoint(str(start)), tokenizer=data.tokenizer,
                           judge=TrueGradeJudge() if args.judge == "true" else judge, pair_rule=BestVsWorst(),
                           heldout_judge=AnswerJudge(), num_judge_heldout=args.graded, iterations=args.iterations,
                           epochs_per_iteration=args.epochs, candidates=4, temperature=0.7, top_p=0.9,
                           max_new_tokens=24, num_heldout=args.heldout, seed=seed, beta=0.1, alpha=args.alpha,
                           optimizer=lambda params: torch.optim.AdamW(params, lr=args.lr))
    trainer(root).fit(module, data)
    return json.loads(final.read_text())


def pair_order(run: Path, k: int) -> str:
    """"right/tie/wrong": shares of iteration k's pairs whose chosen response truly grades above, equal to or below
    the rejected one."""
    pairs, _ = load_iteration(run, k)
    signs = []
    for row in pairs:
        operands = [int(x) for x in row["prompt"].rstrip("=").split("+")]
        difference = true_grade(operands, row["chosen"]) - true_grade(operands, row["rejected"])
        signs.append((difference > 0) - (difference < 0))
    return "/".join(f"{signs.count(sign) / max(len(signs), 1):.2f}" for sign in (1, 0, -1))


def histogram(counts: dict[str, int]) -> str:
    """"0:20 1:5 ..." from {"0": 20, "1": 5, ...}."""
    return " ".join(f"{score}:{n}" for score, n in counts.items())


def by_grade(stats: dict) -> str:
    """The judge's mean score per true grade, "0.1 0.9 ..." (absent in runs made before it was logged)."""
    return " ".join(f"{value:.1f}" for value in stats.get("judge_mean_by_grade", {}).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seed-steps", type=int, default=1500, help="IFT + EFT fine-tuning steps (batch 32)")
    parser.add_argument("--ift", type=int, default=2000, help="solving examples")
    parser.add_argument("--eft", type=int, default=2000, help="grading examples")
    parser.add_argument("--max-operand", type=int, default=49, help="operands are 10..max (3 terms)")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per iteration")
    parser.add_argument("--questions", type=int, default=400, help="new questions each iteration")
    parser.add_argument("--heldout", type=int, default=200, help="held-out questions for task accuracy")
    parser.add_argument("--graded", type=int, default=120, help="graded test responses for judge agreement")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--alpha", type=float, default=0.0, help="NLL weight (0 = the paper's plain DPO)")
    parser.add_argument("--judge", choices=["self", "true"], default="self",
                        help="self = the policy judges (the method); true = the true grade (control)")
    parser.add_argument("--out", default="runs/bench/self_reward")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    started = time.perf_counter()
    print(f"judge: {'the policy itself' if args.judge == 'self' else 'the true grade (control; agreement is then 1)'}"
          f", DPO beta 0.1, NLL alpha {args.alpha:g}\n")
    print("| seed | model | held-out accuracy | judge agreement | judge MAE | judge mean (graded) | judge scores "
          "(graded, rounded) | no verdict (graded) | candidates' mean self-score | reply parse failures | pairs | "
          "pairs right/tie/wrong by true grade | judge mean score by true grade 0..5 (graded) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        start = seed_model(out, seed, args)
        seeded = time.perf_counter()
        summary = self_reward(out, start, seed, args)
        its = summary["iterations"]
        models = [its[str(k)] for k in range(args.iterations)] + [summary]
        for k, stats in enumerate(models):
            boundary = "" if k == args.iterations else (
                f" {stats['mean_score']:.2f} | {stats['judge_failures']} | {stats['pairs']} | "
                f"{pair_order(out / run_name(seed, args), k)} |")
            print(f"| {seed} | M{k} | {stats['heldout_score']:.3f} | {stats['judge_agreement']:.3f} | "
                  f"{stats['judge_mae']:.2f} | {stats['judge_heldout_mean']:.2f} | "
                  f"{histogram(stats['judge_histogram'])} | {stats['judge_heldout_failures']} |"
                  + (boundary or " | | | |") + f" {by_grade(stats)} |", flush=True)
        print(f"[seed {seed}: seed model {seeded - started:.0f}s, total {time.perf_counter() - started:.0f}s]",
              flush=True)
    print(f"\nM0 = IFT+EFT seed, Mk = after k self-rewarding iterations; accuracy on {args.heldout} held-out questions "
          f"(greedy); agreement = rounded mean of 3 judge samples equals the true grade, on {args.graded} graded "
          f"test responses (a constant judge agrees on ~1/6); reply parse failures are out of 3 replies per distinct "
          f"candidate (at most 3 x 4 x {args.questions}); total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
