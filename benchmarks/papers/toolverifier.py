"""Miniature of ToolVerifier (Mekala et al. 2024): does contrastive self-verification raise tool-selection accuracy on
unseen tools over reasoning alone, and is the gain from the contrast or from the extra tokens?

    python benchmarks/papers/toolverifier.py [--seeds 0 1 2] [--workers 2] [--requests 200]

Per seed, in its own working directory, the README's commands as written: `litforge fit --config
configs/toolverifier/sft.yaml`, `litforge export`, then `litforge validate --config configs/toolverifier/verify.yaml`
once per row, on the same 200 seen and 200 unseen requests (`--requests`). The configs name candidates by their
attributes ("weather-tomorrow-city", `names: descriptive`) and read a word a token (`vocab_size: 1024`). Overrides, all
printed: the seed (`--seed_everything`, the TinyModel's init seed, the shuffle seed and the task's `task_seed`, which draws the SFT rows and the evaluation
requests; the library itself is fixed), and per row the program:
    direct                        DirectSelection; parameters filled greedily (one sample, no verification)
    reasoning                     ReasoningSelection (a thought, then "Action: <tool>")
    reasoning + verification      ToolVerifier: top-2 by likelihood, contrastive question, answer, choice;
                                  parameters by ParameterVerification (5 samples, the two most frequent verified)
    verification, random second   ToolVerifier(second=random): the top tool and a random other (control)
    oracle top-2 + verification   ToolVerifier(second=oracle): the gold tool and the top other (reads the label)
Columns: selection accuracy on seen and unseen tools, the model's top-2 recall by likelihood (rows that rank),
generated tokens per request (unseen set), parameter accuracy on the gold tool (unseen set; rows that fill).

`benchmarks/papers/toolverifier_by_kind.py` splits the unseen accuracy of these models by kind of unseen tool (a
held-out sibling of a seen family, or a tool of a held-out family).

Departures from the paper: a synthetic library of confusable tool families (datamodules/tool_tasks.py) and a
96-wide 2-layer Llama trained from scratch on template data, a word a token, instead of Llama-2 70B's self-generated ToolSelect data
and ToolBench's unseen tools.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from common import PINNED_ENV, ROOT, _run_in_process, cli_command, machine_report, markdown_table, mean_range, save_json

CONFIGS = ROOT / "configs" / "toolverifier"
RESULTS = Path(__file__).resolve().parent / "results"
NO_PARAMETERS = ["--model.init_args.parameter_program=null"]
GREEDY_FILL = ["--model.init_args.parameter_program.init_args.samples=1",
               "--model.init_args.parameter_program.init_args.fill_temperature=0",
               "--model.init_args.parameter_program.init_args.verify=false"]
ROWS = {
    "direct": ["--model.init_args.program=DirectSelection", *GREEDY_FILL],
    "reasoning": ["--model.init_args.program=ReasoningSelection", *NO_PARAMETERS],
    "verification": [],
    "random": ["--model.init_args.program.init_args.second=random", *NO_PARAMETERS],
    "oracle": ["--model.init_args.program.init_args.second=oracle", *NO_PARAMETERS],
}
LABELS = {"direct": "direct", "reasoning": "reasoning", "verification": "reasoning + verification (ToolVerifier)",
          "random": "verification, random second (control)", "oracle": "oracle top-2 + verification"}


def fit(seed: int) -> list[str]:
    """The SFT command of one seed."""
    return cli_command("fit", str(CONFIGS / "sft.yaml"), f"--seed_everything={seed}", f"--data.init_args.seed={seed}",
                       f"--data.init_args.task_seed={seed}", f"--model.init_args.backbone.init_args.seed={seed}")


def validate(seed: int, row: str) -> list[str]:
    """The validate command of one row, on the seed's exported model and evaluation requests."""
    return cli_command("validate", str(CONFIGS / "verify.yaml"), f"--data.init_args.task_seed={seed}",
                       f"--model.init_args.seed={seed}", *ROWS[row])


def export(cwd: Path) -> None:
    """`litforge export` of the SFT run's last checkpoint, as the README runs it."""
    args = ["litforge", "export", "runs/toolverifier/sft/checkpoints/last.ckpt", "runs/toolverifier/sft/hf"]
    print("$ " + shlex.join(args) + f"   (in {cwd})", flush=True)
    subprocess.run(args, cwd=cwd, env={**os.environ, **PINNED_ENV}, check=True, stdout=subprocess.DEVNULL)


def run_all(commands: list[tuple[list[str], Path]], workers: int) -> list[dict[str, float]]:
    """Pinned CLI commands, `workers` at a time, each in its directory; their final logged metrics, in order."""
    for args, cwd in commands:
        print("$ " + shlex.join(args) + f"   (in {cwd})", flush=True)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_in_process, args, str(cwd)) for args, cwd in commands]
        results = []
        for (args, cwd), future in zip(commands, futures):
            results.append(future.result())
            logged = {name: round(value, 3) for name, value in results[-1].items() if name.startswith("val")}
            print(f"  done in {cwd.name}: {args[1]} {' '.join(args[-3:-2])} -> {logged}", flush=True)
        return results


def cell(results: list[dict[str, float]], name: str, digits: int = 3) -> str:
    """mean (min–max) of one metric over seeds; "—" when a row does not log it."""
    values = [r[name] for r in results if name in r]
    return mean_range(values, digits) if len(values) == len(results) and values else "—"


def table(results: dict[str, list[dict[str, float]]]) -> str:
    """The markdown table: one line per row, mean (min–max) over seeds."""
    lines = []
    for row in ROWS:
        runs = results[row]
        lines.append([LABELS[row], cell(runs, "val_seen/accuracy"), cell(runs, "val_unseen/accuracy"),
                      cell(runs, "val_seen/top2_recall") + " / " + cell(runs, "val_unseen/top2_recall"),
                      cell(runs, "val_unseen/tokens_per_item", 1), cell(runs, "val_unseen/parameter_accuracy")])
    return markdown_table(["", "seen accuracy", "unseen accuracy", "top-2 recall (seen / unseen)",
                           "tokens / request", "parameter accuracy"], lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--workdir", default="/tmp/litforge_toolverifier")
    parser.add_argument("--steps", type=int, default=None, help="SFT steps (default: the config's; for a smoke run)")
    parser.add_argument("--requests", type=int, default=None, help="seen and unseen requests each (default: config's)")
    options = parser.parse_args()
    work, started = Path(options.workdir), time.time()
    dirs = {seed: work / f"seed{seed}" for seed in options.seeds}
    extra_fit = [f"--trainer.max_steps={options.steps}"] if options.steps else []
    extra_eval = ([f"--data.init_args.num_seen={options.requests}", f"--data.init_args.num_unseen={options.requests}"]
                  if options.requests else [])
    print(machine_report(threads=1, workers=options.workers) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    for directory in dirs.values():
        directory.mkdir(parents=True)
    run_all([(fit(seed) + extra_fit, dirs[seed]) for seed in options.seeds], options.workers)
    for seed in options.seeds:
        export(dirs[seed])
    cells = [(seed, row) for seed in options.seeds for row in ROWS]
    metrics = run_all([(validate(seed, row) + extra_eval, dirs[seed]) for seed, row in cells], options.workers)
    results: dict[str, list[dict[str, float]]] = {row: [] for row in ROWS}
    for (seed, row), logged in zip(cells, metrics):
        results[row].append(dict(logged, seed=seed))
    print(f"\nToolVerifier miniature: seeds {options.seeds}, mean (min–max); requests per set "
          f"{options.requests or 200}, greedy; tokens = generated tokens per unseen request (selection only)\n")
    print(table(results) + "\n")
    print(f"wall time {time.time() - started:.0f} s")
    save_json(RESULTS / "toolverifier.json", {"seeds": options.seeds, "steps": options.steps,
                                              "requests": options.requests, "results": results})


if __name__ == "__main__":
    main()
