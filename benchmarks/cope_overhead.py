"""CoPE's train-step cost against RoPE with SDPA: time and peak memory ratios at T = 256 and 512, from one run.

    python benchmarks/cope_overhead.py            # CPU, one thread; peak memory from the CPU allocator is not
    python benchmarks/cope_overhead.py --device cuda                        # tracked, so it is reported on CUDA only

Where the cost goes: CoPE cannot use a fused SDPA kernel, because its logits depend on the (batch, heads, T, T)
gates; it materialises the logits, the sigmoid gates, their reverse cumulative sum (the positions), two gathers of the
interpolated position logits and the softmax, each O(T^2) per head, in the forward pass and again in the backward.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from litforge.plugins.position import CoPE, RoPE

from litforge.backbones import TinyModel


def step_cost(position, seq_len: int, args: argparse.Namespace) -> tuple[float, float]:
    """Median seconds per train step and peak memory (MiB, CUDA only, else nan) of one model."""
    model = TinyModel(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
                      max_position_embeddings=seq_len).build(259, 0, 1, 2).to(args.device)
    position.attach(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(3, 259, (args.batch_size, seq_len), device=args.device)
    mask = torch.ones_like(ids)
    times = []
    for step in range(args.warmup + args.steps):
        if args.device == "cuda":
            torch.cuda.synchronize()
            if step == args.warmup:
                torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if args.device == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else float("nan")
    return sorted(times)[len(times) // 2], peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.device}, batch {args.batch_size}, {args.layers} layers x {args.hidden} wide, {args.heads} heads")
    print("| T | RoPE+SDPA s/step | CoPE s/step | time ratio | peak MiB RoPE | peak MiB CoPE | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for seq_len in args.lengths:
        rope_time, rope_peak = step_cost(RoPE(), seq_len, args)
        cope_time, cope_peak = step_cost(CoPE(npos_max=64), seq_len, args)
        print(f"| {seq_len} | {rope_time:.3f} | {cope_time:.3f} | {cope_time / rope_time:.2f}x | {rope_peak:.0f} | "
              f"{cope_peak:.0f} | {cope_peak / rope_peak:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
