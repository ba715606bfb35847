"""CoPE's train-step cost against RoPE with SDPA: time and peak-memory ratios at T = 256 and 512, from one run.

    python benchmarks/cope_overhead.py                         # CPU, one thread: RoPE+SDPA against CoPE
    python benchmarks/cope_overhead.py --profile 256           # + where CoPE's step time goes, op by op
    python benchmarks/cope_overhead.py --device cuda

Each (encoding, length) runs in its own process. Peak memory is the step's high-water mark above what the process
holds before the timed steps: on CUDA `max_memory_allocated`, on CPU the peak resident set (`VmHWM`, reset through
`/proc/self/clear_refs` after the warm-up steps, and after `malloc_trim` has handed the memory the warm-up freed back
to the system, so that the timed steps must take it again).

Where the cost goes: CoPE cannot use a fused SDPA kernel, because its logits depend on the (batch, heads, T, T)
gates: it materialises the logits, the sigmoid gates, their reverse cumulative sum (the positions), the int64 index
floor(p), two gathers (the interpolated position logits) and the softmax, each O(T^2) per head, in the forward pass,
and in the backward the index again, a gather, a cumulative sum and two scatter-adds (`PositionLogits.backward`).
On this 2-core CPU, a fresh (T x T) buffer costs as much as the op that fills it (first-touch page faults), so the
float -> int64 index conversion and `frac` lead `--profile`, ahead of the gathers, scatters and cumulative sums.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from litforge.plugins.position import CoPE, RoPE

from litforge.backbones import TinyModel

VARIANTS = {"rope": lambda: RoPE(), "cope": lambda: CoPE(npos_max=64)}


def build(variant: str, seq_len: int, args: argparse.Namespace):
    """The benchmark model with one encoding attached, an optimizer and one batch."""
    model = TinyModel(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
                      max_position_embeddings=seq_len).build(259, 0, 1, 2).to(args.device)
    VARIANTS[variant]().attach(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(3, 259, (args.batch_size, seq_len), device=args.device)
    return model, optimizer, ids


def train_step(model, optimizer, ids) -> None:
    """Forward, backward and optimizer step on one batch."""
    model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def resident_kib(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def measure(variant: str, seq_len: int, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per train step and the step's peak memory in MiB (this process only)."""
    model, optimizer, ids = build(variant, seq_len, args)
    cuda = args.device == "cuda"
    for _ in range(args.warmup):
        train_step(model, optimizer, ids)
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed activations resident; give them back first
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the peak resident set to the current one
        base = resident_kib("VmRSS")
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        train_step(model, optimizer, ids)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else (resident_kib("VmHWM") - base) / 2**10
    return {"seconds": sorted(times)[len(times) // 2], "peak_mib": peak}


def in_subprocess(variant: str, seq_len: int, args: argparse.Namespace) -> dict[str, float]:
    """`measure` in a fresh process, so that no variant inherits another's memory or compiled code."""
    command = [sys.executable, __file__, "--child", variant, str(seq_len)] + args.passthrough
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{variant} at T={seq_len} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile(seq_len: int, args: argparse.Namespace, top: int = 20) -> None:
    """Print CoPE's self CPU time per op (and input shapes) over a few train steps, largest first."""
    from torch.profiler import ProfilerActivity, profile

    model, optimizer, ids = build("cope", seq_len, args)
    for _ in range(args.warmup):
        train_step(model, optimizer, ids)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.steps):
            train_step(model, optimizer, ids)
    rows = sorted(((event.self_cpu_time_total / args.steps / 1e3, event.key, event.input_shapes, event.count)
                   for event in prof.key_averages(group_by_input_shape=True)), reverse=True)
    total = sum(row[0] for row in rows)
    print(f"\nCoPE, T={seq_len}: {total:.1f} ms self CPU time per step; largest ops:")
    print("| ms/step | share | op | calls/step | input shapes |\n|---|---|---|---|---|")
    for ms, name, shapes, count in rows[:top]:
        print(f"| {ms:.1f} | {100 * ms / total:.1f}% | {name} | {count // args.steps} | {str(shapes)[:70]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", type=int, nargs="*", default=[], metavar="T", help="profile CoPE at these T")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args)))
        return
    args.passthrough = [f"--{name.replace('_', '-')}={getattr(args, name)}"
                        for name in ("device", "batch_size", "hidden", "layers", "heads", "steps", "warmup", "threads")]
    print(f"{args.device}, {args.threads} thread(s), batch {args.batch_size}, {args.layers} layers x {args.hidden} "
          f"wide, {args.heads} heads; median of {args.steps} steps after {args.warmup}; peak = step memory above the "
          "process's resident memory before the timed steps")
    others = [variant for variant in args.variants if variant != "rope"]
    print("| T | RoPE+SDPA s/step | peak MiB | " + " | ".join(f"{v} s/step | time ratio | peak MiB | memory ratio"
                                                    for v in others) + " |")
    print("|---" * (3 + 4 * len(others)) + "|")
    for seq_len in args.lengths:
        rope = in_subprocess("rope", seq_len, args)
        cells = [f"{rope['seconds']:.3f}", f"{rope['peak_mib']:.0f}"]
        for variant in others:
            cost = in_subprocess(variant, seq_len, args)
            cells += [f"{cost['seconds']:.3f}", f"{cost['seconds'] / rope['seconds']:.2f}x", f"{cost['peak_mib']:.0f}",
                      f"{cost['peak_mib'] / rope['peak_mib']:.2f}x"]
        print(f"| {seq_len} | " + " | ".join(cells) + " |", flush=True)
    for seq_len in args.profile:
        profile(seq_len, args)


if __name__ == "__main__":
    main()
