"""Miniature of the CoPE paper's table (Golovneva et al. 2024, Tables 1-2): test error of Absolute, RoPE, NoPE and
CoPE on counting (1 and 3 variables) and Flip-Flop (in distribution, and out of distribution at a sparser and a
denser ignore rate).

    python benchmarks/papers/cope.py                      # 2 seeds x 1000 steps, 2 workers: ~30 min
    python benchmarks/papers/cope.py --seeds 0 1 2 --steps 1500 --workers 3

Departures from the paper (to fit a CPU): a 2-layer, 64-wide, 4-head Llama instead of 4 x 256; short programs and
sequences (see `litforge.datamodules.cope_tasks`: programs of 8-16 statements, Flip-Flop of 24 instructions);
1000 steps of batch 32 and 2 seeds by default; error is teacher-forced exact-answer error (every answer token
argmax-correct) on 300 test examples per set.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from litforge.datamodules.cope_tasks import CountingDataModule, FlipFlopDataModule
from litforge.lightning_modules.causal_lm import exact_matches
from litforge.plugins.position import Absolute, CoPE, NoPE, RoPE

from litforge.backbones import TinyModel
from litforge.data import Collator
from litforge.sampling import ResumableSampler

ENCODINGS = {"Absolute": lambda: Absolute(), "RoPE": lambda: RoPE(), "NoPE": lambda: NoPE(),
             "CoPE": lambda: CoPE(npos_max=32)}
TASKS = {
    "count-1var": lambda n: CountingDataModule(num_vars=1, min_statements=8, max_statements=16, num_train=n),
    "count-3var": lambda n: CountingDataModule(num_vars=3, min_statements=8, max_statements=16, num_train=n),
    "flipflop": lambda n: FlipFlopDataModule(length=24, p_ignore=0.8, p_ignore_sparse=0.98, p_ignore_dense=0.1,
                                             num_train=n),
}


def train_and_test(task: str, encoding: str, seed: int, steps: int, batch_size: int, lr: float) -> dict[str, float]:
    """Train one model on one task; return the test error (%) of each test set."""
    data = TASKS[task](steps * batch_size)
    tok = data.tokenizer
    model = TinyModel(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                      max_position_embeddings=256, seed=seed).build(len(tok), tok.pad_token_id, tok.bos_token_id,
                                                                    tok.eos_token_id)
    ENCODINGS[encoding]().attach(model)
    train = data.load("train")
    collate = Collator(tok.pad_token_id)
    order = list(ResumableSampler(train, seed=seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for step in range(steps):
        batch = collate([train[i] for i in order[step * batch_size:(step + 1) * batch_size]])
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    model.eval()
    errors = {}
    with torch.no_grad():
        for name, samples in data.load("test").items():
            wrong = []
            for start in range(0, len(samples), 100):
                batch = collate(samples[start:start + 100])
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                wrong.append(1 - exact_matches(logits, batch["labels"]))
            errors[name] = 100 * torch.cat(wrong).mean().item()
    return errors


def run_one(job: tuple[str, str, int, int, int, float]) -> tuple[str, str, int, dict[str, float], float]:
    """One (encoding, task, seed) run on one thread, for a worker process; returns its errors and seconds."""
    torch.set_num_threads(1)
    encoding, task, seed, steps, batch_size, lr = job
    start = time.time()
    errors = train_and_test(task, encoding, seed, steps, batch_size, lr)
    return encoding, task, seed, errors, time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=list(ENCODINGS))
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each")
    args = parser.parse_args()
    columns = []
    for task in args.tasks:
        columns += [f"{task}" if task.startswith("count") else f"{task}/{s}" for s in
                    (["in_dist"] if task.startswith("count") else ["in_dist", "ood_sparse", "ood_dense"])]
    # longest runs first (counting, CoPE), so the workers finish together
    jobs = sorted(((encoding, task, seed, args.steps, args.batch_size, args.lr) for encoding in args.encodings
                   for task in args.tasks for seed in args.seeds),
                  key=lambda job: (job[1].startswith("count"), job[0] == "CoPE"), reverse=True)
    results = {}
    start = time.time()
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for encoding, task, seed, errors, seconds in pool.map(run_one, jobs):
            results[encoding, task, seed] = errors
            summary = ", ".join(f"{name} {error:.1f}" for name, error in errors.items())
            print(f"{encoding:8s} {task:10s} seed {seed}: {summary} ({seconds:.0f}s)", flush=True)
    print(f"\nTest error (%), mean (min-max) over seeds {args.seeds}, {args.steps} steps x batch {args.batch_size}, "
          f"{time.time() - start:.0f}s wall on {args.workers} worker(s)")
    print("| encoding | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for encoding in args.encodings:
        cells = []
        for column in columns:
            task, _, name = column.partition("/")
            runs = [results[encoding, task, seed][name or "in_dist"] for seed in args.seeds]
            spread = f" ({min(runs):.1f}-{max(runs):.1f})" if len(runs) > 1 else ""
            cells.append(f"{sum(runs) / len(runs):.1f}{spread}")
        print(f"| {encoding} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
