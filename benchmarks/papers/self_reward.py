"""Miniature of Self-Rewarding Language Models (Yuan et al. 2024): held-out accuracy and judge agreement of the
seed model M1 and of M2, M3 after self-rewarding iterations, against the same loop with an oracle judge.

    python benchmarks/papers/self_reward.py [--seeds 0 1 2] [--workers 2] [--workdir /tmp/litforge_self_reward]
        [--reuse]   # keep the seed models and runs a previous call finished in --workdir (e.g. one seed at a time)

Every training run is the README's command on configs/self_reward/*.yaml as shipped: the seed model M1 (SFT on
solving, IFT, and grading, EFT, of 3-term arithmetic, stopped once its validation exact-match rate passes 0.3), its
export, then 2 self-rewarding iterations inside one fit (4 samples
per new question, each judged 3 times by the model itself with the EFT prompt, best vs worst, DPO beta 0.1). The
oracle control is the same fit with `--model.init_args.judge=AnswerJudge` (a judge that knows the answer: 1 for a
correct final answer, else 0), run in its own directory with the seed model given by absolute path. Each seed runs
in its own working directory; the seed overrides, all printed, are `--seed_everything`, the seed TinyModel's init
seed, the datamodules' seed (batch order) and the self-rewarding model's generation and judging seed. Questions
(`task_seed`) are the same for every seed. Numbers are what each run logs in `iterations/final.json`: held-out
accuracy (greedy, 100 questions) and the judge's exact agreement with the true 0-5 grade of 120 fixed responses
(a constant judge agrees on about 0.17). The last column reads the pairs each iteration trained on: how many put a
response with the correct final answer over one without (the order the oracle always gives), and how many the reverse.

Departures from the paper: a 128-wide 2-layer Llama on synthetic arithmetic with a 5-point rubric the seed learns
from EFT data; the seed's SFT stops at a target validation accuracy rather than after a fixed length; 2 iterations
(M2, M3); the oracle judge scores correctness only (0/1), not the 5-point rubric.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from common import PINNED_ENV, ROOT, cli_command, machine_report, markdown_table, mean_range, run_many, save_json
from litforge.datamodules.arithmetic import extract_answer

CONFIGS = ROOT / "configs" / "self_reward"
RESULTS = Path(__file__).resolve().parent / "results"
ITERATIONS = 2


def config(name: str) -> str:
    """Absolute path of configs/self_reward/<name>.yaml (each seed runs in its own working directory)."""
    return str(CONFIGS / f"{name}.yaml")


def read_final(path: Path) -> dict[str, list]:
    """Held-out accuracy, judge agreement (M1..M3), pairs built and their order (per iteration) from a run's
    final.json and the iter_<k>.jsonl pairs beside it."""
    summary = json.loads(path.read_text())
    models = [summary["iterations"][str(k)] for k in range(ITERATIONS)] + [summary]
    return {"accuracy": [m["heldout_score"] for m in models], "agreement": [m["judge_agreement"] for m in models],
            "pairs": [summary["iterations"][str(k)]["pairs"] for k in range(ITERATIONS)],
            "order": [pair_order(path.with_name(f"iter_{k}.jsonl")) for k in range(ITERATIONS)]}


def pair_order(path: Path) -> list[int]:
    """[right, wrong]: pairs whose chosen response has the correct final answer and the rejected one not, and the
    reverse (the rest have both or neither correct): how well the judge ordered the policy's own samples."""
    right = wrong = 0
    for line in path.read_text().splitlines():
        row = json.loads(line)
        chosen, rejected = (extract_answer(row[key]) == int(row["reference"]) for key in ("chosen", "rejected"))
        right, wrong = right + (chosen and not rejected), wrong + (rejected and not chosen)
    return [right, wrong]


def seed_steps(directory: Path) -> int:
    """The optimizer steps the seed fit in `directory` trained before its early stop (its CSV log's last step + 1)."""
    rows = (directory / "runs" / "self_reward" / "seed_run" / "csv" / "version_0" / "metrics.csv").read_text()
    return 1 + max(int(line.split(",")[1]) for line in rows.splitlines()[1:] if line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--workdir", default="/tmp/litforge_self_reward")
    parser.add_argument("--reuse", action="store_true", help="keep finished seed models and runs in --workdir")
    options = parser.parse_args()
    work = Path(options.workdir)
    if not options.reuse:
        shutil.rmtree(work, ignore_errors=True)
    dirs = {seed: work / f"seed{seed}" for seed in options.seeds}
    for directory in dirs.values():
        (directory / "oracle").mkdir(parents=True, exist_ok=True)
    started = time.time()
    print(machine_report(threads=1, workers=options.workers) + "\n")

    def seeded(s: int) -> list[str]:
        return [f"--seed_everything={s}", f"--data.init_args.seed={s}"]

    fresh = [s for s in options.seeds if not (dirs[s] / "runs" / "self_reward" / "seed" / "config.json").is_file()]
    print("".join(f"(seed {s}: reusing the seed model in {dirs[s]})\n" for s in options.seeds if s not in fresh))
    run_many([(cli_command("fit", config("seed"), *seeded(s), f"--model.init_args.backbone.init_args.seed={s}"),
               dirs[s]) for s in fresh], options.workers)
    for s in fresh:
        export = ["litforge", "export", "runs/self_reward/seed_run/checkpoints/last.ckpt", "runs/self_reward/seed"]
        print("$ " + shlex.join(export) + f"   (in {dirs[s]})", flush=True)
        subprocess.run(export, cwd=dirs[s], env={**os.environ, **PINNED_ENV}, check=True, stdout=subprocess.DEVNULL)

    def oracle(s: int) -> list[str]:
        start = str(dirs[s] / "runs" / "self_reward" / "seed")
        return ["--model.init_args.judge=AnswerJudge", f"--model.init_args.backbone.init_args.path={start}",
                f"--data.init_args.tokenizer={start}"]

    final = Path("runs") / "self_reward" / "run" / "iterations" / "final.json"
    runs = {"self-rewarding": [(dirs[s], []) for s in options.seeds],
            "oracle judge": [(dirs[s] / "oracle", oracle(s)) for s in options.seeds]}
    jobs = [(cli_command("fit", config("self_reward"), *seeded(s), f"--model.init_args.seed={s}", *extra), cwd)
            for name in runs for s, (cwd, extra) in zip(options.seeds, runs[name])]
    print("".join(f"(reusing the finished run in {cwd})\n" for _, cwd in jobs if (cwd / final).is_file()))
    run_many([(args, cwd) for args, cwd in jobs if not (cwd / final).is_file()], options.workers)
    per_seed = {name: [read_final(cwd / final) for cwd, _ in jobs] for name, jobs in runs.items()}

    own, control = per_seed["self-rewarding"], per_seed["oracle judge"]
    def per_iteration(k: int) -> list[str]:
        if k == ITERATIONS:
            return ["", ""]
        built = " / ".join(f"{sum(r['pairs'][k] for r in rows) / len(rows):.0f}" for rows in (own, control))
        return [built, " / ".join(f"{sum(r['order'][k][i] for r in own) / len(own):.0f}" for i in (0, 1))]

    table = [[f"M{k + 1}" + (" (seed)" if k == 0 else ""), mean_range([r["accuracy"][k] for r in own]),
              mean_range([r["agreement"][k] for r in own]), mean_range([r["accuracy"][k] for r in control]),
              *per_iteration(k)] for k in range(ITERATIONS + 1)]
    print(f"\nSelf-rewarding miniature: seeds {options.seeds}, mean (min–max) over seeds; "
          f"{time.time() - started:.0f} s with {options.workers} runs at a time\n")
    print(markdown_table(["model", "held-out accuracy (self-judged)", "judge agreement (self-judged)",
                          "held-out accuracy (oracle judge)", "pairs built (self / oracle)",
                          "self-judged pairs: correct over wrong / wrong over correct"], table))
    steps = [seed_steps(dirs[s]) for s in options.seeds]
    print("\nPer seed (M1 -> M2 -> M3):")
    for s, trained, mine, theirs in zip(options.seeds, steps, own, control):
        print(f"seed {s}: seed SFT stopped at step {trained}; held-out accuracy self-judged "
              + " -> ".join(f"{v:.2f}" for v in mine["accuracy"]) + ", oracle judge "
              + " -> ".join(f"{v:.2f}" for v in theirs["accuracy"]) + "; judge agreement "
              + " -> ".join(f"{v:.3f}" for v in mine["agreement"]))
    save_json(RESULTS / "self_reward.json", {"seeds": options.seeds, "per_seed": per_seed, "seed_steps": steps,
                                             "machine": machine_report(1, options.workers)})


if __name__ == "__main__":
    main()
