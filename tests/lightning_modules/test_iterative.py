"""The iterative loop run by the objective: each boundary writes JSONL and re-anchors the reference, the epoch count
follows from the iterations, a resumed run reuses finished iterations (and, killed with SIGKILL while judging or
training, ends with the same weights as an uninterrupted run), and two DDP ranks generate disjoint shards and train on
the same gathered pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from iterative_helpers import HashJudge, PairsLog
from litforge.datamodules import (ArithmeticIterativeDataModule, ArithmeticPreferenceDataModule,
                                  JSONLIterativeDataModule)
from litforge.lightning_modules import IterativeRPO
from litforge.plugins.judges import AnswerJudge, LLMJudge
from litforge.plugins.pair_rules import BestVsWorst

from litforge.backbones import TinyModel
from litforge.errors import ConfigError
from litforge.iterations import iteration_paths
from litforge.plugins.reference import PrecomputedReference

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 64}


class StopAfterEpoch(L.Callback):
    """Ends `fit` after epoch `epoch` (an interruption between two checkpoints)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        trainer.should_stop = trainer.current_epoch >= self.epoch


def make(judge, data=None, epochs_per_iteration: int = 1, **model_kwargs):
    """A tiny IterativeRPO (2 iterations of 3 candidates) on 6 arithmetic prompts."""
    data = data or ArithmeticIterativeDataModule(num_train=6, num_val=4, batch_size=4)
    model_kwargs = {"num_heldout": 4, **model_kwargs}
    module = IterativeRPO(backbone=TinyModel(**TINY), tokenizer=data.tokenizer, judge=judge, pair_rule=BestVsWorst(),
                          iterations=2, epochs_per_iteration=epochs_per_iteration, candidates=3, max_new_tokens=6,
                          temperature=1.0, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2), **model_kwargs)
    return module, data


def fit(root: Path, module, data, ckpt_path: str | None = None, callbacks=(), **trainer_kwargs):
    """Fit on CPU with a CSV logger and a checkpoint at every epoch's end; returns the pairs log."""
    torch.manual_seed(0)
    log = PairsLog(str(root / "seen"))
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=root / "ckpt", save_last=True, every_n_epochs=1)
    trainer = L.Trainer(accelerator="cpu", default_root_dir=str(root), logger=L.pytorch.loggers.CSVLogger(root, "csv"),
                        callbacks=[log, checkpoint, *callbacks], enable_progress_bar=False,
                        enable_model_summary=False, **trainer_kwargs)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return log


def test_each_boundary_writes_jsonl_and_reanchors_the_reference(tmp_path):
    module, data = make(HashJudge())
    log = fit(tmp_path, module, data)
    assert module.trainer.max_epochs == 2 and module.trainer.reload_dataloaders_every_n_epochs == 1  # derived
    for k in range(2):
        pairs_path, stats_path = iteration_paths(tmp_path, k)
        rows = [json.loads(line) for line in pairs_path.read_text().splitlines()]
        assert rows and {"prompt", "chosen", "rejected", "chosen_score", "rejected_score", "reference"} <= set(rows[0])
        assert all(row["chosen_score"] > row["rejected_score"] for row in rows)
        stats = json.loads(stats_path.read_text())
        assert stats["pairs"] == len(rows) and stats["judge_failures"] == 0 and stats["candidates"] == 18
        assert log.seen[k]["pairs"] == rows  # the datamodule served what the module wrote
    # at the start of each iteration the reference equals the policy; iteration 1's pairs came from the trained policy
    assert [entry["reanchored"] for entry in log.seen] == [True, True]
    probe = torch.tensor([[1, 2, 3]])
    with torch.no_grad():  # training moved the policy away from the reference anchored at epoch 1
        assert not torch.equal(module.model(probe).logits, module.reference_model(probe).logits)
    final = json.loads((tmp_path / "iterations" / "final.json").read_text())
    assert set(final["iterations"]) == {"0", "1"} and 0.0 <= final["heldout_score"] <= 5.0
    metrics = (next((tmp_path / "csv").glob("version_*")) / "metrics.csv").read_text()
    assert "iteration/pairs" in metrics and "iteration/index" in metrics and "iteration/heldout_score" in metrics
    for recorded in (module.hparams, module.hparams_initial):  # plugins stay out of the checkpoint and the logs
        assert "judge" not in recorded and "pair_rule" not in recorded and recorded["beta"] == 0.1


def test_boundaries_log_accuracy_by_the_heldout_judge_and_the_judge_s_agreement(tmp_path):
    module, data = make(HashJudge(), heldout_judge=AnswerJudge(), num_judge_heldout=6)
    fit(tmp_path, module, data)
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
    module, data = make(HashJudge(), epochs_per_iteration=2)
    first = fit(tmp_path, module, data, callbacks=[StopAfterEpoch(0)])
    pairs_path = iteration_paths(tmp_path, 0)[0]
    written, mtime = pairs_path.read_text(), pairs_path.stat().st_mtime_ns
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert saved["iterative"] == {"iteration": 0, "resume_epoch": 1}
    judge = HashJudge()
    module, data = make(judge, epochs_per_iteration=2)
    log = fit(tmp_path, module, data, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert pairs_path.read_text() == written and pairs_path.stat().st_mtime_ns == mtime  # not regenerated
    assert log.seen[0]["epoch"] == 1 and log.seen[0]["pairs"] == first.seen[0]["pairs"]
    # mid-iteration the reference is the restored one (the policy at iteration 0's start), not a fresh re-anchor
    assert log.seen[0]["reanchored"] is False
    assert log.seen[1]["epoch"] == 2 and log.seen[1]["reanchored"] is True  # iteration 1 starts: re-anchored
    assert module.history[0]["reused"] is True and module.history[1]["reused"] is False
    assert judge.calls >= 1 and iteration_paths(tmp_path, 1)[0].is_file()  # only iteration 1 (and held-out) judged
    assert any(key.startswith("reference_model.") for key in saved["state_dict"])


class SeedRecordingJudge(LLMJudge):
    """An LLMJudge whose replies are made from each call's seed (recorded) instead of sampled from a model."""

    def __init__(self):
        super().__init__(samples=1)
        self.seeds: list[int] = []

    def judge_replies(self, judge_prompts):
        seed = self.seed + self.calls
        self.seeds.append(seed)
        return [[f"Score: {(sum(prompt.encode()) + seed) % 6}"] for prompt in judge_prompts]


def test_a_resumed_run_judges_with_the_seeds_of_an_uninterrupted_one(tmp_path):
    whole = SeedRecordingJudge()
    fit(tmp_path / "whole", *make(whole, epochs_per_iteration=2, num_heldout=0))
    first = SeedRecordingJudge()  # judges iteration 0, then the run stops inside it (after epoch 0)
    fit(tmp_path / "cut", *make(first, epochs_per_iteration=2, num_heldout=0), callbacks=[StopAfterEpoch(0)])
    saved = torch.load(tmp_path / "cut" / "ckpt" / "last.ckpt", weights_only=False)
    assert saved["judges"] == {"judge": {"failures": first.failures, "calls": 1, "replies": first.replies}}
    resumed = SeedRecordingJudge()  # a new process: its counters come from the checkpoint, not from 0
    fit(tmp_path / "cut", *make(resumed, epochs_per_iteration=2, num_heldout=0),
        ckpt_path=str(tmp_path / "cut" / "ckpt" / "last.ckpt"))
    assert first.seeds + resumed.seeds == whole.seeds == [1, 2]
    assert (resumed.calls, resumed.replies, resumed.failures) == (whole.calls, whole.replies, whole.failures)
    assert iteration_paths(tmp_path / "cut", 1)[0].read_text() == iteration_paths(tmp_path / "whole", 1)[0].read_text()


def test_a_precomputed_reference_reads_the_handed_pairs_without_generating(tmp_path):
    judge = HashJudge()
    module, data = make(judge, num_heldout=0, reference=PrecomputedReference(str(tmp_path / "ref")))
    fit(tmp_path, module, data)
    assert judge.calls == 2  # one round of judging per iteration, none triggered by the reference's lookups
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "ref").glob("train-*.pt")) == ["anchor1", "anchor2"]


def test_a_config_s_epoch_count_and_datamodule_must_suit_the_iterations(tmp_path):
    module, data = make(HashJudge())
    with pytest.raises(ConfigError, match="trainer.max_epochs: is 3, but the model runs .* = 2 epochs"):
        fit(tmp_path, module, data, max_epochs=3)
    with pytest.raises(ConfigError, match="reload_dataloaders_every_n_epochs"):
        fit(tmp_path, *make(HashJudge()), reload_dataloaders_every_n_epochs=2)
    with pytest.raises(ConfigError, match="data: IterativeRPO hands each iteration's rows"):
        fit(tmp_path, make(HashJudge())[0], ArithmeticPreferenceDataModule(num_train=8, num_val=0))


def test_judge_agreement_on_a_datamodule_without_graded_responses_is_refused_before_training(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "1+2="}\n')
    judge = HashJudge()
    module, data = make(judge, data=JSONLIterativeDataModule(prompts_path=str(path)), num_judge_heldout=10,
                        num_heldout=0)
    with pytest.raises(ConfigError, match="num_judge_heldout"):
        fit(tmp_path, module, data)
    assert judge.calls == 0


@pytest.mark.parametrize("devices", [1, 2])
def test_sharded_strategies_are_refused_when_several_ranks_would_generate(devices):
    from lightning.pytorch.strategies import ModelParallelStrategy

    module, _ = make(HashJudge())
    module.trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=ModelParallelStrategy(), logger=False)
    if devices == 1:
        module.refuse_sharded_generation()  # one process: nothing to keep in step
    else:
        with pytest.raises(ConfigError, match="configs/strategy/ddp.yaml"):
            module.refuse_sharded_generation()
    module.trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    module.refuse_sharded_generation()


def run_config(root: Path, callbacks: list[dict] = (), judge: dict | None = None, objective: str = "IterativeRPO",
               **trainer) -> dict:
    """A CLI config: a tiny iterative objective, 2 iterations, HashJudge, a checkpoint at every step, weights written
    at the end."""
    return {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "default_root_dir": str(root), "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(root / "checkpoints"), "save_last": True,
                                                 "every_n_train_steps": 1}},
                                  {"class_path": "helpers.WeightFingerprint",
                                   "init_args": {"folder": str(root / "weights")}}, *callbacks], **trainer},
        "model": {"class_path": objective, "init_args": {
            "backbone": {"class_path": "litforge.backbones.TinyModel", "init_args": TINY},
            "judge": judge or {"class_path": "iterative_helpers.HashJudge"},
            "pair_rule": {"class_path": "BestVsWorst"},
            "iterations": 2, "candidates": 3, "max_new_tokens": 6, "temperature": 1.0,
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}}}},
        "data": {"class_path": "ArithmeticIterativeDataModule",
                 "init_args": {"num_train": 7, "num_val": 4, "batch_size": 2}},
    }


@pytest.mark.slow
@pytest.mark.parametrize("during,objective", [("judging", "IterativeRPO"), ("training", "IterativeRPO"),
                                              ("training", "IterativeCringe")])  # Cringe samples in its loss
def test_a_run_killed_and_resumed_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, during, objective):
    from helpers import run_litforge, write_yaml

    whole = tmp_path / "whole"
    config = run_config(whole, objective=objective)
    run_litforge(["fit", "--config", str(write_yaml(tmp_path / "whole.yaml", config))], timeout=240)
    marker, killed = tmp_path / "killed", tmp_path / "killed_run"
    if during == "judging":  # the second round of judging: iteration 1's boundary, after epoch 0's last step
        config = run_config(killed, objective=objective, judge={
            "class_path": "iterative_helpers.HashJudge", "init_args": {"kill_on_call": 2, "marker": str(marker)}})
    else:  # the second step of iteration 1 (epoch 1)
        steps = math.ceil(len(iteration_paths(whole, 0)[0].read_text().splitlines()) / 2)  # epoch 0, batch 2
        config = run_config(killed, objective=objective, callbacks=[{
            "class_path": "iterative_helpers.KillAtStep", "init_args": {"step": steps + 1, "marker": str(marker)}}])
    path = write_yaml(tmp_path / "killed.yaml", config)
    first = run_litforge(["fit", "--config", str(path)], timeout=240, check=False)
    assert first.returncode == -9 and marker.is_file()
    assert iteration_paths(killed, 1)[0].is_file() == (during == "training")
    written = iteration_paths(killed, 0)[0].stat().st_mtime_ns
    run_litforge(["fit", "--config", str(path), "--ckpt_path", "last"], timeout=240)
    assert iteration_paths(killed, 0)[0].stat().st_mtime_ns == written  # resumed: iteration 0 is not generated again
    expected, got = (torch.load(root / "weights" / "rank0.pt") for root in (whole, killed))
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    for k in range(2):
        assert iteration_paths(killed, k)[0].read_text() == iteration_paths(whole, k)[0].read_text()


@pytest.mark.slow
def test_two_ddp_ranks_generate_disjoint_shards_and_train_on_the_same_pairs(tmp_path):
    from helpers import run_litforge, write_yaml

    config = run_config(tmp_path, callbacks=[{"class_path": "iterative_helpers.PairsLog",
                                              "init_args": {"folder": str(tmp_path / "seen")}}],
                        devices=2, strategy="ddp", enable_checkpointing=False)
    config["trainer"]["callbacks"] = config["trainer"]["callbacks"][2:]
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
