"""Miniature of the CoPE paper's tables (Golovneva et al. 2024, Tables 1-2): exact-answer error of RoPE, NoPE and
CoPE on counting and on Flip-Flop (in distribution, and out of distribution at a sparser and a denser
ignore rate), each a shipped config run as a user types it.

    python benchmarks/papers/cope.py [--seeds 0 1 2] [--workers 2] [--workdir /tmp/litforge_cope] [--tasks flipflop]

Every run is `litforge fit --config configs/cope/{counting,flipflop}.yaml` at its shipped length (counting 300
steps, Flip-Flop 500, batch 32), in its own working directory (the configs write to relative runs/...). Overrides,
all printed: the encoding (`--model.init_args.position=NoPE`, README's one-line switch; CoPE is the configs'
default), and the seed: `--seed_everything`, the TinyModel's init seed and the datamodule's
shuffle seed. The examples themselves (`task_seed`) are the same for every seed and encoding, so every model is
scored on the same 300 validation programs per set. Error is what the configs' validation logs at the last step
(`val_<set>/error`: share of answers not reproduced exactly, teacher-forced argmax).

Departures from the paper: a 2-layer, 64-wide Llama; short programs (8-24 statements, 3 variables) and Flip-Flop of
32 instructions (see `datamodules/cope_tasks.py`); a few hundred steps. Left out to fit the compute budget (15 min
with 2 runs at a time on a shared 2-core machine): selective copy, and the Absolute encoding (`--model.init_args.
position=Absolute` runs it), which was never the best encoding in this miniature's earlier, longer runs.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from common import ROOT, cli_command, machine_report, markdown_table, mean_range, run_many, save_json

ENCODINGS = ["RoPE", "NoPE", "CoPE"]
TASKS = {"counting": ["in_dist"], "flipflop": ["in_dist", "ood_sparse", "ood_dense"]}
HEADERS = {"counting/in_dist": "counting (3 vars)", "flipflop/in_dist": "Flip-Flop in-dist",
           "flipflop/ood_sparse": "OOD sparse", "flipflop/ood_dense": "OOD dense"}
RESULTS = Path(__file__).resolve().parent / "results"


def command(task: str, encoding: str, seed: int) -> list[str]:
    """The user's command for one (task, encoding, seed) run."""
    switch = [] if encoding == "CoPE" else [f"--model.init_args.position={encoding}"]
    return cli_command("fit", str(ROOT / "configs" / "cope" / f"{task}.yaml"), *switch, f"--seed_everything={seed}",
                       f"--model.init_args.backbone.init_args.seed={seed}", f"--data.init_args.seed={seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--workdir", default="/tmp/litforge_cope")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    options = parser.parse_args()
    work = Path(options.workdir)
    shutil.rmtree(work, ignore_errors=True)
    started = time.time()
    print(machine_report(threads=1, workers=options.workers) + "\n")

    tasks = {task: TASKS[task] for task in options.tasks}
    keys = [(task, encoding, seed) for task in tasks for encoding in ENCODINGS for seed in options.seeds]
    jobs = []
    for task, encoding, seed in keys:
        directory = work / f"{task}_{encoding}_seed{seed}"
        directory.mkdir(parents=True)
        jobs.append((command(task, encoding, seed), directory))
    metrics = dict(zip(keys, run_many(jobs, options.workers)))
    errors = {f"{task}/{name}": {encoding: [100 * metrics[task, encoding, seed][f"val_{name}/error"]
                                            for seed in options.seeds] for encoding in ENCODINGS}
              for task, names in tasks.items() for name in names}
    table = [[encoding, *(mean_range(errors[column][encoding], 1) for column in errors)] for encoding in ENCODINGS]

    print(f"\nCoPE miniature: exact-answer error (%) at the last step of the shipped configs, mean (min–max) over "
          f"seeds {options.seeds}; {time.time() - started:.0f} s with {options.workers} runs at a time\n")
    print(markdown_table(["encoding", *(HEADERS[column] for column in errors)], table))
    name = "cope" if list(tasks) == list(TASKS) else "_".join(["cope", *tasks])
    save_json(RESULTS / f"{name}.json", {"seeds": options.seeds, "error_percent": errors,
                                         "machine": machine_report(1, options.workers)})


if __name__ == "__main__":
    main()
