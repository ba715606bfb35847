"""litforge DPO against TRL's DPOTrainer: pairs per second and peak memory, same model, data and settings.

    python benchmarks/dpo_vs_trl.py [--steps 6] [--pairs 32] [--threads 2] [--repeats 3]

Needs `pip install trl` (a benchmark-only extra). Both sides train the same tiny Llama (random init from one config,
fp32, gradient checkpointing off) with AdamW as TRL sets it by default (torch's fused AdamW, no weight decay), gradient
clipping 1.0, beta 0.1 and sigmoid DPO, on the same 8 pairs a step of prompt 64 + response 192 tokens (byte
tokenizer; random letters, so lengths are exact), each in its own process with the same number of threads:
  (a) per optimizer step, reference = frozen copy of the model (after 2 warm-up steps);
  (b) a whole 2-epoch run with precomputed reference log-probs (TRL: precompute_ref_log_probs=True), the
      precompute pass and the data preparation counted, from trainer construction to the end of training.
Peak memory is the process's maximum resident set size after training, minus the same before building the trainer.
With --repeats the sides alternate and each reports its fastest run and its lowest peak memory (a shared machine
only ever slows a run down); the ratios of the back-to-back pairs of runs and their median show the spread. Before
the ratios come each side's matrix multiplies alone (`gemm_floor`, timed before and after the runs, the lower kept):
the seconds its model's products take as bare `torch.mm` calls at the same thread count, and their share of the
side's best measured time. litforge keeps freed memory in its process on CPU (`litforge.runtime`); --peer-malloc
gives TRL's process the same glibc setting, as a control. The modes run in the order given; by default (b) comes
last, its ratio the last line.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import statistics
import string
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from litforge.runtime import MMAP_THRESHOLD, TRIM_THRESHOLD  # noqa: E402 (ctypes only: the children stay light)

BACKBONE = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 688,
            "max_position_embeddings": 512, "seed": 0}
PROMPT, RESPONSE, BATCH = 64, 192, 8
# litforge.runtime.keep_freed_memory, as environment variables glibc reads at start-up
PEER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def pairs(count: int) -> list[dict[str, str]]:
    """Random-letter pairs; with the byte tokenizer the prompt is 64 tokens and each response 192 (+ eos)."""
    rng = random.Random(0)

    def text(n):
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))

    return [{"prompt": text(PROMPT - 1), "chosen": text(RESPONSE - 1), "rejected": text(RESPONSE - 1)}
            for _ in range(count)]  # -1: the bos / eos each side adds


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_litforge(mode: str, count: int, steps: int, root: str) -> dict:
    import lightning as L
    import torch
    from litforge.datamodules import PreferenceDataModule
    from litforge.lightning_modules import DPONLL

    from litforge.backbones import TinyModel
    from litforge.plugins.reference import FrozenCopy, PrecomputedReference

    class Pairs(PreferenceDataModule):
        def pairs(self, split):
            return pairs(count) if split == "train" else None

    class Clock(L.Callback):
        def __init__(self):
            self.times = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.times.append((time.perf_counter(), time.process_time()))

    from functools import partial
    base = max_rss_mb()
    start = time.perf_counter(), time.process_time()
    data = Pairs(max_length=PROMPT + RESPONSE, batch_size=BATCH)
    reference = FrozenCopy() if mode == "step" else PrecomputedReference(os.path.join(root, "ref"))
    module = DPONLL(backbone=TinyModel(**BACKBONE), tokenizer=data.tokenizer, beta=0.1, alpha=0.0,
                    reference=reference, optimizer=partial(torch.optim.AdamW, lr=1e-5, weight_decay=0.0, fused=True))
    clock = Clock()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, gradient_clip_val=1.0,
                        default_root_dir=root, callbacks=[clock],
                        **({"max_steps": steps + 2} if mode == "step" else {"max_epochs": 2}))
    trainer.fit(module, datamodule=data)
    return summary(mode, clock.times, start, count, base)


def run_trl(mode: str, count: int, steps: int, root: str) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from litforge.backbones import TinyModel
    from litforge.tokenizer import byte_level_tokenizer

    class Clock(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append((time.perf_counter(), time.process_time()))

    tokenizer = byte_level_tokenizer()
    base = max_rss_mb()
    start = time.perf_counter(), time.process_time()
    model = TinyModel(**BACKBONE).build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                                        tokenizer.eos_token_id)
    model.config.use_cache = False
    config = DPOConfig(output_dir=root, per_device_train_batch_size=BATCH, learning_rate=1e-5, beta=0.1,
                       max_length=PROMPT + RESPONSE, gradient_checkpointing=False, bf16=False, fp16=False,
                       use_cpu=True, report_to="none", save_strategy="no", logging_steps=10 ** 6,
                       precompute_ref_log_probs=mode == "run", max_grad_norm=1.0, dataloader_num_workers=0,
                       **({"max_steps": steps + 2} if mode == "step" else {"num_train_epochs": 2}))
    clock = Clock()
    ref_model = copy.deepcopy(model) if mode == "step" else None  # precompute: TRL uses the policy before training
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=config, train_dataset=Dataset.from_list(pairs(count)),
                         processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    return summary(mode, clock.times, start, count, base)


def summary(mode: str, times: list[tuple[float, float]], start: tuple[float, float], count: int,
            base_rss: float) -> dict:
    """Pairs/s: (a) over the steps after 2 warm-ups; (b) over the whole run's wall time.

    `cpu_s_per_pair` is the same span in process CPU time (all threads): less sensitive to other work on the machine.
    """
    if mode == "step":
        done, (first, last) = BATCH * (len(times) - 2), (times[1], times[-1])
    else:
        done, (first, last) = 2 * count, (start, times[-1])
    return {"pairs_per_s": done / (last[0] - first[0]), "cpu_s_per_pair": (last[1] - first[1]) / done,
            "wall_s": times[-1][0] - start[0], "steps": len(times), "peak_rss_mb": max_rss_mb(),
            "peak_rss_delta_mb": max_rss_mb() - base_rss}


def child(side: str, mode: str, count: int, steps: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as root:
        result = (run_litforge if side == "litforge" else run_trl)(mode, count, steps, root)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps in (a)")
    parser.add_argument("--pairs", type=int, default=32, help="dataset size in (b) (2 epochs of pairs/8 steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["step", "run"], choices=["step", "run"])
    parser.add_argument("--repeats", type=int, default=1, help="runs per side and mode; the fastest is reported")
    parser.add_argument("--litforge-first", action="store_true", help="run litforge before TRL (order effects)")
    parser.add_argument("--peer-malloc", action="store_true",
                        help="give TRL's process the malloc settings litforge applies to itself on CPU (a control)")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("steps", "threads", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.pairs < BATCH or args.pairs % BATCH:
        parser.error(f"--pairs must be a positive multiple of the batch size {BATCH}, got {args.pairs}")
    if args.child:
        return child(*args.child, args.pairs, args.steps, args.threads)
    results: dict[tuple[str, str], list[dict]] = {}
    floors = [gemm_floor(args.threads, args.pairs)]  # again at the end: the lower of the two, like the runs' best
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for mode in args.modes:
        for _ in range(args.repeats):  # alternate the sides, so slow spells of a shared machine hit both
            for side in ("litforge", "trl") if args.litforge_first else ("trl", "litforge"):
                command = [sys.executable, __file__, "--child", side, mode, "--steps", str(args.steps), "--pairs",
                           str(args.pairs), "--threads", str(args.threads)]
                side_env = {**env, **(PEER_MALLOC if side == "trl" and args.peer_malloc else {})}
                out = subprocess.run(command, env=side_env, capture_output=True, text=True, check=False)
                line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                if not line:
                    sys.exit(f"{side} {mode} failed:\n{out.stderr[-3000:]}")
                results.setdefault((side, mode), []).append(json.loads(line[0][7:]))
                print(f"{side:9s} ({mode}): {results[side, mode][-1]}", flush=True)
    labels = {"step": "(a) per optimizer step, frozen reference",
              "run": f"(b) 2-epoch run of {args.pairs} pairs, precomputed reference"}
    floors.append(gemm_floor(args.threads, args.pairs))
    floor = {key: min(f[key] for f in floors) for key in floors[0]}
    fastest = {key: best(runs) for key, runs in results.items()}
    for mode in args.modes:
        trl, ours = fastest["trl", mode], fastest["litforge", mode]
        spans = {side: (BATCH if mode == "step" else 2 * args.pairs) / run["pairs_per_s"]
                 for side, run in (("litforge", ours), ("trl", trl))}
        print(f"{labels[mode]}, matrix multiplies alone: litforge {floor['litforge', mode]:.2f} s "
              f"({floor['litforge', mode] / spans['litforge']:.0%} of its measured {spans['litforge']:.2f} s), "
              f"TRL {floor['trl', mode]:.2f} s ({floor['trl', mode] / spans['trl']:.0%} of {spans['trl']:.2f} s)")
    for mode in args.modes:  # "run" last: the ratio of (b) is the final line
        trl, ours = fastest["trl", mode], fastest["litforge", mode]
        print(f"{labels[mode]}: litforge {ours['pairs_per_s']:.2f} pairs/s, TRL {trl['pairs_per_s']:.2f} pairs/s, "
              f"peak RSS growth {ours['peak_rss_delta_mb']:.0f} MB vs {trl['peak_rss_delta_mb']:.0f} MB, "
              f"CPU s/pair {ours['cpu_s_per_pair']:.3f} vs {trl['cpu_s_per_pair']:.3f}"
              + paired(results["litforge", mode], results["trl", mode])
              + f", ratio {ours['pairs_per_s'] / trl['pairs_per_s']:.2f}x")


def paired(ours: list[dict], peer: list[dict]) -> str:
    """With repeats, the ratio of each pair of back-to-back runs and their median: a spread the best-of ratio hides."""
    if len(ours) < 2:
        return ""
    ratios = sorted(a["pairs_per_s"] / b["pairs_per_s"] for a, b in zip(ours, peer))
    return f", back-to-back runs {' '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})"


def gemm_floor(threads: int, pairs_count: int, rounds: int = 30) -> dict[tuple[str, str], float]:
    """Seconds that each side's matrix multiplies alone take, per mode: (a) one step, (b) the whole run.

    Each side's linear layers, at its own token count, timed as bare `torch.mm` calls with the operands laid out as
    `nn.Linear` and its backward have them (forward, input gradient, weight gradient; the reference and the
    precompute pass forward only), each its fastest of `rounds`. litforge runs B rows of prompt + chosen + rejected
    and the lm_head at response positions; TRL runs 2B rows of prompt + response and the lm_head at every position
    (its `fused_lm_head`). Attention, norms, activations, the optimizer and memory traffic
    between the products are left out: a side's measured time stays above its floor.
    """
    import torch

    from litforge.tokenizer import byte_level_tokenizer

    torch.set_num_threads(threads)
    hidden, inner, depth = BACKBONE["hidden_size"], BACKBONE["intermediate_size"], BACKBONE["num_hidden_layers"]
    vocab = len(byte_level_tokenizer())  # both sides' tokenizer
    body = [(hidden, hidden)] * 4 + [(hidden, inner)] * 2 + [(inner, hidden)]  # q, k, v, o, gate, up, down

    def layers_of(tokens: int, head_tokens: int) -> list[tuple[int, int, int]]:
        """(tokens, in, out) of every linear layer in one batch."""
        return [(tokens, i, o) for i, o in body] * depth + [(head_tokens, hidden, vocab)]

    batch = {"litforge": layers_of(BATCH * (PROMPT + 2 * RESPONSE), BATCH * 2 * RESPONSE),
             "trl": layers_of(2 * BATCH * (PROMPT + RESPONSE), 2 * BATCH * (PROMPT + RESPONSE))}
    products = {}  # (tokens, in, out) -> forward, input gradient, weight gradient: (a, b, out) of a @ b
    for m, i, o in {layer for layers in batch.values() for layer in layers}:
        x, weight, grad = torch.randn(m, i), torch.randn(o, i), torch.randn(m, o)  # laid out as nn.Linear has them
        products[m, i, o] = [(x, weight.t(), torch.empty(m, o)), (grad, weight, torch.empty(m, i)),
                             (grad.t(), x, torch.empty(o, i))]
    seconds = {layer: [float("inf")] * 3 for layer in products}
    for _ in range(rounds):  # rounds over every shape, so a slow spell of the machine hits both sides alike
        for layer, operands in products.items():
            for index, (a, b, out) in enumerate(operands):
                start = time.perf_counter()
                torch.mm(a, b, out=out)
                seconds[layer][index] = min(seconds[layer][index], time.perf_counter() - start)
    sides = {side: (sum(seconds[layer][0] for layer in layers), sum(sum(seconds[layer]) for layer in layers))
             for side, layers in batch.items()}
    batches = pairs_count // BATCH
    return {**{(side, "step"): f + fb for side, (f, fb) in sides.items()},
            **{(side, "run"): batches * f + 2 * batches * fb for side, (f, fb) in sides.items()}}


def best(runs: list[dict]) -> dict:
    """The fastest of repeated runs (the one least slowed by other work), with the lowest CPU time and memory seen."""
    return {**max(runs, key=lambda r: r["pairs_per_s"]), "cpu_s_per_pair": min(r["cpu_s_per_pair"] for r in runs),
            "peak_rss_delta_mb": min(r["peak_rss_delta_mb"] for r in runs)}


if __name__ == "__main__":
    main()
