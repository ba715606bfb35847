"""The iterative loop: pair rules on fixed scores, the boundary (JSONL + re-anchored reference), resume without
regeneration, and two DDP ranks generating disjoint shards and training on the same gathered pairs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import lightning as L
import pytest
import torch
from litforge.datamodules import ArithmeticIterativeDataModule
from litforge.lightning_modules import IterativeRPO
from litforge.plugins.judges import AnswerJudge, Judge

from litforge.backbones import TinyModel
from litforge.iterative import BestVsWorst, CorrectVsIncorrect, build_pairs, iteration_paths


class HashJudge(Judge):
    """A deterministic stand-in for a judge that needs no trained model: a response's score is its byte sum mod 5."""

    def __init__(self):
        self.calls = 0

    def score(self, prompts, responses, references=None):
        self.calls += 1
        return [float(sum(r.encode()) % 5) for r in responses]


class PairsLog(L.Callback):
    """At each epoch start, records (rank, epoch, training pairs, reference == policy?) to `<folder>/rank<r>.json`."""

    def __init__(self, folder: str):
        self.folder, self.seen = folder, []

    def on_train_epoch_start(self, trainer, module):
        probe = torch.tensor([[1, 2, 3, 4, 5]], device=module.device)
        with torch.no_grad():
            same = torch.equal(module.model(probe).logits, module.reference_model(probe).logits)
        self.seen.append({"epoch": trainer.current_epoch, "pairs": trainer.datamodule.current, "reanchored": same})
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        (Path(self.folder) / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


def test_best_vs_worst_drops_ties_and_unjudged():
    texts = [["a", "b", "c"], ["d", "e"], ["f", "g", "h"], ["i"]]
    scores = [[2.0, 5.0, 1.0], [3.0, 3.0], [None, 4.0, 1.0], [5.0]]
    pairs = build_pairs(["p0", "p1", "p2", "p3"], [None] * 4, texts, scores, BestVsWorst(), seed=0)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [("p0", "b", "c"), ("p2", "g", "h")]
    assert pairs[0]["chosen_score"] == 5.0 and pairs[0]["rejected_score"] == 1.0 and "reference" not in pairs[0]


def test_correct_vs_incorrect_pairs_every_combination_up_to_k():
    scores = [1.0, 0.0, 1.0, 0.0, 0.0]
    combos = CorrectVsIncorrect(max_pairs=10).pairs(list("abcde"), scores, random.Random(0))
    assert sorted(combos) == [(0, 1), (0, 3), (0, 4), (2, 1), (2, 3), (2, 4)]
    capped = CorrectVsIncorrect(max_pairs=4).pairs(list("abcde"), scores, random.Random(0))
    assert len(capped) == 4 and set(capped) <= set(combos)
    assert CorrectVsIncorrect().pairs(["a", "b"], [0.0, 0.0], random.Random(0)) == []  # nothing correct
    rows = build_pairs(["q"], ["7"], [["=7", "=8"]], [[1.0, 0.0]], CorrectVsIncorrect(), seed=0)
    assert rows == [{"prompt": "q", "chosen": "=7", "rejected": "=8", "chosen_score": 1.0, "rejected_score": 0.0,
                     "reference": "7"}]


def _run(root: Path, max_epochs: int, judge: HashJudge, ckpt_path: str | None = None, epochs_per_iteration: int = 1,
         **data_kwargs):
    torch.manual_seed(0)
    data = ArithmeticIterativeDataModule(judge=judge, pair_rule=BestVsWorst(), iterations=2,
                                         epochs_per_iteration=epochs_per_iteration, candidates=3, max_new_tokens=6,
                                         temperature=1.0, num_train=6, num_val=4, num_heldout=4, batch_size=4,
                                         **data_kwargs)
    module = IterativeRPO(backbone=TinyModel(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=64, max_position_embeddings=64),
                          tokenizer=data.tokenizer, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2))
    log = PairsLog(str(root / "seen"))
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=root / "ckpt", save_last=True, every_n_epochs=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=max_epochs, reload_dataloaders_every_n_epochs=1,
                        default_root_dir=str(root), logger=L.pytorch.loggers.CSVLogger(root, name="csv"),
                        callbacks=[log, checkpoint], enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, data, log


def test_each_boundary_writes_jsonl_and_reanchors_the_reference(tmp_path):
    module, _, log = _run(tmp_path, max_epochs=2, judge=HashJudge())
    for k in range(2):
        pairs_path, stats_path = iteration_paths(tmp_path, k)
        rows = [json.loads(line) for line in pairs_path.read_text().splitlines()]
        assert rows and {"prompt", "chosen", "rejected", "chosen_score", "rejected_score", "reference"} <= set(rows[0])
        assert all(row["chosen_score"] > row["rejected_score"] for row in rows)
        stats = json.loads(stats_path.read_text())
        assert stats["pairs"] == len(rows) and stats["judge_failures"] == 0 and stats["candidates"] == 18
    # at the start of each iteration the reference equals the policy; iteration 1's pairs came from the trained policy
    assert [entry["reanchored"] for entry in log.seen] == [True, True]
    probe = torch.tensor([[1, 2, 3]])
    with torch.no_grad():  # training moved the policy away from the reference anchored at epoch 1
        assert not torch.equal(module.model(probe).logits, module.reference_model(probe).logits)
    final = json.loads((tmp_path / "iterations" / "final.json").read_text())
    assert set(final["iterations"]) == {"0", "1"} and 0.0 <= final["heldout_score"] <= 5.0
    metrics = (next((tmp_path / "csv").glob("version_*")) / "metrics.csv").read_text()
    assert "iteration/pairs" in metrics and "iteration/index" in metrics and "iteration/heldout_score" in metrics


def test_boundaries_log_accuracy_by_the_heldout_judge_and_the_judge_s_agreement(tmp_path):
    _run(tmp_path, max_epochs=2, judge=HashJudge(), heldout_judge=AnswerJudge(), num_judge_heldout=6)
    final = json.loads((tmp_path / "iterations" / "final.json").read_text())
    for stats in (final["iterations"]["0"], final["iterations"]["1"], final):  # M0, M1, M2
        assert stats["heldout_score"] in (0.0, 0.25, 0.5, 0.75, 1.0)  # accuracy on 4 prompts, not hash scores
        assert 0.0 <= stats["judge_agreement"] <= 1.0 and stats["judge_heldout_failures"] == 0
        assert sum(stats["judge_histogram"].values()) == 6
    # HashJudge's scores depend on the fixed graded responses only: the same at every boundary
    assert final["iterations"]["0"]["judge_agreement"] == final["judge_agreement"]
    metrics = (next((tmp_path / "csv").glob("version_*")) / "metrics.csv").read_text()
    assert "iteration/judge_agreement" in metrics and "iteration/judge_mae" in metrics


def test_resume_mid_iteration_reuses_finished_data(tmp_path):
    # iteration 0 spans epochs 0-1; stop after epoch 0 (mid-iteration), then resume from the checkpoint
    _, _, first = _run(tmp_path, max_epochs=1, judge=HashJudge(), epochs_per_iteration=2)
    pairs_path = iteration_paths(tmp_path, 0)[0]
    written, mtime = pairs_path.read_text(), pairs_path.stat().st_mtime_ns
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
    judge = HashJudge()
    _, data, log = _run(tmp_path, max_epochs=4, judge=judge, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
                             epochs_per_iteration=2)
    assert pairs_path.read_text() == written and pairs_path.stat().st_mtime_ns == mtime  # not regenerated
    assert log.seen[0]["epoch"] == 1 and log.seen[0]["pairs"] == first.seen[0]["pairs"]
    # mid-iteration the reference is the restored one (the policy at iteration 0's start), not a fresh re-anchor
    assert log.seen[0]["reanchored"] is False
    assert log.seen[1]["epoch"] == 2 and log.seen[1]["reanchored"] is True  # iteration 1 starts: re-anchored
    assert data.history[0]["reused"] is True and data.history[1]["reused"] is False
    assert judge.calls >= 1 and iteration_paths(tmp_path, 1)[0].is_file()  # only iteration 1 (and held-out) judged
    assert any(key.startswith("reference_model.") for key in saved)


@pytest.mark.slow
def test_two_ddp_ranks_generate_disjoint_shards_and_train_on_the_same_pairs(tmp_path):
    from helpers import run_litforge, write_yaml

    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "max_epochs": 2,
                    "reload_dataloaders_every_n_epochs": 1, "default_root_dir": str(tmp_path),
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}},
                    "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "callbacks": [{"class_path": "test_iterative.PairsLog",
                                   "init_args": {"folder": str(tmp_path / "seen")}}]},
        "model": {"class_path": "IterativeRPO", "init_args": {
            "backbone": {"class_path": "litforge.backbones.TinyModel",
                         "init_args": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                       "intermediate_size": 64, "max_position_embeddings": 64}}}},
        "data": {"class_path": "ArithmeticIterativeDataModule", "init_args": {
            "judge": {"class_path": "test_iterative.HashJudge"},
            "pair_rule": {"class_path": "litforge.iterative.BestVsWorst"},
            "iterations": 2, "candidates": 3, "max_new_tokens": 6, "temperature": 1.0, "num_train": 7,
            "num_val": 4, "batch_size": 2}},
    }
    run_litforge(["fit", "--config", str(write_yaml(tmp_path / "run.yaml", config))], timeout=240)
    for k in range(2):
        stats = json.loads(iteration_paths(tmp_path, k)[1].read_text())
        shards = stats["generated_by_rank"]
        assert len(shards) == 2 and not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == list(range(7))
    seen = [json.loads((tmp_path / "seen" / f"rank{r}.json").read_text()) for r in range(2)]
    assert [e["pairs"] for e in seen[0]] == [e["pairs"] for e in seen[1]]  # both ranks train on the gathered pairs
    assert seen[0][0]["pairs"] != seen[0][1]["pairs"]
    written = [json.loads(line) for line in iteration_paths(tmp_path, 1)[0].read_text().splitlines()]
    assert written == seen[0][1]["pairs"]


@pytest.mark.parametrize("devices", [1, 2])
def test_sharded_strategies_are_refused_before_training_when_several_ranks_would_generate(devices):
    from lightning.pytorch.strategies import ModelParallelStrategy
    from litforge.datamodules.iterative import refuse_sharded_generation

    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=ModelParallelStrategy(), logger=False)
    if devices == 1:
        refuse_sharded_generation(trainer)  # one process: nothing to keep in step
    else:
        with pytest.raises(ValueError, match="configs/strategy/ddp.yaml"):
            refuse_sharded_generation(trainer)
    refuse_sharded_generation(L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False))
