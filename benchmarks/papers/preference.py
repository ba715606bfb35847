"""Miniature of Pang et al. 2024 (DPO+NLL) and Xu et al. 2023 (pairwise Cringe) on synthetic CoT arithmetic.

    OMP_NUM_THREADS=1 python benchmarks/papers/preference.py [--seeds 0 1] [--sft-steps 300] [--pref-steps 120]

Per seed: SFT a 128-hidden 2-layer Llama on "ab+cd+ef=" -> "S1+ef=S2" (configs/sft/arithmetic.yaml), then from the
same SFT weights train plain DPO (alpha 0), DPO+NLL (alpha 1), an NLL-only control (beta 0: likelihood on the
chosen answers alone) and pairwise Cringe on (correct, incorrect) chain-of-thought pairs. Reported: final-answer
accuracy of greedy decoding on held-out test questions (disjoint from training by construction).
The paper's claim to look for: DPO+NLL > DPO. Numbers are printed as measured, whatever they show.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from functools import partial

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import lightning as L
import torch

from litforge.backbones import LocalCheckpoint, TinyModel
from litforge.datamodules import ArithmeticPreferenceDataModule, ArithmeticSFTDataModule
from litforge.datamodules.arithmetic import arithmetic_questions, extract_answer
from litforge.lightning_modules import DPONLL, CausalLM, PairwiseCringe
from litforge.optim import WarmupCosine
from litforge.plugins.reference import PrecomputedReference

BACKBONE = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 64}


@torch.no_grad()
def greedy_accuracy(model, tokenizer, questions, max_new_tokens: int = 16) -> float:
    """Share of questions whose greedy completion's final answer is right (all prompts have the same length)."""
    model.eval()
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer(q["prompt"], add_special_tokens=False)["input_ids"]
                        for q in questions])
    start, done = ids.size(1), torch.zeros(len(questions), dtype=torch.bool)
    for _ in range(max_new_tokens):
        next_token = model(input_ids=ids, use_cache=False).logits[:, -1].argmax(-1)
        next_token[done] = tokenizer.eos_token_id
        ids = torch.cat([ids, next_token[:, None]], 1)
        done |= next_token == tokenizer.eos_token_id
        if done.all():
            break
    texts = tokenizer.batch_decode(ids[:, start:], skip_special_tokens=True)
    return sum(extract_answer(t) == q["answer"] for t, q in zip(texts, questions)) / len(questions)


def trainer(steps: int, root: str) -> L.Trainer:
    """A quiet CPU trainer for a fixed number of steps."""
    return L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                     limit_val_batches=0, default_root_dir=root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--pref-steps", type=int, default=120)
    parser.add_argument("--pref-lr", type=float, default=3e-4)
    parser.add_argument("--num-test", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    methods = {
        "DPO (alpha 0)": partial(DPONLL, beta=0.1, alpha=0.0),
        "DPO+NLL (alpha 1)": partial(DPONLL, beta=0.1, alpha=1.0),
        "NLL only (beta 0)": partial(DPONLL, beta=0.0, alpha=1.0),
        "pairwise Cringe": partial(PairwiseCringe, alpha=1.0, b=2.0, tau=1.0, k=5),
    }
    results: dict[str, list[float]] = {"SFT start": [], **{name: [] for name in methods}}
    began = time.time()
    with tempfile.TemporaryDirectory() as root:
        for seed in args.seeds:
            L.seed_everything(seed, verbose=False)
            test = arithmetic_questions(args.num_test, "test", seed=0)
            sft_data = ArithmeticSFTDataModule(num_train=4000, num_val=0, num_test=0, batch_size=64, seed=seed)
            sft = CausalLM(backbone=TinyModel(**BACKBONE, seed=seed), tokenizer=sft_data.tokenizer,
                           optimizer=partial(torch.optim.AdamW, lr=3e-3, weight_decay=0.01),
                           scheduler=partial(WarmupCosine, warmup_steps=30, total_steps=args.sft_steps))
            trainer(args.sft_steps, root).fit(sft, datamodule=sft_data)
            start_dir = f"{root}/sft{seed}"
            sft.model.save_pretrained(start_dir)
            results["SFT start"].append(greedy_accuracy(sft.model, sft_data.tokenizer, test))
            print(f"seed {seed} SFT start: {results['SFT start'][-1]:.3f}  ({time.time() - began:.0f}s)", flush=True)
            for name, make in methods.items():
                L.seed_everything(seed, verbose=False)
                data = ArithmeticPreferenceDataModule(num_train=2000, num_val=0, batch_size=32, seed=seed,
                                                      task_seed=seed + 100)
                module = make(backbone=LocalCheckpoint(start_dir), tokenizer=data.tokenizer,
                              optimizer=partial(torch.optim.AdamW, lr=args.pref_lr),
                              **({} if "Cringe" in name else {"reference": PrecomputedReference(f"{root}/ref{seed}")}))
                trainer(args.pref_steps, root).fit(module, datamodule=data)
                results[name].append(greedy_accuracy(module.model, data.tokenizer, test))
                print(f"seed {seed} {name}: {results[name][-1]:.3f}  ({time.time() - began:.0f}s)", flush=True)
    print(f"\nHeld-out final-answer accuracy (greedy, {args.num_test} test questions), seeds {args.seeds}, "
          f"SFT {args.sft_steps} steps, preference {args.pref_steps} steps at lr {args.pref_lr}:")
    print("| method | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("|---|" + "---|" * (len(args.seeds) + 1))
    for name, values in results.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {statistics.mean(values):.3f} |")
    print(f"total {time.time() - began:.0f}s")


if __name__ == "__main__":
    main()
