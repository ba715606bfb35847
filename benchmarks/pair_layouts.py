"""Which layout of a preference batch is fastest on long-tailed lengths: padding-free rows or per-length groups.

    python benchmarks/pair_layouts.py [--pairs 256] [--vocab 32000] [--threads 2] [--repeats 2]
    python benchmarks/pair_layouts.py --device cuda --dtype bfloat16     # a GPU (also a row of gpu_check.py)

Issue 19, item 1 names two ways to spend no compute on padding: sequences flattened into one row with restarting
positions and attention per pair (litforge's `padding_free`), or batches of pairs of similar length (`group_by_length`)
run as padded rows. This script times one epoch of forward + backward of the policy's preference loss (no optimizer
step, so the weights and hence every layout's log-probs stay the same) under four layouts, in one process,
alternating:

- `padded, random batches`: the seeded shuffle, each batch in shared-prompt rows [prompt | chosen | rejected] padded
  to the batch's longest segments (`padding_free: false`);
- `padding-free, random batches`: the same batches as one row of their real tokens (`padding_free: true`);
- `padded, length groups`: `group_by_length: true` (seeded mega-batches of 50 batches sorted by length), padded rows;
- `padding-free, length groups`: both.

Data and model are `dpo_realistic.py`'s: long-tailed pairs (prompt median 150, responses median 250 tokens, sigma 0.8,
cut at 1,024 per sequence), a 4-layer 256-wide Llama with a 32,000-token vocabulary, SDPA, batches of 8 pairs, the
LM head in chunks of 256 response positions; on CPU with litforge's malloc setting, as `litforge fit` applies it
(`litforge.runtime`). `--device cuda` takes the same data and model (`--dtype bfloat16`: the
forward under bf16 autocast, as `precision: bf16-mixed` runs it) and synchronises before each clock read. Each layout
reports its best of `--repeats` epochs, the tokens its layers computed (real tokens plus padding), and the summed
log-prob of the epoch's chosen responses, which must agree across layouts (the same pairs, whatever their grouping).
The loss is DPO's on the mean token log-probs (see `margin`). The last line is the ratio of the two ways the issue
names.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import nullcontext

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dpo_realistic import BACKBONE, BATCH, BETA, MAX_LENGTH, machine, pairs, tokenizer  # noqa: E402

LAYOUTS = {"padded, random batches": (False, False), "padding-free, random batches": (True, False),
           "padded, length groups": (False, True), "padding-free, length groups": (True, True)}
LM_HEAD_CHUNK = 256


def epoch_batches(data: list[dict], vocab: int) -> dict[bool, list[dict]]:
    """The training epoch's batches (PairCollator's 2B rows) in litforge's seeded order, by `group_by_length`: the
    pairs tokenized once, then batched both ways."""
    from litforge.datamodules import PreferenceDataModule

    class Pairs(PreferenceDataModule):
        def pairs(self, split):
            return data if split == "train" else None

    with tempfile.TemporaryDirectory() as root:
        tokenizer(vocab).save_pretrained(root)
        datamodule = Pairs(tokenizer=root, max_length=MAX_LENGTH, batch_size=BATCH)
    datamodule.setup("fit")
    batches = {}
    for grouped in (False, True):
        datamodule.group_by_length = grouped
        batches[grouped] = list(datamodule.train_dataloader())
    return batches


def margin(out) -> "torch.Tensor":
    """The pairs' margin: the difference of their mean token log-probs (SimPO's, with no reference: the policy's work
    is DPO's). DPO's sum-of-log-probs margin without a reference is hundreds of nats on random pairs: its gradients
    underflow to subnormal floats, which slow a CPU's backward 3-30x, and the timings would measure that."""
    return (out.chosen / out.chosen_tokens - out.rejected / out.rejected_tokens).float()


def computed_tokens(batch: dict, padding_free: bool) -> int:
    """Tokens the decoder's layers run on for this batch: the real ones without padding, else the padded rows'."""
    from litforge.shared_prompt import share_prompts

    layout = share_prompts(batch)
    if padding_free:
        return int(layout["real"].sum())
    return layout["real"].numel()


def measure(count: int = 256, vocab: int = 32000, repeats: int = 2, device: str = "cpu", dtype: str = "float32",
            backbone: dict | None = None, log=print) -> dict[str, dict]:
    """Seconds of one epoch's forward + backward per layout (the best of `repeats`), the tokens its layers computed and
    the summed log-prob of the chosen responses (equal under every layout)."""
    import torch
    import torch.nn.functional as F
    from litforge.lightning_modules import DPONLL

    from litforge.backbones import TinyModel
    from litforge.runtime import keep_freed_memory

    data = pairs(count, vocab)
    batches = epoch_batches(data, vocab)
    module = DPONLL(backbone=TinyModel(**(backbone or BACKBONE)), tokenizer=tokenizer(vocab), beta=BETA, alpha=0.0,
                    lm_head_chunk=LM_HEAD_CHUNK)
    module.configure_model()
    if device == "cpu":
        keep_freed_memory()  # as `litforge fit` sets it on CPU (litforge.runtime): freed activations are reused
    model = module.model.to(device)
    model.train()
    autocast = (torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16) if dtype == "bfloat16"
                else nullcontext())

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def epoch(padding_free: bool, grouped: bool, limit: int | None = None) -> tuple[float, float]:
        module.padding_free = padding_free
        total = 0.0  # the summed log-prob of every chosen response: the same under every layout
        sync()
        start = time.perf_counter()
        for batch in batches[grouped][:limit]:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            with autocast:
                out = module.pair_logprobs(model, batch)
            loss = -F.logsigmoid(BETA * margin(out)).mean()
            loss.backward()
            total += out.chosen.detach().sum().item()
            model.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start, total

    results = {name: {"seconds": float("inf"), "tokens": sum(computed_tokens(b, free) for b in batches[grouped])}
               for name, (free, grouped) in LAYOUTS.items()}
    for free, grouped in LAYOUTS.values():  # warm-up: the allocator, kernel choices, each layout's code path
        epoch(free, grouped, limit=2)
    for round_ in range(repeats):  # alternate the layouts, so a slow spell of the machine hits all of them
        for name, (free, grouped) in LAYOUTS.items():
            seconds, logp = epoch(free, grouped)
            results[name]["seconds"] = min(results[name]["seconds"], seconds)
            results[name]["logp"] = logp
            log(f"round {round_ + 1}, {name}: {seconds:.2f} s, chosen log-prob sum {logp:.2f}")
    if module.refusals:
        log("padded rows taken instead: " + "; ".join(sorted(module.refusals)))
    return results


def table(results: dict[str, dict], count: int) -> list[str]:
    """The results as printed: one line a layout, then the ratio the issue asks about."""
    fastest = min(r["seconds"] for r in results.values())
    real = min(r["tokens"] for r in results.values())
    lines = [f"{'layout':30s} {'s/epoch':>8s} {'pairs/s':>8s} {'vs fastest':>10s} {'tokens computed':>16s} "
             f"{'of real':>8s} {'logp(chosen) sum':>17s}"]
    for name, r in results.items():
        lines.append(f"{name:30s} {r['seconds']:8.2f} {count / r['seconds']:8.2f} {r['seconds'] / fastest:9.2f}x "
                     f"{r['tokens']:16,d} {r['tokens'] / real:7.2f}x {r['logp']:17.2f}")
    grouped, free = results["padded, length groups"]["seconds"], results["padding-free, length groups"]["seconds"]
    random_free = results["padding-free, random batches"]["seconds"]
    lines.append(f"padding-free (random batches) vs per-length groups (padded): {grouped / random_free:.2f}x; "
                 f"with groups as well: {grouped / free:.2f}x")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--repeats", type=int, default=2, help="epochs per layout, alternating; the fastest counts")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="bfloat16: the forward under bf16 autocast (fp32 weights), as bf16-mixed")
    args = parser.parse_args()
    for name in ("pairs", "threads", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.pairs % BATCH:
        parser.error(f"--pairs must be a multiple of the batch size {BATCH} (the layouts' batches are then alike), "
                     f"got {args.pairs}")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    torch.set_num_threads(args.threads)
    print(machine(args.threads).replace(" per side", "") + (f"; {torch.cuda.get_device_name(args.device)}"
                                                            if args.device.startswith("cuda") else ""))
    print(f"data: {args.pairs} pairs, vocab {args.vocab}, batch {BATCH}; device {args.device}, {args.dtype}",
          flush=True)
    results = measure(args.pairs, args.vocab, args.repeats, args.device, args.dtype,
                      log=lambda line: print(line, flush=True))
    print("\n".join(table(results, args.pairs)))


if __name__ == "__main__":
    main()
