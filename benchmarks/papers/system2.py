"""Miniature of "Distilling System 2 into System 1" (Yu et al. 2024): per task, System 1 and the System 2 program
after the seed stage, and System 1 after distillation without a filter, with the task's filter, and from System 1's
own majority answers (the control), with the rows each distillation kept and their accuracy.

    python benchmarks/papers/system2.py [--tasks s2a rar bsm cot] [--seeds 0 1 2] [--workers 2]

Every step is the README's command, run as written on configs/system2/<task>_{seed,distill}.yaml, each (task, seed)
in its own working directory (the configs write to relative runs/system2/...). Overrides, all printed: the seed
(`--seed_everything`, the TinyModel's init seed, the shuffle seed, the objective's generation seed and the task's
`task_seed`, which draws the seed rows and the distillation and test inputs), and per arm:
    filter       the config as shipped (S2A, RaR, CoT: SelfConsistency over 8 samples at temperature 0.7, share
                 >= 0.5; BSM: SwapConsistency, greedy);
    no filter    `filter: NoFilter`, greedy: the program's one greedy answer per input, whatever it is;
    control      `program: Direct` (System 1 itself) with SelfConsistency over 8 samples at temperature 0.7.
System 1 and System 2 are measured by the distill run at its first boundary (the seed model, greedy, on the task's
200 test inputs); "distilled" is System 1 after the run. Tokens are generated tokens per test item.

Departures from the paper: synthetic one-digit arithmetic tasks (datamodules/system2_tasks.py) on a 96-wide 2-layer
Llama whose System 1 weakness is planted by the seed data; one round of distillation (3 epochs; RaR 8).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from common import PINNED_ENV, ROOT, _run_in_process, cli_command, machine_report, markdown_table, mean_range, save_json

CONFIGS = ROOT / "configs" / "system2"
RESULTS = Path(__file__).resolve().parent / "results"
SELF_CONSISTENCY = ["--model.init_args.filter=SelfConsistency", "--model.init_args.filter.init_args.samples=8",
                    "--model.init_args.filter.init_args.min_share=0.5", "--model.init_args.temperature=0.7"]
ARMS = {
    "filter": [],
    "nofilter": ["--model.init_args.filter=NoFilter", "--model.init_args.temperature=0"],
    "control": [],  # control_overrides(task)
}
LABELS = {"filter": "distilled, with filter", "nofilter": "distilled, no filter",
          "control": "distilled from System 1 majority (control)"}


def config(name: str) -> str:
    """Absolute path of configs/system2/<name>.yaml."""
    return str(CONFIGS / f"{name}.yaml")


def control_overrides(task: str) -> list[str]:
    """The control's program: System 1 as configured for the task (BSM's Direct reads the pair)."""
    # the program's template is set: a `template:` of the task's own program (ChainOfThought's) would carry over
    template = "{question} {context}\nVerdict:" if task == "bsm" else "{input}\nAnswer:"
    return ["--model.init_args.program=Direct", f"--model.init_args.program.init_args.template={template}",
            *SELF_CONSISTENCY]


def distill(task: str, seed: int, arm: str) -> list[str]:
    """The distill command of one arm, run in the (task, seed) directory."""
    extra = control_overrides(task) if arm == "control" else ARMS[arm]
    root = f"runs/system2/{task}_{arm}"
    return cli_command("fit", config(f"{task}_distill"), f"--seed_everything={seed}", f"--data.init_args.seed={seed}",
                       f"--data.init_args.task_seed={seed}", f"--model.init_args.seed={seed}",
                       f"--trainer.default_root_dir={root}", f"--trainer.logger.init_args.save_dir={root}",
                       f"--trainer.callbacks.init_args.dirpath={root}/checkpoints", *extra)


def seed_fit(task: str, seed: int) -> list[str]:
    """The seed command of one (task, seed)."""
    return cli_command("fit", config(f"{task}_seed"), f"--seed_everything={seed}", f"--data.init_args.seed={seed}",
                       f"--data.init_args.task_seed={seed}", f"--model.init_args.backbone.init_args.seed={seed}")


def export(task: str, cwd: Path) -> None:
    """`litforge export` of the seed's last checkpoint, as the README runs it."""
    args = ["litforge", "export", f"runs/system2/{task}_seed/checkpoints/last.ckpt", f"runs/system2/{task}_seed/hf"]
    print("$ " + shlex.join(args) + f"   (in {cwd})", flush=True)
    subprocess.run(args, cwd=cwd, env={**os.environ, **PINNED_ENV}, check=True, stdout=subprocess.DEVNULL)


def run_all(commands: list[tuple[list[str], Path]], workers: int) -> list[str | None]:
    """Run pinned CLI commands `workers` at a time; per command None, or the error that stopped it (a distill run
    stops when its filter keeps no row: recorded, not fatal)."""
    for args, _ in commands:
        print("$ " + shlex.join(args), flush=True)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_in_process, args, str(cwd)) for args, cwd in commands]
        errors = []
        for future in futures:
            try:
                future.result()
                errors.append(None)
            except Exception as error:  # noqa: BLE001 - the message goes into the table
                errors.append(str(error).splitlines()[0])
        return errors


def numbers(final: dict) -> dict[str, float]:
    """What one distill run measured: the seed's System 1 and System 2, distilled System 1, rows kept."""
    start = final["iterations"]["0"]
    return {"system1_accuracy": start["system1_accuracy"], "system1_tokens": start["system1_tokens_per_item"],
            "system2_accuracy": start["system2_accuracy"], "system2_tokens": start["system2_tokens_per_item"],
            "distilled_accuracy": final["system1_accuracy"], "distilled_tokens": final["system1_tokens_per_item"],
            "rows": start["rows"], "inputs": start["inputs"], "kept_accuracy": start["kept_accuracy"]}


def table(task: str, results: dict[str, list[dict[str, float]]]) -> str:
    """One task's markdown table: accuracy, tokens per item, rows kept and their accuracy, mean (min–max); a run
    that stopped (no row kept) is counted as "stopped" and left out of the means."""
    first = results["nofilter"]  # greedy, the seed model: the same System 1 / System 2 measurement in every arm
    rows = [["System 1 (seed)", mean_range([r["system1_accuracy"] for r in first]),
             mean_range([r["system1_tokens"] for r in first], 1), "", ""],
            ["System 2 (seed)", mean_range([r["system2_accuracy"] for r in first]),
             mean_range([r["system2_tokens"] for r in first], 1), "", ""]]
    for arm in ("nofilter", "filter", "control"):
        runs = [r for r in results[arm] if "error" not in r]
        stopped = len(results[arm]) - len(runs)
        note = f" ({stopped} of {len(results[arm])} seeds stopped: no row kept)" if stopped else ""
        if not runs:
            rows.append([LABELS[arm] + note, "—", "—", "0", "—"])
            continue
        rows.append([LABELS[arm] + note, mean_range([r["distilled_accuracy"] for r in runs]),
                     mean_range([r["distilled_tokens"] for r in runs], 1),
                     mean_range([r["rows"] for r in runs], 0) + f" / {int(runs[0]['inputs'])}",
                     mean_range([r["kept_accuracy"] for r in runs])])
    return f"{task}\n" + markdown_table(["", "test accuracy", "tokens / item", "rows kept", "kept accuracy"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["s2a", "rar", "bsm", "cot"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--workdir", default="/tmp/litforge_system2")
    parser.add_argument("--tables_only", action="store_true", help="read the finished runs in --workdir again")
    options = parser.parse_args()
    work = Path(options.workdir)
    cells = [(task, seed) for task in options.tasks for seed in options.seeds]
    dirs = {cell: work / f"{cell[0]}_seed{cell[1]}" for cell in cells}
    runs = [(task, seed, arm) for task, seed in cells for arm in ARMS]
    started = time.time()
    print(machine_report(threads=1, workers=options.workers) + "\n")
    if not options.tables_only:
        shutil.rmtree(work, ignore_errors=True)
        for directory in dirs.values():
            directory.mkdir(parents=True)
        failed = [e for e in run_all([(seed_fit(task, seed), dirs[task, seed]) for task, seed in cells],
                                     options.workers) if e]
        if failed:
            raise RuntimeError(f"a seed run failed: {failed[0]}")
        for task, seed in cells:
            export(task, dirs[task, seed])
        run_all([(distill(task, seed, arm), dirs[task, seed]) for task, seed, arm in runs], options.workers)

    results: dict[str, dict[str, list[dict[str, float]]]] = {task: {arm: [] for arm in ARMS} for task in options.tasks}
    for task, seed, arm in runs:
        path = dirs[task, seed] / f"runs/system2/{task}_{arm}/iterations/final.json"
        if not path.is_file():  # the run stopped before its end (no row kept)
            results[task][arm].append({"seed": seed, "error": "stopped: the filter kept no row"})
            continue
        results[task][arm].append(dict(numbers(json.loads(path.read_text())), seed=seed))
    print(f"\nSystem 2 distillation miniature: seeds {options.seeds}, mean (min–max); test accuracy on 200 held-out "
          f"inputs per seed, greedy; tokens = generated tokens per test item; rows kept of the distillation inputs "
          f"and their label accuracy (diagnostic only)\n")
    for task in options.tasks:
        print(table(task, results[task]) + "\n")
    print(f"wall time {time.time() - started:.0f} s")
    save_json(RESULTS / "system2.json", {"seeds": options.seeds, "results": results})


if __name__ == "__main__":
    main()
