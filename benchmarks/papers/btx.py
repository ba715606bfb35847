"""Miniature of Branch-Train-MiX (Sukhbaatar et al. 2024): seed -> 3 domain experts -> BTX (MoE finetune) against
Branch-Train-Merge (average), sparse upcycling and the dense seed trained on the mix, at one total token budget.

    python benchmarks/papers/btx.py [--expert-steps 250] [--finetune-steps 300] [--expert-lr LR] [--workdir DIR]

Every run is an ordinary `litforge fit` of a configs/btx/*.yaml file (with step counts overridden), the merges are
`litforge merge`. Token budget after the seed: BTX = 3 experts x E steps + F MoE steps; the dense baseline and
sparse upcycling get 3E + F steps on the mix (sparse upcycling therefore spends more FLOPs: top-2 of 3 experts).
Prints per-domain and average validation loss, and BTX's per-expert routing fractions per domain.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import torch
from litforge.datamodules.domains import DOMAINS, MixedDomainDataModule
from litforge.plugins.moe import BranchTrainMerge, BTXMerge, SparseUpcycle
from litforge.plugins.moe.router import routing_fractions

from litforge.checkpoint import export
from litforge.cli import run_lightning
from litforge.losses import token_cross_entropy
from litforge.plugins.moe.merge import load_branch, merge

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "btx"


def fit(config: str, steps: int, *extra: str):
    """Run `litforge fit --config configs/btx/<config>.yaml` for `steps` steps; return the trained HF model."""
    args = ["fit", "--config", str(CONFIGS / f"{config}.yaml"), f"--trainer.max_steps={steps}",
            f"--trainer.val_check_interval={steps}", f"--model.init_args.scheduler.init_args.total_steps={steps}",
            "--trainer.enable_model_summary=false", *extra]
    return run_lightning(args).model.model.eval()


@torch.no_grad()
def evaluate(model, data: MixedDomainDataModule) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Token-weighted validation loss per domain, and (for MoE models) routing fractions (layers, N) per domain."""
    losses, routes = {}, {}
    for name, samples in data.splits["val"].items():
        total, tokens, counts, routed = 0.0, 0, 0, 0
        for start in range(0, len(samples), 16):
            batch = data.collate(samples[start:start + 16])
            moe = hasattr(model.config, "num_local_experts")
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                        **({"output_router_logits": True} if moe else {}))
            loss, count = token_cross_entropy(out.logits, batch["labels"])
            total, tokens = total + loss.item() * count.item(), tokens + count.item()
            if moe:
                k = model.config.num_experts_per_tok
                slots, n = routing_fractions(out.router_logits, k, batch["attention_mask"].reshape(-1))
                counts, routed = counts + slots, routed + n * k
        losses[name] = total / tokens
        if routed:
            routes[name] = counts / routed
    return losses, routes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed-steps", type=int, default=200)
    parser.add_argument("--expert-steps", type=int, default=250)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--workdir", default="/tmp/litforge_btx")
    parser.add_argument("--expert-lr", type=float, default=None, help="override the expert configs' learning rate")
    options = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(options.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.chdir(work)  # the configs' relative paths (runs/btx/...) land here
    budget = 3 * options.expert_steps + options.finetune_steps
    start, results, routes = time.time(), {}, {}
    data = MixedDomainDataModule(num_val=60, max_length=128)
    data.setup("validate")

    seed = fit("seed", options.seed_steps)
    export("runs/btx/seed/checkpoints/last.ckpt", "runs/btx/seed/hf")
    results["seed (no further training)"], _ = evaluate(seed, data)
    experts = []
    for domain in DOMAINS:
        lr = [] if options.expert_lr is None else [f"--model.init_args.optimizer.init_args.lr={options.expert_lr}"]
        model = fit(f"expert_{domain}", options.expert_steps, *lr)
        results[f"expert: {domain}"], _ = evaluate(model, data)
        experts.append(f"runs/btx/expert_{domain}/checkpoints/last.ckpt")

    merge(BranchTrainMerge(), experts, "runs/btx/btm")
    results["Branch-Train-Merge (average)"], _ = evaluate(load_branch("runs/btx/btm")[0], data)
    merge(BTXMerge(num_experts_per_tok=2), experts, "runs/btx/merged")
    results["BTX merge, before finetuning"], _ = evaluate(load_branch("runs/btx/merged")[0], data)
    btx = fit("finetune", options.finetune_steps)
    results["BTX (MoE finetuned)"], routes = evaluate(btx, data)

    dense = fit("dense_mix", budget)
    results[f"dense seed on the mix ({budget} steps)"], _ = evaluate(dense, data)
    merge(SparseUpcycle(num_experts=3, num_experts_per_tok=2, noise=0.01), [], "runs/btx/upcycled",
          seed="runs/btx/seed/hf")
    upcycled = fit("finetune", budget, "--model.init_args.backbone.init_args.path=runs/btx/upcycled")
    results[f"sparse upcycling ({budget} MoE steps)"], _ = evaluate(upcycled, data)

    names = list(DOMAINS)
    print(f"\nBTX miniature: seed {options.seed_steps} steps; experts {options.expert_steps} steps each; "
          f"MoE finetune {options.finetune_steps} steps; batch 16 x 128 tokens; {time.time() - start:.0f} s\n")
    print("| model | " + " | ".join(names) + " | average |")
    print("|---|" + "---|" * (len(names) + 1))
    for label, losses in results.items():
        values = [losses[name] for name in names]
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {sum(values) / len(values):.3f} |")
    print("\nBTX routing fractions per domain (share of top-2 slots per expert, mean over layers; experts: "
          + ", ".join(names) + ")\n")
    print("| domain | " + " | ".join(f"e{i} ({n})" for i, n in enumerate(names)) + " |")
    print("|---|" + "---|" * len(names))
    for name, fractions in routes.items():
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in fractions.mean(0).tolist()) + " |")


if __name__ == "__main__":
    main()
