"""Miniature of LIFT-DPO (Yuan et al. 2024): DPO on length-biased pairs learns to ignore word limits; LIFT-DPO,
trained on the same pairs plus length-instructed relabelled copies, obeys them without losing quality.

    python benchmarks/papers/lift_dpo.py [--seeds 0 1 2] [--workers 2] [--workdir /tmp/litforge_lift_dpo]

Every training run is the README's command on configs/lift_dpo/*.yaml as shipped (SFT 400 steps, then DPO and
LIFT-DPO 200 steps each, DPO+NLL with alpha 1), each seed in its own working directory. Overrides, all printed: the
seed (`--seed_everything`, the SFT TinyModel's init seed, and the datamodules' seed, which orders the batches and,
for LIFT, draws which pairs get which limit). The task's pairs and held-out prompts (`task_seed`) are the same for
every seed, so seeds differ in init and data order only. The starting model is scored by `litforge validate` on
lift_dpo.yaml. Violation rate and words/limit are what the configs' validation logs (greedy, 200 held-out prompts
with limits of 2-10 words); quality without a limit (share of well-formed lists, greedy, one prompt per topic: 8)
is not logged by the configs and is scored here from each run's last checkpoint with litforge.generation.

Departure: the NLL term (alpha 1) is on, as in the configs: pure DPO (alpha 0) breaks the tiny model's output
format (README).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

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

CONFIGS = ROOT / "configs" / "lift_dpo"
RESULTS = Path(__file__).resolve().parent / "results"
LIMITED = "val_length/"  # the metrics of the validation set of length-instructed prompts
CHECKPOINTS = {"start (SFT)": "runs/lift_dpo/sft", "DPO": "runs/lift_dpo/dpo", "LIFT-DPO": "runs/lift_dpo/lift"}


def config(name: str) -> str:
    """Absolute path of configs/lift_dpo/<name>.yaml (each seed runs in its own working directory)."""
    return str(CONFIGS / f"{name}.yaml")


def quality(checkpoint: str) -> dict[str, float]:
    """Greedy responses to the unconstrained prompt of each topic: share of well-formed lists, and mean words."""
    from litforge.datamodules.list_task import LengthBiasedTask

    from litforge.checkpoint import model_from_checkpoint
    from litforge.generation import generate
    from litforge.length import count_words

    task = LengthBiasedTask()
    model, tokenizer = model_from_checkpoint(checkpoint)
    prompts = [task.prompt(topic) for topic in task.topics]
    responses = [texts[0] for texts in generate(model.eval(), tokenizer, prompts, temperature=0,
                                                max_new_tokens=48).texts]
    return {"quality": sum(map(task.is_good, prompts, responses)) / len(prompts),
            "words": sum(map(count_words, responses)) / len(responses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--workdir", default="/tmp/litforge_lift_dpo")
    options = parser.parse_args()
    work = Path(options.workdir)
    shutil.rmtree(work, ignore_errors=True)
    dirs = {seed: work / f"seed{seed}" for seed in options.seeds}
    for directory in dirs.values():
        (directory / "validate").mkdir(parents=True)
    started = time.time()
    print(machine_report(threads=1, workers=options.workers) + "\n")

    def seeded(s: int) -> list[str]:
        return [f"--seed_everything={s}", f"--data.init_args.seed={s}"]

    run_many([(cli_command("fit", config("sft"), *seeded(s), f"--model.init_args.backbone.init_args.seed={s}"),
               dirs[s]) for s in options.seeds], options.workers)
    for s in options.seeds:
        export = ["litforge", "export", "runs/lift_dpo/sft/checkpoints/last.ckpt", "runs/lift_dpo/start"]
        print("$ " + shlex.join(export) + f"   (in {dirs[s]})", flush=True)
        subprocess.run(export, cwd=dirs[s], env={**os.environ, **PINNED_ENV}, check=True, stdout=subprocess.DEVNULL)
    start = "--model.init_args.backbone.init_args.path="
    jobs = [(cli_command("validate", config("lift_dpo"), *seeded(s), start + str(dirs[s] / "runs/lift_dpo/start")),
             dirs[s] / "validate") for s in options.seeds]
    jobs += [(cli_command("fit", config(name), *seeded(s)), dirs[s]) for name in ("dpo", "lift_dpo")
             for s in options.seeds]
    flat = run_many(jobs, options.workers)
    n = len(options.seeds)
    logged = {name: flat[i * n:(i + 1) * n] for i, name in enumerate(CHECKPOINTS)}
    scored = {name: [call_pinned(quality, str(dirs[s] / folder / "checkpoints" / "last.ckpt")) for s in options.seeds]
              for name, folder in CHECKPOINTS.items()}

    per_seed = {name: [{"violation_rate": m[LIMITED + "violation_rate"],
                        "words_per_limit": m[LIMITED + "words_per_limit"], **q}
                       for m, q in zip(logged[name], scored[name])] for name in CHECKPOINTS}
    columns = [("violation_rate", 3), ("words_per_limit", 2), ("quality", 3), ("words", 2)]
    table = [[name, *(mean_range([r[key] for r in rows], digits) for key, digits in columns)]
             for name, rows in per_seed.items()]
    print(f"\nLIFT-DPO miniature: seeds {options.seeds}, mean (min–max) over seeds; "
          f"{time.time() - started:.0f} s with {options.workers} runs at a time\n")
    print(markdown_table(["model", "violation rate (limited)", "words/limit (limited)", "quality (no limit)",
                          "words (no limit)"], table))
    save_json(RESULTS / "lift_dpo.json", {"seeds": options.seeds, "per_seed": per_seed,
                                          "machine": machine_report(1, options.workers)})


if __name__ == "__main__":
    main()
