"""Miniature of reverse training (Golovneva et al. 2024) on the symbolic reversal task: the reversal curse of
standard training, and which reversal transforms cure it, each a shipped config run as a user types it.

    python benchmarks/papers/reverse.py [--seeds 0 1 2] [--workers 2] [--workdir /tmp/litforge_reverse]

Every run is `litforge fit --config configs/reverse/symbolic.yaml` at its shipped length (600 steps of batch 50 over
100 facts "A1 A2 = B1 B2", 2-symbol names from 60 symbols, a 2-layer 128-wide Llama, AdamW 3e-3 with a warmup-cosine
schedule; each reversal method trains on the batch's 50 facts forward and their 50 reversed copies), in its own
working directory.
Overrides, all printed: the method, by the config's one `transform:` line (`--model.init_args.transform=null` for
standard training, `TokenReversal`, `RandomSegmentReversal` with `k=2`; EntityPreservingReversal is the config's
default), and the seed: `--seed_everything`, the TinyModel's init seed, the datamodule's seed (which draws the facts
and their order, so each seed has its own 500 facts) and ReverseLM's `reverse_seed` (the random segments).
Scores are what the config's validation logs at the last step: exact match (every answer token argmax-correct) of
every fact asked forward ("A1 A2 = " -> "B1 B2"), in reverse ("B1 B2 = " -> "A1 A2") and in reverse token-reversed
("2B 1B = " -> "2A 1A", the language token reversal trains on).

Departures from the paper: a tiny model and 100 symbolic facts; word reversal (identical to token reversal on
one-symbol words) and the biography task (0.54 s a step) are left out to fit the compute budget.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from common import ROOT, cli_command, machine_report, markdown_table, mean_range, run_many, save_json

METHODS = {"standard": ["--model.init_args.transform=null"],
           "token reversal": ["--model.init_args.transform=TokenReversal"],
           "entity-preserving": [],
           "random segment (k=2)": ["--model.init_args.transform=RandomSegmentReversal",
                                    "--model.init_args.transform.init_args.k=2"]}
SETS = {"forward": "val_forward/exact_match", "reverse": "val_reverse/exact_match",
        "reverse, token-reversed question": "val_reverse_tokens/exact_match"}
RESULTS = Path(__file__).resolve().parent / "results"


def command(method: str, seed: int) -> list[str]:
    """The user's command for one (method, seed) run."""
    return cli_command("fit", str(ROOT / "configs" / "reverse" / "symbolic.yaml"), *METHODS[method],
                       f"--seed_everything={seed}", f"--model.init_args.backbone.init_args.seed={seed}",
                       f"--data.init_args.seed={seed}", f"--model.init_args.reverse_seed={seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--workdir", default="/tmp/litforge_reverse")
    options = parser.parse_args()
    work = Path(options.workdir)
    shutil.rmtree(work, ignore_errors=True)
    started = time.time()
    print(machine_report(threads=1, workers=options.workers) + "\n")

    keys = [(method, seed) for method in METHODS for seed in options.seeds]
    jobs = []
    for method, seed in keys:
        directory = work / f"{method.split()[0]}_seed{seed}"
        directory.mkdir(parents=True)
        jobs.append((command(method, seed), directory))
    metrics = dict(zip(keys, run_many(jobs, options.workers)))
    scores = {method: {name: [metrics[method, seed][key] for seed in options.seeds] for name, key in SETS.items()}
              for method in METHODS}
    table = [[method, *(mean_range(scores[method][name], 2) for name in SETS)] for method in METHODS]

    print(f"\nReverse training miniature: exact match at the last step of configs/reverse/symbolic.yaml, mean "
          f"(min–max) over seeds {options.seeds}; {time.time() - started:.0f} s with {options.workers} runs at a "
          f"time\n")
    print(markdown_table(["method", *SETS], table))
    save_json(RESULTS / "reverse.json", {"seeds": options.seeds, "exact_match": scores,
                                         "machine": machine_report(1, options.workers)})


if __name__ == "__main__":
    main()
