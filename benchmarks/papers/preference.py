"""Miniature of DPO+NLL (Pang et al. 2024) and pairwise Cringe (Xu et al. 2023) on synthetic chain-of-thought
arithmetic: from one SFT start, does adding the NLL term to DPO help held-out accuracy, and how does pairwise Cringe
compare? Every training run is a shipped config run as a user types it.

    python benchmarks/papers/preference.py [--seeds 0 1 2] [--workers 2] [--workdir /tmp/litforge_preference]

Per seed, in its own working directory (the configs read and write relative runs/... paths): README's SFT command
(`litforge fit --config configs/sft/arithmetic.yaml` and `litforge export ...`), then from that start, at the shipped
lengths: configs/dpo_nll/dpo_arithmetic.yaml (DPO, alpha 0), configs/dpo_nll/arithmetic.yaml (DPO+NLL),
configs/cringe/arithmetic.yaml (pairwise Cringe) and the NLL-only control: the Cringe config with
`--model.init_args.alpha=0` (loss = length-normalised NLL of the chosen answer alone, the NLL term of DPO+NLL without
the DPO term; DPONLL refuses beta 0), run in a subdirectory with the SFT start's absolute path. Seed overrides, all
printed: `--seed_everything`, the datamodules' shuffle seed and (SFT) the TinyModel's init seed; the questions and
the wrong answers paired with them (`task_seed`) are the same for every seed.
Score: final-answer accuracy of greedy decoding (`litforge.generation.generate`, temperature 0) on 300 held-out test
questions (disjoint from every training question by construction), of each run's last checkpoint, in a pinned process.

Departures from the papers: a 128-wide 2-layer Llama, 3-term 2-digit sums; pairs are (correct, corrupted) solutions
written by the task, not sampled from the model; a few hundred steps.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import yaml
from common import (
    PINNED_ENV,
    ROOT,
    call_pinned,
    cli_command,
    machine_report,
    markdown_table,
    mean_range,
    run_many,
    save_json,
)

CONFIGS = ROOT / "configs"
RESULTS = Path(__file__).resolve().parent / "results"
START = "runs/sft_arithmetic/hf"
# label -> (config, extra overrides, subdirectory of the seed's directory, run directory the config writes)
METHODS = {"DPO (alpha 0)": ("dpo_nll/dpo_arithmetic", [], ".", "runs/dpo_arithmetic"),
           "DPO+NLL (alpha 1)": ("dpo_nll/arithmetic", [], ".", "runs/dpo_nll_arithmetic"),
           "NLL only (Cringe, alpha 0)": ("cringe/arithmetic", ["--model.init_args.alpha=0"], "nll",
                                          "runs/cringe_arithmetic"),
           "pairwise Cringe": ("cringe/arithmetic", [], ".", "runs/cringe_arithmetic")}


def accuracy(checkpoints: list[str], num_test: int) -> list[float]:
    """Greedy final-answer accuracy of each checkpoint on `num_test` held-out questions of the SFT config's task."""
    from litforge.datamodules import ArithmeticSFTDataModule
    from litforge.datamodules.arithmetic import extract_answer

    from litforge.checkpoint import model_from_checkpoint
    from litforge.generation import generate

    task = {key: value for key, value in yaml.safe_load((CONFIGS / "sft/arithmetic.yaml").read_text())["data"]
            ["init_args"].items() if key in ("num_terms", "min_operand", "max_operand", "task_seed")}
    questions = ArithmeticSFTDataModule(num_train=0, num_val=0, num_test=num_test, **task).questions("test")
    scores = []
    for checkpoint in checkpoints:
        model, tokenizer = model_from_checkpoint(checkpoint)
        out = generate(model, tokenizer, [q["prompt"] for q in questions], max_new_tokens=16, temperature=0,
                       batch_size=100)
        scores.append(sum(extract_answer(t[0]) == q["answer"] for t, q in zip(out.texts, questions)) / num_test)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--workdir", default="/tmp/litforge_preference")
    parser.add_argument("--num-test", type=int, default=300, help="held-out test questions")
    options = parser.parse_args()
    work = Path(options.workdir)
    shutil.rmtree(work, ignore_errors=True)
    dirs = {seed: work / f"seed{seed}" for seed in options.seeds}
    for directory in dirs.values():
        (directory / "nll").mkdir(parents=True)
    started = time.time()
    print(machine_report(threads=1, workers=options.workers) + "\n")

    run_many([(cli_command("fit", str(CONFIGS / "sft/arithmetic.yaml"), f"--seed_everything={s}",
                           f"--model.init_args.backbone.init_args.seed={s}", f"--data.init_args.seed={s}"), dirs[s])
              for s in options.seeds], options.workers)
    for s in options.seeds:
        export = ["litforge", "export", "runs/sft_arithmetic/checkpoints/last.ckpt", START]
        print("$ " + shlex.join(export) + f"   (in {dirs[s]})", flush=True)
        subprocess.run(export, cwd=dirs[s], env={**os.environ, **PINNED_ENV}, check=True, stdout=subprocess.DEVNULL)
    jobs = []
    for s in options.seeds:
        for config, overrides, sub, _ in METHODS.values():
            start = [] if sub == "." else [f"--model.init_args.backbone.init_args.path={dirs[s] / START}"]
            jobs.append((cli_command("fit", str(CONFIGS / f"{config}.yaml"), *overrides, *start,
                                     f"--seed_everything={s}", f"--data.init_args.seed={s}"), dirs[s] / sub))
    run_many(jobs, options.workers)

    checkpoints = {"SFT start (configs/sft/arithmetic.yaml)":
                   [str(dirs[s] / "runs/sft_arithmetic/checkpoints/last.ckpt") for s in options.seeds]}
    for label, (_, _, sub, runs) in METHODS.items():
        checkpoints[label] = [str(dirs[s] / sub / runs / "checkpoints/last.ckpt") for s in options.seeds]
    flat = call_pinned(accuracy, [c for paths in checkpoints.values() for c in paths], options.num_test)
    n = len(options.seeds)
    scores = {label: flat[i * n:(i + 1) * n] for i, label in enumerate(checkpoints)}
    table = [[label, mean_range(values)] for label, values in scores.items()]

    print(f"\nPreference miniature: greedy final-answer accuracy on {options.num_test} held-out questions, mean "
          f"(min–max) over seeds {options.seeds}; {time.time() - started:.0f} s with {options.workers} runs at a "
          f"time\n")
    print(markdown_table(["model", "held-out accuracy"], table))
    save_json(RESULTS / "preference.json", {"seeds": options.seeds, "accuracy": scores, "num_test": options.num_test,
                                            "machine": machine_report(1, options.workers)})


if __name__ == "__main__":
    main()
