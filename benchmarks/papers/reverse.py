"""Reverse training in miniature (Golovneva et al. 2024): the reversal curse on the symbolic task, and its cure.

    python benchmarks/papers/reverse.py              # the README table: ~25 minutes on one busy CPU thread
    python benchmarks/papers/reverse.py --pairs 500 --batch_size 128 --layers 4 --lr 3e-3 --steps 2000  # calibration

Trains one tiny Llama per method on facts "A1 A2 = B1 B2" (2-symbol names from 60 symbols, seen forward only),
then asks every fact forward ("A1 A2 = " -> "B1 B2") and in reverse ("B1 B2 = " -> "A1 A2"; the reversed language
with entity names as written, see `litforge.datamodules.reversal_tasks`), scored by exact match; also the reverse
question token-reversed ("2B 1B = " -> "2A 1A"), the language token reversal trains on. One thread.
The paper's claim: standard training ~0 in reverse; entity-preserving and random segment (k >= 2) far higher;
token and word reversal poor because they reverse the symbols inside each name.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import lightning as L
import torch

from litforge.backbones import TinyModel
from litforge.datamodules.reversal_tasks import SymbolicReversalDataModule
from litforge.lightning_modules.reverse_lm import ReverseLM
from litforge.plugins.reversal import EntityPreservingReversal, RandomSegmentReversal, TokenReversal, WordReversal

METHODS = {"standard": lambda: None, "token": TokenReversal, "word": WordReversal,
           "entity": EntityPreservingReversal, "segment": lambda: RandomSegmentReversal(k=2)}


def run(method: str, args: argparse.Namespace) -> dict[str, float]:
    """Train one method and return its forward/reverse exact match and the time it took."""
    L.seed_everything(args.seed, verbose=False)
    data = SymbolicReversalDataModule(num_pairs=args.pairs, entity_length=2, num_symbols=60, max_length=32,
                                      batch_size=args.batch_size, val_batch_size=1000, seed=args.seed)
    model = ReverseLM(transform=METHODS[method](), tokenizer=data.tokenizer,
                      backbone=TinyModel(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=4,
                                         max_position_embeddings=64, seed=args.seed),
                      optimizer=lambda params: torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        gradient_clip_val=1.0)
    start = time.time()
    trainer.fit(model, datamodule=data)
    minutes = (time.time() - start) / 60
    evaluator = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                          enable_model_summary=False)
    metrics = evaluator.validate(model, datamodule=data, verbose=False)
    merged = {key: value for result in metrics for key, value in result.items()}
    return {"forward": merged["val_forward/exact_match"], "reverse": merged["val_reverse/exact_match"],
            "reverse_tokens": merged["val_reverse_tokens/exact_match"], "minutes": minutes}


def main() -> None:
    """Run every method and print the table README.md quotes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"symbolic reversal: {args.pairs} pairs, 2-symbol names, {args.hidden}x{args.layers} Llama, "
          f"batch {args.batch_size}, AdamW {args.lr}, {args.steps} steps, seed {args.seed}")
    print("| method | forward | reverse (names as written) | reverse (token-reversed question) | minutes |")
    print("|---|---|---|---|---|")
    for method in args.methods:
        result = run(method, args)
        print(f"| {method} | {result['forward']:.3f} | {result['reverse']:.3f} | {result['reverse_tokens']:.3f} "
              f"| {result['minutes']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
