"""Generation speed: litforge's sampler against plain `model.generate` on the same prompts, and where an
iteration's wall time goes (generating, judging, training).

    python benchmarks/generation.py                          # throughput table, ~1-2 min on one thread
    python benchmarks/generation.py --iteration-stats runs/bench/iterative_rpo/DPO_NLL_seed0/iterations/final.json

Both samplers decode greedily with the KV cache, the same left-padded batches and the same number of new tokens;
tokens/s counts new tokens up to eos.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from litforge.datamodules.arithmetic import arithmetic_questions

from litforge.backbones import TinyModel
from litforge.generation import generate
from litforge.tokenizer import byte_level_tokenizer


def hf_generate(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int) -> tuple[int, float]:
    """New tokens and seconds of `model.generate` (greedy, cache on) over left-padded batches."""
    started, produced = time.perf_counter(), 0
    encoded = [[tokenizer.bos_token_id] + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    for start in range(0, len(encoded), batch_size):
        rows = encoded[start:start + batch_size]
        width = max(map(len, rows))
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        for row in out[:, width:].tolist():
            produced += row.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in row else len(row)
    return produced, time.perf_counter() - started


def throughput(sizes: list[tuple[int, int]], prompts: int, batch_size: int, max_new_tokens: int, repeats: int) -> None:
    """Print the tokens/s table for each (hidden, layers) size."""
    tokenizer = byte_level_tokenizer()
    texts = [q["prompt"] for q in arithmetic_questions(prompts, "train")]
    print(f"{prompts} prompts, batch {batch_size}, {max_new_tokens} new tokens, greedy, best of {repeats}\n")
    print("| model | litforge tok/s | model.generate tok/s | ratio | same tokens |")
    print("|---|---|---|---|---|")
    for hidden, layers in sizes:
        model = TinyModel(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                          max_position_embeddings=128).build(len(tokenizer), tokenizer.pad_token_id,
                                                             tokenizer.bos_token_id, tokenizer.eos_token_id).eval()
        model.config.use_cache = True
        ours, theirs = 0.0, 0.0
        for _ in range(repeats):
            out = generate(model, tokenizer, texts, temperature=0, max_new_tokens=max_new_tokens,
                           batch_size=batch_size)
            ours = max(ours, out.new_tokens / out.seconds)
            produced, seconds = hf_generate(model, tokenizer, texts, batch_size, max_new_tokens)
            theirs = max(theirs, produced / seconds)
        print(f"| llama {hidden}x{layers} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f} | "
              f"{out.new_tokens == produced} |", flush=True)


def iteration_shares(path: str) -> None:
    """Print each iteration's seconds generating, judging and training from an `iterations/final.json`."""
    with open(path) as handle:
        summary = json.load(handle)
    print("\n| iteration | generate s | judge s | train s | generate share | judge share | train share |")
    print("|---|---|---|---|---|---|---|")
    for k, stats in summary["iterations"].items():
        parts = [stats.get("generate_s", 0.0), stats.get("judge_s", 0.0), stats.get("train_s", 0.0)]
        total = sum(parts) or 1.0
        print(f"| {k} | " + " | ".join(f"{p:.1f}" for p in parts) + " | "
              + " | ".join(f"{p / total:.0%}" for p in parts) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=["128x2", "256x4"], help="HIDDENxLAYERS")
    parser.add_argument("--iteration-stats", default=None, help="an iterations/final.json to break down")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [tuple(int(x) for x in size.split("x")) for size in args.sizes]
    throughput(sizes, args.prompts, args.batch_size, args.max_new_tokens, args.repeats)
    if args.iteration_stats:
        iteration_shares(args.iteration_stats)


if __name__ == "__main__":
    main()
