"""Miniature of Iterative Reasoning Preference Optimization (Pang et al. 2024): greedy held-out accuracy per iteration
of DPO+NLL, plain DPO and an NLL-only control, from one SFT model.

    python benchmarks/papers/iterative_rpo.py [--seeds 0 1 2] [--workers 2] [--workdir /tmp/litforge_iterative_rpo]
        [--reuse]   # keep the SFT models and runs a previous call finished in --workdir

Every training run is the README's command on configs/iterative_rpo/*.yaml as shipped: SFT on chain-of-thought
3-term arithmetic, its export, then 3 iterations inside one fit (8 samples per question on 200 questions,
AnswerJudge, up to 4 correct-vs-incorrect pairs per question, reference re-anchored at each boundary). DPO+NLL is
dpo_nll.yaml, DPO is dpo.yaml (alpha 0), and the NLL-only control is dpo_nll.yaml with `--model.init_args.beta=1e-6`
(DPONLL refuses beta 0; at 1e-6 the DPO term's gradient, about beta/2 times the margin's, is negligible beside the
NLL's), run in its own directory with the start model given by absolute path. Each seed runs in its own working
directory; the seed overrides, all printed, are `--seed_everything`, the SFT TinyModel's init seed, the datamodules'
seed (batch order) and the iterative model's generation seed. Questions (`task_seed`) are the same for every seed.
M0..M3 are `heldout_score` as each run logs it in `iterations/final.json`: greedy exact-answer accuracy on the 200
held-out questions of the model entering each iteration (M0 = the SFT model) and after the last.

Departures from the paper: a 128-wide 2-layer Llama and synthetic arithmetic; 1 epoch per iteration; the Cringe
variant (cringe.yaml) is not in the table, to keep the run within 15 minutes.
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

CONFIGS = ROOT / "configs" / "iterative_rpo"
RESULTS = Path(__file__).resolve().parent / "results"
ITERATIONS = 3


def config(name: str) -> str:
    """Absolute path of configs/iterative_rpo/<name>.yaml (each seed runs in its own working directory)."""
    return str(CONFIGS / f"{name}.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--workdir", default="/tmp/litforge_iterative_rpo")
    parser.add_argument("--reuse", action="store_true", help="keep finished SFT models and runs in --workdir")
    options = parser.parse_args()
    work = Path(options.workdir)
    if not options.reuse:
        shutil.rmtree(work, ignore_errors=True)
    dirs = {seed: work / f"seed{seed}" for seed in options.seeds}
    for directory in dirs.values():
        (directory / "nll_only").mkdir(parents=True, exist_ok=True)
    started = time.time()
    print(machine_report(threads=1, workers=options.workers) + "\n")

    def seeded(s: int) -> list[str]:
        return [f"--seed_everything={s}", f"--data.init_args.seed={s}"]

    fresh = [s for s in options.seeds if not (dirs[s] / "runs" / "iterative_rpo" / "start" / "config.json").is_file()]
    print("".join(f"(seed {s}: reusing the SFT model in {dirs[s]})\n" for s in options.seeds if s not in fresh))
    run_many([(cli_command("fit", config("sft"), *seeded(s), f"--model.init_args.backbone.init_args.seed={s}"),
               dirs[s]) for s in fresh], options.workers)
    for s in fresh:
        export = ["litforge", "export", "runs/iterative_rpo/sft/checkpoints/last.ckpt", "runs/iterative_rpo/start"]
        print("$ " + shlex.join(export) + f"   (in {dirs[s]})", flush=True)
        subprocess.run(export, cwd=dirs[s], env={**os.environ, **PINNED_ENV}, check=True, stdout=subprocess.DEVNULL)

    def iterative(s: int) -> list[str]:
        return [*seeded(s), f"--model.init_args.seed={s}"]

    def nll_only(s: int) -> list[str]:
        start = str(dirs[s] / "runs" / "iterative_rpo" / "start")
        return [*iterative(s), "--model.init_args.beta=1e-6", f"--model.init_args.backbone.init_args.path={start}",
                f"--data.init_args.tokenizer={start}"]

    methods = {"DPO+NLL": ("dpo_nll", lambda s: (iterative(s), dirs[s])),
               "DPO": ("dpo", lambda s: (iterative(s), dirs[s])),
               "NLL only": ("dpo_nll", lambda s: (nll_only(s), dirs[s] / "nll_only"))}
    jobs, finals = [], {}
    for name, (yaml, make) in methods.items():
        for s in options.seeds:
            overrides, cwd = make(s)
            jobs.append((cli_command("fit", config(yaml), *overrides), cwd))
            finals[name, s] = cwd / "runs" / "iterative_rpo" / yaml / "iterations" / "final.json"
    print("".join(f"(reusing the finished run in {cwd})\n" for (_, cwd), final in zip(jobs, finals.values())
                  if final.is_file()))
    run_many([job for job, final in zip(jobs, finals.values()) if not final.is_file()], options.workers)

    per_seed = {}
    for name in methods:
        per_seed[name] = []
        for s in options.seeds:
            summary = json.loads(finals[name, s].read_text())
            its = summary["iterations"]
            per_seed[name].append({"heldout": [its[str(k)]["heldout_score"] for k in range(ITERATIONS)]
                                   + [summary["heldout_score"]],
                                   "pairs": [its[str(k)]["pairs"] for k in range(ITERATIONS)],
                                   "sampled_accuracy": [its[str(k)]["accuracy"] for k in range(ITERATIONS)]})
    table = [[name, *(mean_range([r["heldout"][k] for r in rows]) for k in range(ITERATIONS + 1)),
              " / ".join(f"{sum(r['pairs'][k] for r in rows) / len(rows):.0f}" for k in range(ITERATIONS))]
             for name, rows in per_seed.items()]
    print(f"\nIterative RPO miniature: seeds {options.seeds}, greedy held-out accuracy (200 questions), "
          f"mean (min–max) over seeds; {time.time() - started:.0f} s with {options.workers} runs at a time\n")
    print(markdown_table(["method", *(f"M{k}" + (" (SFT)" if k == 0 else "") for k in range(ITERATIONS + 1)),
                          "pairs per iteration (mean)"], table))
    save_json(RESULTS / "iterative_rpo.json", {"seeds": options.seeds, "per_seed": per_seed,
                                               "machine": machine_report(1, options.workers)})


if __name__ == "__main__":
    main()
