"""litforge DPO against TRL's DPOTrainer on long-tailed pair lengths and a real-sized vocabulary (issue 19).

    python benchmarks/dpo_realistic.py [--pairs 256] [--vocab 32000] [--threads 2] [--repeats 3]
    python benchmarks/dpo_realistic.py --memory-only --vocab 128000

Needs `pip install "trl==1.16.*"` (the `bench` extra; CI does not install it). Every side trains the same model on
the same pairs with the same settings, each run in its own process with the same number of threads:
- Model: a 4-layer, 256-wide Llama (4 heads, FFN 688), `--vocab` tokens (default 32,000), random init from one
  config and seed, fp32, SDPA attention, gradient checkpointing off.
- Data (`pair_lengths`, seeded): 256 pairs. Prompt lengths ~ LogNormal(median 150, sigma 0.8), chosen and rejected
  lengths drawn separately ~ LogNormal(median 250, sigma 0.8) (token counts with bos / eos, rounded, at least 4);
  the tails are cut at 1,024 tokens per sequence (prompt at most 1,020, each response cut so that prompt + response
  <= 1,024), which is also TRL's default `max_length`, so neither side truncates. Token ids are random: prompts over
  the whole vocabulary, chosen responses from its lower half, rejected ones from its upper half (so DPO has something
  to learn in one epoch and the final losses show both sides trained alike). Text is "w<id>" words read by a
  word-level tokenizer built here (`tokenizer`): no downloads, and exactly the drawn token counts on both sides.
- Training: one epoch with precomputed reference log-probs (the precompute pass counted), batch size 8, AdamW as TRL
  sets it (torch's fused AdamW, betas 0.9/0.999, eps 1e-8, no weight decay) at a constant learning rate 5e-5,
  gradient clipping 1.0, sigmoid DPO with beta 0.1.
- Sides: litforge with its best options (`LITFORGE_MODULE`, `LITFORGE_DATA`: those the installed litforge has);
  TRL as a user runs it (DPOConfig defaults plus the settings above and precompute_ref_log_probs); TRL with the best
  options it offers on CPU (`TRL_BEST`; the options it refuses here are printed).
Pairs/s is pairs over the wall time from building the trainer (tokenizing the data included) to the end of training.
Peak memory is the process's maximum resident set size after training minus the same before building the trainer.
The sides alternate; each reports its fastest run and its lowest peak memory (a shared machine only ever slows a run
down). The training loss is each side's mean over the epoch and over its last quarter of steps (the data order
differs between sides, so they agree within noise, not exactly). The last two lines are the pairs/s ratios.
`--memory-only` runs each side once on the longest `--pairs` pairs (default 16: the batches that set a run's peak)
and ends with the peak-memory ratios.

Departures from issue 19's setup:
1. The learning rate is a constant 5e-5 on every side, where TRL's default decays 1e-6 linearly. That way the loss
   moves within one epoch, and the loss agreement checks something.
2. Chosen and rejected tokens come from opposite halves of the vocabulary, so there is a signal to learn; lengths
   and costs are as the issue states.
3. `--memory-only` trains on the 16 longest pairs, not a whole epoch: a 128k-vocabulary epoch of TRL takes about an
   hour on 2 cores.
4. Cost: on 2 cores one litforge epoch takes about 7 minutes and one TRL epoch about 18 (dev runs on a loaded
   machine). The default of 3 runs per side takes about 2 hours; `--repeats 1` takes about 40 minutes.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

BACKBONE = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 688,
            "max_position_embeddings": 1024, "seed": 0, "attn_implementation": "sdpa"}
BATCH, LR, BETA, CLIP = 8, 5e-5, 0.1, 1.0
MAX_LENGTH = 1024  # tokens per sequence (prompt + one response), TRL's default max_length
PROMPT_MEDIAN, RESPONSE_MEDIAN, SIGMA, MIN_TOKENS = 150, 250, 0.8, 4
SPECIALS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>")  # ids 0-3; words "w4" ... "w<vocab-1>"

# The litforge side's settings: options the installed litforge lacks are left out and printed. lm_head_chunk 256:
# at a 128k vocabulary a 1,024-row chunk's logits and their softmax are 0.5 GB each (peak 4.1 GB against 2.1 GB at
# 256 on the 8 longest pairs), for the same CPU time. Override any of them with --litforge NAME=VALUE.
LITFORGE_MODULE = {"shared_prompt": True, "padding_free": True, "lm_head_chunk": 256}
LITFORGE_DATA = {"group_by_length": True}
# TRL's best on this machine. padding_free is asked for and reported: TRL 1.16 warns that it is "temporarily
# unavailable" and falls back to padding (it also needs flash attention, which CPUs lack). The dataset is given
# sorted by length (TRL's precompute pass batches in dataset order) with a `length` column for the sampler
# (remove_unused_columns=False keeps it: TRL's own columns have no `input_ids` for transformers to measure).
TRL_BEST = {"train_sampling_strategy": "group_by_length", "remove_unused_columns": False, "padding_free": True}
SIDES = {"trl": "TRL as a user runs it", "trl_best": "TRL best", "litforge": "litforge"}


def pair_lengths(count: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """(prompt, chosen, rejected) token counts of `count` pairs (prompt with bos, responses with eos), seeded."""
    rng = random.Random(seed)

    def draw(median: int, cap: int) -> int:
        return max(MIN_TOKENS, min(cap, round(rng.lognormvariate(math.log(median), SIGMA))))

    lengths = []
    for _ in range(count):
        prompt = draw(PROMPT_MEDIAN, MAX_LENGTH - MIN_TOKENS)
        lengths.append((prompt, draw(RESPONSE_MEDIAN, MAX_LENGTH - prompt), draw(RESPONSE_MEDIAN, MAX_LENGTH - prompt)))
    return lengths


def pairs(count: int, vocab: int, seed: int = 0) -> list[dict[str, str]]:
    """Text pairs of `pair_lengths`: bos + random words, then chosen words from the lower half of the vocabulary
    and rejected ones from the upper half; each side adds the eos itself."""
    rng = random.Random(seed + 1)
    first, middle = len(SPECIALS), (len(SPECIALS) + vocab) // 2

    def words(n: int, low: int, high: int) -> str:
        return "".join(f" w{rng.randrange(low, high)}" for _ in range(n))

    return [{"prompt": SPECIALS[1] + words(prompt - 1, first, vocab), "chosen": words(chosen - 1, first, middle),
             "rejected": words(rejected - 1, middle, vocab)} for prompt, chosen, rejected in pair_lengths(count, seed)]


def tokenizer(vocab: int):
    """A word-level tokenizer of `vocab` ids: the specials, then "w4" ... "w<vocab-1>" split on whitespace."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {token: i for i, token in enumerate(SPECIALS)} | {f"w{i}": i for i in range(len(SPECIALS), vocab)}
    backend = Tokenizer(models.WordLevel(vocab=words, unk_token=SPECIALS[3]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    built = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=SPECIALS[0], bos_token=SPECIALS[1],
                                    eos_token=SPECIALS[2], unk_token=SPECIALS[3])
    built.padding_side = "right"
    return built


def selection(count: int, memory_only: bool) -> list[int]:
    """The pairs a run trains on: the first `count` of the seeded set, or with --memory-only the `count` longest of
    256 (so every side meets the batches that set its peak), in the set's order."""
    if not memory_only:
        return list(range(count))
    lengths = pair_lengths(256)
    return sorted(sorted(range(256), key=lambda i: -sum(lengths[i]))[:count])


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def accepted(classes: tuple, options: dict) -> tuple[dict, list[str]]:
    """The options some `__init__` along the classes' MROs takes, and the names of those none takes."""
    names = {name for cls in classes for klass in cls.__mro__ if "__init__" in vars(klass)
             for name in inspect.signature(klass.__init__).parameters}
    return {k: v for k, v in options.items() if k in names}, [k for k in options if k not in names]


def run_litforge(data: list[dict], vocab: int, root: str) -> dict:
    import lightning as L
    import torch
    from litforge.datamodules import PreferenceDataModule
    from litforge.lightning_modules import DPONLL
    from litforge.plugins.reference import PrecomputedReference

    from litforge.backbones import TinyModel

    class Pairs(PreferenceDataModule):
        def pairs(self, split):
            return data if split == "train" else None

    class Losses(L.Callback):
        def __init__(self):
            self.values = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.values.append(float(outputs["loss"]))

    module_options, module_missing = accepted((DPONLL,), LITFORGE_MODULE)
    data_options, data_missing = accepted((Pairs,), LITFORGE_DATA)
    tokenizer(vocab).save_pretrained(os.path.join(root, "tokenizer"))
    base = max_rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    datamodule = Pairs(tokenizer=os.path.join(root, "tokenizer"), max_length=MAX_LENGTH, batch_size=BATCH,
                       **data_options)
    module = DPONLL(backbone=TinyModel(**BACKBONE), tokenizer=datamodule.tokenizer, beta=BETA, alpha=0.0,
                    reference=PrecomputedReference(os.path.join(root, "ref")),
                    optimizer=partial(torch.optim.AdamW, lr=LR, weight_decay=0.0, fused=True), **module_options)
    losses = Losses()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, gradient_clip_val=CLIP,
                        default_root_dir=root, callbacks=[losses], max_epochs=1)
    trainer.fit(module, datamodule=datamodule)
    wall = time.perf_counter() - start
    last = losses.values[-max(1, len(losses.values) // 4):]
    used = {**module_options, **data_options}
    return {"pairs_per_s": len(data) / wall, "wall_s": wall, "cpu_s_per_pair": (time.process_time() - cpu) / len(data),
            "steps": len(losses.values),
            "loss_mean": sum(losses.values) / len(losses.values), "loss_last": sum(last) / len(last),
            "peak_rss_mb": max_rss_mb() - base,
            "options": [f"{k}={v}" for k, v in used.items()]
            + [f"{k}: not in this litforge" for k in module_missing + data_missing]}


def run_trl(data: list[dict], vocab: int, root: str, best: bool) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from litforge.backbones import TinyModel

    tok = tokenizer(vocab)
    rows = data
    options = dict(TRL_BEST) if best else {}
    if best:  # sorted by length, longest first, with the length TRL's sampler groups by (the longer row of a pair)
        counts = [(len(tok(p["prompt"] + p["chosen"])["input_ids"]), len(tok(p["prompt"] + p["rejected"])["input_ids"]))
                  for p in data]
        rows = [dict(p, length=max(c) + 1) for c, p in sorted(zip(counts, data), key=lambda x: -max(x[0]))]
    steps = -(-len(data) // BATCH)
    base = max_rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    model = TinyModel(**BACKBONE).build(len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    model.config.use_cache = False
    config = DPOConfig(output_dir=root, per_device_train_batch_size=BATCH, learning_rate=LR, lr_scheduler_type="constant",
                       beta=BETA, max_length=MAX_LENGTH, max_grad_norm=CLIP, gradient_checkpointing=False, bf16=False,
                       fp16=False, use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True,
                       logging_steps=max(1, steps // 4), precompute_ref_log_probs=True, num_train_epochs=1,
                       **options)
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok)
    output = trainer.train()
    wall = time.perf_counter() - start
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    notes = [f"{k}={v}" for k, v in options.items() if k != "padding_free"]
    if best:
        notes.append("dataset sorted by length")
        if not trainer.padding_free:  # TRL 1.16: "temporarily unavailable", a warning and padded batches
            notes.append(f"padding_free=True asked, refused by TRL {trl.__version__} (it falls back to padding)")
        if not hasattr(config, "use_logits_to_keep"):  # 1.16 runs the LM head on completion positions anyway
            notes.append(f"use_logits_to_keep: not in TRL {trl.__version__} (its fused LM head scores only "
                         "completion positions)")
    return {"pairs_per_s": len(data) / wall, "wall_s": wall, "cpu_s_per_pair": (time.process_time() - cpu) / len(data),
            "steps": trainer.state.global_step,
            "loss_mean": output.training_loss, "loss_last": logged[-1] if logged else output.training_loss,
            "peak_rss_mb": max_rss_mb() - base, "options": notes, "trl": trl.__version__, "torch": torch.__version__}


def child(side: str, count: int, vocab: int, threads: int, memory_only: bool) -> None:
    import torch

    torch.set_num_threads(threads)
    every = pairs(256 if memory_only else count, vocab)
    data = [every[i] for i in selection(count, memory_only)]
    with tempfile.TemporaryDirectory() as root:
        result = run_litforge(data, vocab, root) if side == "litforge" else run_trl(data, vocab, root, side == "trl_best")
    print("RESULT " + json.dumps(result))


def machine(threads: int) -> str:
    """CPU model, cores, threads used and the versions of the libraries compared."""
    import lightning
    import torch
    import transformers

    try:
        trl_version = __import__("trl").__version__
    except ImportError:
        trl_version = "not installed"
    model = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "describe", "--always",
                             "--dirty"], capture_output=True, text=True, check=False).stdout.strip() or "unknown"
    return (f"machine: {model}, {os.cpu_count()} cores, {threads} threads per side; torch {torch.__version__}, "
            f"transformers {transformers.__version__}, lightning {lightning.__version__}, TRL {trl_version}, "
            f"litforge {commit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=None, help="pairs trained (default 256; 16 with --memory-only)")
    parser.add_argument("--vocab", type=int, default=32000, help="vocabulary size (model and tokenizer)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="runs per side, alternating (default 3; 1 with "
                                                                   "--memory-only); the fastest is reported")
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=list(SIDES))
    parser.add_argument("--memory-only", action="store_true",
                        help="peak memory on the longest pairs (once per side); ends with the memory ratios")
    parser.add_argument("--litforge", nargs="+", default=[], metavar="NAME=VALUE",
                        help="override a litforge option (a JSON value), e.g. padding_free=false group_by_length=false")
    parser.add_argument("--child", metavar="SIDE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.pairs = (16 if args.memory_only else 256) if args.pairs is None else args.pairs
    args.repeats = (1 if args.memory_only else 3) if args.repeats is None else args.repeats
    for name in ("pairs", "threads", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.memory_only and args.pairs > 256:
        parser.error(f"--memory-only takes the longest of 256 pairs: --pairs must be at most 256, got {args.pairs}")
    if args.vocab < 2 * len(SPECIALS):
        parser.error(f"--vocab must be at least {2 * len(SPECIALS)}, got {args.vocab}")
    flags = ["--pairs", str(args.pairs), "--vocab", str(args.vocab), "--threads", str(args.threads)]
    flags += ["--memory-only"] if args.memory_only else []
    flags += ["--litforge", *args.litforge] if args.litforge else []
    for override in args.litforge:
        name, _, value = override.partition("=")
        if name not in {**LITFORGE_MODULE, **LITFORGE_DATA}:
            parser.error(f"--litforge {override}: unknown option {name!r}; known: "
                         + ", ".join({**LITFORGE_MODULE, **LITFORGE_DATA}))
        try:
            (LITFORGE_MODULE if name in LITFORGE_MODULE else LITFORGE_DATA)[name] = json.loads(value)
        except json.JSONDecodeError:
            parser.error(f"--litforge {override}: the value must be JSON (true, false, null, a number)")
    if args.child:
        return child(args.child, args.pairs, args.vocab, args.threads, args.memory_only)
    every = pair_lengths(256 if args.memory_only else args.pairs)
    lengths = [every[i] for i in selection(args.pairs, args.memory_only)]
    print(machine(args.threads))
    tokens = [sum(x) for x in lengths]
    print(f"data: {args.pairs} pairs{' (the longest of 256)' if args.memory_only else ''}, vocab {args.vocab}; "
          f"prompt / chosen / rejected tokens median {median([x[0] for x in lengths])} / "
          f"{median([x[1] for x in lengths])} / {median([x[2] for x in lengths])}, longest sequence "
          f"{max(x[0] + max(x[1:]) for x in lengths)}, real tokens per pair mean {sum(tokens) / len(tokens):.0f}",
          flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    results: dict[str, list[dict]] = {}
    for _ in range(args.repeats):  # alternate the sides, so slow spells of a shared machine hit all of them
        for side in args.sides:
            command = [sys.executable, os.path.abspath(__file__), "--child", side, *flags]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
            results.setdefault(side, []).append(json.loads(line[0][7:]))
            run = results[side][-1]
            print(f"{SIDES[side]}: {run['pairs_per_s']:.3f} pairs/s, {run['wall_s']:.1f} s, CPU "
                  f"{run['cpu_s_per_pair']:.2f} s/pair, peak RSS {run['peak_rss_mb']:.0f} MB, loss "
                  f"{run['loss_mean']:.4f}", flush=True)
    best = {side: {**max(runs, key=lambda r: r["pairs_per_s"]), "peak_rss_mb": min(r["peak_rss_mb"] for r in runs),
                   "cpu_s_per_pair": min(r["cpu_s_per_pair"] for r in runs)} for side, runs in results.items()}
    quarter = max(1, -(-args.pairs // BATCH) // 4)
    print(f"{'side':24s} {'pairs/s':>8s} {'CPU s/pair':>11s} {'peak RSS MB':>12s} {'loss (epoch)':>13s} "
          f"{f'loss (last {quarter})':>14s}")
    for side, run in best.items():
        print(f"{SIDES[side]:24s} {run['pairs_per_s']:8.3f} {run['cpu_s_per_pair']:11.2f} {run['peak_rss_mb']:12.0f} "
              f"{run['loss_mean']:13.4f} {run['loss_last']:14.4f}")
    for side, run in best.items():
        print(f"{SIDES[side]} options: {', '.join(run['options']) or 'DPOConfig defaults'}")
    if "litforge" not in best or not {"trl", "trl_best"} & set(best):
        return
    ours = best["litforge"]
    memory = [f"{label} {ours['peak_rss_mb'] / best[side]['peak_rss_mb']:.2f}"
              for side, label in (("trl", "TRL as a user runs it"), ("trl_best", "TRL best")) if side in best]
    if args.memory_only:
        print(f"peak memory ratio litforge/TRL at vocab {args.vocab}: {', '.join(memory)}")
        return
    print(f"peak memory ratio litforge/TRL: {', '.join(memory)}")
    for side, label in (("trl", "TRL as run by a user"), ("trl_best", "TRL best")):  # the exact last lines
        if side in best:
            print(f"ratio vs {label}: {ours['pairs_per_s'] / best[side]['pairs_per_s']:.2f}")


def median(values: list[int]) -> float:
    ordered = sorted(values)
    return (ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2


if __name__ == "__main__":
    main()
