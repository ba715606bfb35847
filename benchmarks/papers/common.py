"""What every miniature shares: run a shipped config through the CLI with threads pinned and deterministic
algorithms on, one seed at a time, and print the numbers beside the machine and library versions.

A miniature is a user's command: each run is `litforge fit --config configs/<paper>/<name>.yaml` plus the
overrides the miniature prints (seed, length, run directory), executed in a fresh process with one thread
(`OMP_NUM_THREADS=1`, `torch.set_num_threads(1)`), `torch.use_deterministic_algorithms(True)` and
`--trainer.deterministic=true`. A fresh process per run means no state (a patched attention function, a random
generator, a cache) leaks from one run into the next, and several runs can share the machine's cores without
changing each other's numbers.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PINNED_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
              "TOKENIZERS_PARALLELISM": "false", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def pin_process() -> None:
    """One thread, deterministic algorithms: call first thing in a process that trains or evaluates."""
    os.environ.update(PINNED_ENV)
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def cli_command(command: str, config: str | list[str], *overrides: str) -> list[str]:
    """`litforge <command> --config <config> ... <overrides> --trainer.deterministic=true` as an argument list."""
    configs = [config] if isinstance(config, str) else config
    args = ["litforge", command]
    for path in configs:
        args += ["--config", path]
    return [*args, *overrides, "--trainer.deterministic=true", "--trainer.enable_model_summary=false"]


def _run_in_process(args: list[str], cwd: str) -> dict[str, float]:
    """Body of one pinned run: the CLI in this (fresh) process; returns the trainer's final logged metrics."""
    pin_process()
    os.chdir(cwd)
    sys.argv = args[:1]  # a spawned process inherits the miniature's own arguments; the CLI gets only `args`
    from litforge.cli import run_lightning

    cli = run_lightning(args[1:])
    return {name: float(value) for name, value in cli.trainer.callback_metrics.items() if value.numel() == 1}


def run(args: list[str], cwd: str | Path = ROOT, log: bool = True) -> dict[str, float]:
    """Run one CLI command (from `cli_command`) in a fresh pinned process; returns its final logged metrics."""
    started = time.time()
    if log:
        print("$ " + shlex.join(args), flush=True)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        metrics = pool.submit(_run_in_process, args, str(cwd)).result()
    if log:
        print(f"  ({time.time() - started:.0f} s)", flush=True)
    return metrics


def run_many(commands: list[tuple[list[str], str | Path]], workers: int = 1) -> list[dict[str, float]]:
    """Run independent pinned CLI commands `workers` at a time (one thread each); results in input order."""
    for args, _ in commands:
        print("$ " + shlex.join(args), flush=True)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_in_process, args, str(cwd)) for args, cwd in commands]
        return [future.result() for future in futures]


def call_pinned(function, *args, workers: int = 1):
    """Call a picklable module-level `function(*args)` in a fresh pinned process (for evaluation code)."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=pin_process) as pool:
        return pool.submit(function, *args).result()


def mean_range(values: list[float], digits: int = 3, scale: float = 1.0) -> str:
    """`mean (min–max)` of per-seed values, as README's tables print them."""
    values = [v * scale for v in values]
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table README embeds as printed."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_report(threads: int = 1, workers: int = 1) -> str:
    """The machine, the commit and the library versions a table was measured with, as lines to print beside it."""
    import lightning
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return (f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"{workers} run(s) at a time, {threads} thread each, deterministic algorithms on\n"
            f"versions: python {platform.python_version()}, torch {torch.__version__}, lightning "
            f"{lightning.__version__}, transformers {transformers.__version__}; litforge commit {commit}; "
            f"{datetime.date.today().isoformat()}")


def save_json(path: str | Path, payload: dict) -> None:
    """Write a miniature's raw per-seed numbers next to its table (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.staging-{os.getpid()}")
    staging.write_text(json.dumps(payload, indent=2, sort_keys=True))
    staging.replace(path)


def python() -> str:
    """The interpreter running this miniature (for commands that must run in it)."""
    return sys.executable
