"""Switching strategy changes nothing but speed: DDP, FSDP2 and two nodes give the single-process result (issue 20).

Each objective trains a tiny model for a few optimizer steps with gradient accumulation and clipping on, then
validates on a set whose size is odd (so a distributed sampler pads it with a repeat): once in 1 process with batch
2B, and in 2 gloo processes with batch B each under `configs/strategy/ddp.yaml`, `configs/strategy/fsdp.yaml` and
`configs/strategy/multinode.yaml` (two "nodes" of one process). The final weights and every logged validation metric
must agree to float tolerance (the reductions add in another order).

To stay within a few process launches, this file is also the driver: `python tests/test_equivalence.py LAYOUT ROOT`
runs every case through `litforge.cli.run_lightning` (the CLI's own config path) in one process, one fit after
another. The test starts one process for the single-process layout and two for the parallel one; the two parallel
processes are made by the test (LOCAL_RANK and NODE_RANK in their environment, set per overlay), so one process
group serves the DDP, FSDP2 and two-node fits in turn.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
B = 2  # pairs or samples per rank and step; the single process takes 2B
STRATEGIES = ("ddp", "fsdp", "multinode")
TINY = {"class_path": "litforge.backbones.TinyModel",
        "init_args": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                      "max_position_embeddings": 64}}
SGD = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.2, "momentum": 0.9}}


def preference_data(batch: int) -> dict:
    """24 training pairs (3 steps x 2 micro-batches x 4 pairs), 7 validation pairs (odd: one padding repeat)."""
    return {"class_path": "ArithmeticPreferenceDataModule",
            "init_args": {"num_train": 24, "num_val": 7, "max_length": 48, "batch_size": batch, "val_batch_size": 2}}


def cases(root: Path, batch: int) -> dict[str, dict]:
    """Every case's `model` and `data` sections, and its step count; `batch` is the per-process batch size."""
    return {
        "causal_lm": {"steps": 3, "model": {"class_path": "CausalLM",
                                            "init_args": {"backbone": TINY, "optimizer": SGD}},
                      "data": {"class_path": "ArithmeticSFTDataModule",  # prompts masked: token counts differ per rank
                               "init_args": {"num_train": 24, "num_val": 7, "max_length": 48, "batch_size": batch,
                                             "val_batch_size": 2}}},
        "dpo_frozen": {"steps": 3, "model": {"class_path": "DPONLL", "init_args": {
            "backbone": TINY, "optimizer": SGD, "reference": {"class_path": "FrozenCopy"}}},
            "data": preference_data(batch)},
        "dpo_precomputed": {"steps": 3, "model": {"class_path": "DPONLL", "init_args": {
            "backbone": TINY, "optimizer": SGD,
            "reference": {"class_path": "PrecomputedReference", "init_args": {"cache_dir": str(root / "cache")}}}},
            "data": preference_data(batch)},
        "cringe": {"steps": 3, "model": {"class_path": "PairwiseCringe", "init_args": {
            "backbone": TINY, "optimizer": SGD, "k": 3}}, "data": preference_data(batch)},
        "reverse_lm": {"steps": 3, "model": {"class_path": "ReverseLM", "init_args": {
            "backbone": TINY, "optimizer": SGD, "reverse_probability": 0.5,
            "transform": {"class_path": "RandomSegmentReversal", "init_args": {"k": 2}}}},
            "data": {"class_path": "SymbolicReversalDataModule",
                     "init_args": {"num_pairs": 12, "num_symbols": 20, "max_length": 32, "batch_size": batch,
                                   "val_batch_size": 2}}},
        "iterative_rpo": {"steps": 1, "model": {"class_path": "IterativeRPO", "init_args": {
            "backbone": TINY, "optimizer": SGD, "iterations": 1, "candidates": 4, "temperature": 1.0,
            "max_new_tokens": 4, "generation_batch_size": 8, "num_heldout": 3, "run_dir": str(root / "iterative"),
            "judge": {"class_path": "iterative_helpers.HashJudge"}}},
            "data": {"class_path": "ArithmeticIterativeDataModule",
                     "init_args": {"num_train": 16, "num_val": 7, "batch_size": batch, "val_batch_size": 2}}},
    }


def config(root: Path, case: str, batch: int) -> dict:
    """A complete fit config of one case."""
    spec = cases(root, batch)[case]
    callbacks = [{"class_path": "test_equivalence.StartWeights"}]
    if case == RESUMED:  # its 2-process checkpoint is resumed in 1 process (`resume_on_one_process`)
        callbacks.append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                          "init_args": {"dirpath": str(root / "checkpoints"), "filename": "last"}})
    trainer = {"accelerator": "cpu", "devices": 1, "max_steps": spec["steps"], "val_check_interval": spec["steps"],
               "num_sanity_val_steps": 0, "accumulate_grad_batches": 2, "gradient_clip_val": 0.5, "logger": False,
               "enable_checkpointing": case == RESUMED, "enable_progress_bar": False, "enable_model_summary": False,
               "default_root_dir": str(root), "callbacks": callbacks}
    return {"seed_everything": 0, "trainer": trainer, "model": spec["model"], "data": spec["data"]}


def full_weights(module) -> dict[str, torch.Tensor]:
    """The policy's weights, gathered from FSDP2 shards (a collective: every rank calls it)."""
    state = {}
    for name, value in module.model.state_dict().items():
        if hasattr(value, "full_tensor"):
            value = value.full_tensor()
        state[name] = value.detach().cpu().clone()
    return state


class StartWeights(L.Callback):
    """Keeps the policy's weights as training starts (`pl_module.start_weights`), to show that the run moved them."""

    def on_train_start(self, trainer, pl_module):
        pl_module.start_weights = full_weights(pl_module)


def resume_on_one_process(root: Path) -> None:
    """Resume the 2-process DDP checkpoint of `RESUMED` in 1 process for one more step, and run the same 4 steps
    straight in 1 process: the reference table the checkpoint carries and the training order must carry over."""
    from litforge.cli import run_lightning

    done = root / "parallel" / f"{RESUMED}-ddp" / "rank0.pt"  # written after that fit (and its checkpoint) ended
    for _ in range(600):
        if done.is_file():
            break
        time.sleep(1)
    results = {}
    for name, resume in (("straight", False), ("resumed", True)):
        folder = root / "single" / f"{RESUMED}-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        run = config(folder, RESUMED, 2 * B)
        run["trainer"]["max_steps"] = 4
        path = folder / "run.json"
        path.write_text(json.dumps(run))
        args = ["fit", "--config", str(path)]
        if resume:
            args += ["--ckpt_path", str(root / "parallel" / f"{RESUMED}-ddp" / "checkpoints" / "last.ckpt")]
        cli = run_lightning(args)
        results[name] = full_weights(cli.model)
        results[f"{name}_computed"] = sorted(path.name for path in (folder / "cache").glob("*.pt"))
    torch.save(results, root / "single" / "resumed.pt")


def drive(layout: str, root: Path, only: list[str]) -> None:
    """Run every case of a layout ("single": this process, batch 2B; "parallel": rank `EQUIVALENCE_RANK` of 2)."""
    from litforge.cli import run_lightning

    rank = int(os.environ.get("EQUIVALENCE_RANK", "0"))
    runs = [(case, None) for case in only] if layout == "single" else \
        [(case, overlay) for case in only for overlay in STRATEGIES
         if not (case.startswith("iterative") and overlay == "fsdp")]  # generation refuses a sharded model
    for case, overlay in runs:
        name = f"{case}-{overlay or 'single'}"
        folder = root / layout / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "run.json"
        path.write_text(json.dumps(config(folder, case, 2 * B if overlay is None else B)))
        args = ["fit", "--config", str(path)]
        if overlay is not None:
            os.environ.update({"LOCAL_RANK": str(0 if overlay == "multinode" else rank),
                               "NODE_RANK": str(rank if overlay == "multinode" else 0)})
            args += ["--config", f"configs/strategy/{overlay}.yaml", "--trainer.accelerator=cpu"]
        cli = run_lightning(args)
        weights = full_weights(cli.model)
        moved = max((weights[key] - cli.model.start_weights[key]).abs().max().item() for key in weights)
        result = {"weights": weights, "moved": moved, "world": cli.trainer.world_size,
                  "metrics": {key: float(value) for key, value in cli.trainer.callback_metrics.items()
                              if key.startswith("val")}}
        reference = getattr(cli.model, "reference", None)
        if getattr(reference, "table", None) is not None:
            result["reference_table"] = reference.table
        if hasattr(cli.model, "history"):  # an iterative objective: its iteration's statistics are metrics too
            stats = cli.model.history[0]
            result["metrics"].update({f"iteration/{key}": float(stats[key])
                                      for key in ("pairs", "prompts_with_pairs", "mean_score", "heldout_score")})
        torch.save(result, folder / f"rank{rank}.pt")
    if layout == "single" and RESUMED in only:
        resume_on_one_process(root)


def launch(layout: str, root: Path, ranks: int, port: int, only: list[str]) -> list[subprocess.Popen]:
    """Start the driver processes of a layout."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(ranks)}
    return [subprocess.Popen([sys.executable, __file__, layout, str(root), *only], cwd=REPO,
                             env={**env, "EQUIVALENCE_RANK": str(rank)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for rank in range(ranks)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


RESUMED = "dpo_precomputed"
ALL_CASES = ("causal_lm", "dpo_frozen", "dpo_precomputed", "cringe", "reverse_lm", "iterative_rpo")


def run_both_layouts(root: Path) -> None:
    """Both layouts, each once, at the same time (3 processes); a failure shows the failing process's stderr."""
    processes = launch("single", root, 1, free_port(), list(ALL_CASES)) + \
        launch("parallel", root, 2, free_port(), list(ALL_CASES))
    try:
        outputs = [process.communicate(timeout=600) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-5000:]


def load(root: Path, layout: str, name: str, rank: int) -> dict:
    return torch.load(root / layout / name / f"rank{rank}.pt", weights_only=False)


def assert_close_weights(expected: dict, actual: dict, what: str) -> None:
    for name, value in expected.items():
        assert torch.allclose(actual[name], value, rtol=1e-4, atol=1e-5), \
            f"{what}: {name} differs by {(actual[name] - value).abs().max():.2e}"


def check_case(root: Path, case: str) -> None:
    """Every strategy's two ranks end with the single process's weights, metrics and reference table."""
    single = load(root, "single", f"{case}-single", 0)
    assert single["world"] == 1 and single["metrics"], (case, single["metrics"])
    assert single["moved"] > 1e-3, case  # it trained: far beyond the tolerance of the comparison
    for overlay in STRATEGIES:
        if case.startswith("iterative") and overlay == "fsdp":
            continue
        rank0, rank1 = (load(root, "parallel", f"{case}-{overlay}", rank) for rank in (0, 1))
        assert rank0["world"] == rank1["world"] == 2
        assert_close_weights(rank0["weights"], rank1["weights"], f"{case} {overlay}: rank 1 vs rank 0")
        assert_close_weights(single["weights"], rank0["weights"], f"{case} {overlay} vs 1 process")
        assert rank0["metrics"].keys() == single["metrics"].keys() == rank1["metrics"].keys(), (case, overlay)
        for key, value in single["metrics"].items():
            for got in (rank0["metrics"][key], rank1["metrics"][key]):
                assert math.isclose(got, value, rel_tol=1e-4, abs_tol=1e-5), f"{case} {overlay} {key}: {got} {value}"
        if "reference_table" in single:  # the precomputed reference: the whole table on every rank, same cache files
            files = sorted((root / "single" / f"{case}-single" / "cache").glob("*.pt"))
            written = sorted((root / "parallel" / f"{case}-{overlay}" / "cache").glob("*.pt"))
            assert [path.name for path in written] == [path.name for path in files] and files
            for ours, theirs in zip(files, written):
                assert torch.allclose(torch.load(ours), torch.load(theirs), atol=1e-5)
            for table in (rank0["reference_table"], rank1["reference_table"]):
                assert table.keys() == single["reference_table"].keys()
                for key in table:
                    assert torch.allclose(table[key], single["reference_table"][key], atol=1e-5)


@pytest.mark.slow
def test_every_strategy_gives_the_single_process_weights_and_metrics(tmp_path):
    # one test for all cases: its 3 processes run once, on one pytest-xdist worker
    run_both_layouts(tmp_path)
    for case in ALL_CASES:
        check_case(tmp_path, case)
    # a 2-process DDP checkpoint resumed on 1 process: the precomputed reference comes from the checkpoint (the
    # resumed run computes no table of its own) and training goes on where the 2 ranks stopped, so one more step
    # gives the 4-step single-process weights
    results = torch.load(tmp_path / "single" / "resumed.pt", weights_only=False)
    assert results["straight_computed"] and results["resumed_computed"] == []
    assert_close_weights(results["straight"], results["resumed"], "resumed on 1 process vs straight")


if __name__ == "__main__":
    layout, root, only = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    sys.argv = sys.argv[:1]  # the CLI reads its arguments from `run_lightning(args)`, not from this command line
    drive(layout, root, only)
