"""Preference data that the policy generates itself, one iteration at a time, inside one `fit`.

Iteration k covers epochs [k * E, (k + 1) * E) with E = `epochs_per_iteration`; the trainer asks for the training
dataloader every epoch (`reload_dataloaders_every_n_epochs: 1`). When it asks at the first epoch of iteration k,
`train_dataloader` runs the boundary (`litforge/iterative.py`): the current policy
samples `candidates` responses per prompt, the judge scores them, the pair rule builds pairs, the pairs are written
to `<run_dir>/iterations/iter_<k>.jsonl`, and the reference model is re-anchored to the policy. A resumed run finds
finished iterations' files and reads them instead of generating; mid-iteration it keeps the reference it restored
from the checkpoint. Under DDP every rank generates and judges its own shard of the prompts and all ranks train on
the same gathered pairs.

Departures from the papers (Yuan et al. 2024; Pang et al. 2024):
    1. The prompts of an iteration are either all prompts every iteration (iterative RPO) or a fresh slice of
       `prompts_per_iteration` per iteration (self-rewarding's "new prompts"); the papers draw new prompts from a
       larger pool, which a fixed synthetic set imitates by slicing.
    2. Identical candidates of one prompt are judged once, and empty ones are dropped before judging.
    3. Held-out quality is the mean score (by `heldout_judge`, default the training judge) of one greedy response
       per held-out prompt, logged at each boundary (the model entering iteration k) and by the module at the end of
       training (the last model). With `num_judge_heldout`, the training judge also scores fixed responses whose true
       grades are known (`graded()`), and its agreement with them is logged at the same points (self-rewarding's
       "is the judge getting better?").
"""

from __future__ import annotations

import time
from typing import Any

from jsonargparse import lazy_instance
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from litforge.datamodules.arithmetic import arithmetic_questions, graded_responses
from litforge.datamodules.preference import PreferenceDataModule
from litforge.plugins.judges import AnswerJudge, Judge

from litforge.data import read_jsonl
from litforge.iterative import (
    BestVsWorst,
    PairRule,
    build_iteration,
    evaluate,
    iteration_paths,
    judge_agreement,
    load_iteration,
    save_iteration,
    write_json,
)


class IterativeDataModule(PreferenceDataModule):
    """Base of the self-generated preference data: subclasses give prompts (and references) with `prompts(split)`.

    Args:
        judge: scores candidates (`LLMJudge` with no checkpoint = the policy judges itself).
        pair_rule: turns one prompt's scores into pairs (`BestVsWorst`, `CorrectVsIncorrect`).
        iterations: how many rounds of generate -> judge -> train (trainer.max_epochs = iterations x epochs).
        epochs_per_iteration: training epochs over each iteration's pairs.
        candidates: responses sampled per prompt (N).
        temperature: sampling temperature of the candidates.
        top_p: nucleus mass of the candidates.
        max_new_tokens: longest candidate.
        stop: strings that end a candidate.
        generation_batch_size: sequences per generation batch.
        prompts_per_iteration: None = every prompt each iteration; else a fresh slice of this many per iteration.
        num_heldout: held-out prompts evaluated at each boundary (0 = no held-out evaluation).
        heldout_judge: scores the held-out responses (None = `judge`); e.g. `AnswerJudge` for exact-answer accuracy
            while the policy judges itself for training.
        num_judge_heldout: fixed graded responses (`graded()`) the training judge scores at each boundary, logged as
            its agreement with the true grades (0 = none).
        run_dir: where `iterations/` is written (None = the trainer's default_root_dir, stable across resumes).
        **kwargs: see `PreferenceDataModule`.
    """

    def __init__(self, judge: Judge = lazy_instance(AnswerJudge), pair_rule: PairRule = lazy_instance(BestVsWorst),
                 iterations: int = 3, epochs_per_iteration: int = 1, candidates: int = 4, temperature: float = 0.8,
                 top_p: float = 1.0, max_new_tokens: int = 64, stop: list[str] | None = None,
                 generation_batch_size: int = 64, prompts_per_iteration: int | None = None, num_heldout: int = 0,
                 heldout_judge: Judge | None = None, num_judge_heldout: int = 0, run_dir: str | None = None,
                 **kwargs):
        kwargs.setdefault("truncate", True)
        super().__init__(**kwargs)
        self.judge, self.pair_rule = judge, pair_rule
        self.iterations, self.epochs_per_iteration, self.candidates = iterations, epochs_per_iteration, candidates
        self.generation = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, stop=stop,
                               batch_size=generation_batch_size)
        self.prompts_per_iteration, self.num_heldout, self.run_dir = prompts_per_iteration, num_heldout, run_dir
        self.heldout_judge, self.num_judge_heldout = heldout_judge, num_judge_heldout
        self.current: list[dict[str, Any]] = []
        self.history: dict[int, dict[str, Any]] = {}
        self.boundary_done_at: float | None = None
        self.loaded_iteration: int | None = None

    def prompts(self, split: str) -> list[dict[str, Any]]:
        """`{"prompt": str, "reference": str | None}` of a split ("train" = the generation pool, "val" = held out)."""
        raise NotImplementedError

    def graded(self, count: int) -> list[dict[str, Any]]:
        """`count` fixed held-out `{"prompt", "response", "grade", "reference"}` rows with true grades, for
        `num_judge_heldout` (subclasses whose task can grade a response provide them)."""
        raise NotImplementedError(f"{type(self).__name__} has no graded responses: set num_judge_heldout: 0")

    # -- PreferenceDataModule -----------------------------------------------------------------------------------
    def pairs(self, split):
        return self.current if split == "train" else None

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer is not None:
            refuse_sharded_generation(self.trainer)
        if self.num_judge_heldout and type(self).graded is IterativeDataModule.graded:
            raise ValueError(f"num_judge_heldout: {type(self).__name__} has no graded responses to measure the "
                             "judge's agreement on; set num_judge_heldout: 0")
        # the training pairs need the model, which is built after setup: they come from train_dataloader
        self.pool = self.prompts("train")
        if not self.pool:
            raise ValueError(f"{type(self).__name__} has no training prompts")
        if stage != "fit":
            super().setup(stage)

    def train_dataloader(self):
        trainer = self.trainer
        if trainer.reload_dataloaders_every_n_epochs != 1:
            raise ValueError("set trainer.reload_dataloaders_every_n_epochs=1: the datamodule is asked for its "
                             "training data every epoch and rebuilds the pairs only at iteration boundaries")
        # `processed` is the epoch about to run, also on resume (a checkpoint saved at an epoch's end has `completed`
        # one behind until the loop restarts)
        epoch = trainer.fit_loop.epoch_progress.current.processed
        k = epoch // self.epochs_per_iteration
        if k >= self.iterations:
            raise ValueError(f"epoch {epoch} is past the last iteration: set trainer.max_epochs="
                             f"{self.iterations * self.epochs_per_iteration} (iterations x epochs_per_iteration)")
        if k != self.loaded_iteration:
            self.begin_iteration(k, at_boundary=epoch % self.epochs_per_iteration == 0)
            self.splits["train"] = self.load("train")
            self.loaded_iteration = k
        return super().train_dataloader()

    # -- the boundary ------------------------------------------------------------------------------------------
    def directory(self) -> str:
        """The run directory holding `iterations/`."""
        return self.run_dir or self.trainer.default_root_dir

    def iteration_prompts(self, k: int) -> list[dict[str, Any]]:
        """The prompts iteration k generates for."""
        if self.prompts_per_iteration is None:
            return self.pool
        start = k * self.prompts_per_iteration
        return [self.pool[(start + i) % len(self.pool)] for i in range(self.prompts_per_iteration)]

    def begin_iteration(self, k: int, at_boundary: bool) -> None:
        """Load or build iteration k's pairs; at a boundary also evaluate, log and re-anchor the reference."""
        trainer, module = self.trainer, self.trainer.lightning_module
        if self.boundary_done_at is not None and k - 1 in self.history:
            self.history[k - 1]["train_s"] = time.perf_counter() - self.boundary_done_at
        finished = load_iteration(self.directory(), k)
        if finished is not None:
            self.current, stats = finished
            stats = dict(stats, reused=True)
        else:
            stats = {"iteration": k}
            stats.update(self.evaluate_heldout(module))
            rows = self.iteration_prompts(k)
            trainer.strategy.barrier("iteration-generate")
            self.current, built = build_iteration(
                module.model, self.tokenizer, self.judge, self.pair_rule, [r["prompt"] for r in rows],
                [r.get("reference") for r in rows], self.candidates, seed=self.seed + 7919 * k,
                rank=trainer.global_rank, world_size=trainer.world_size, **self.generation)
            stats.update(built)
            if not self.current:
                raise RuntimeError(f"iteration {k} built no pairs from {len(rows)} prompts (all candidates tied or "
                                   f"unjudged: {built['judge_failures']} judge failures); try more candidates or a "
                                   "higher temperature")
            if trainer.is_global_zero:
                save_iteration(self.directory(), k, self.current, stats)
            trainer.strategy.barrier("iteration-saved")
            stats["reused"] = False
        if at_boundary:
            reanchor = getattr(module, "reanchor_reference", None)
            if reanchor is None:
                raise TypeError(f"{type(module).__name__} has no reanchor_reference(); iterative data needs a "
                                "preference module")
            reanchor()
        self.history[k] = stats
        self.log_stats(k, stats)
        self.boundary_done_at = time.perf_counter()

    def evaluate_heldout(self, module) -> dict[str, Any]:
        """The current policy's held-out statistics: `heldout_score`, the mean score of its greedy responses to the
        held-out prompts (accuracy with AnswerJudge), and the training judge's agreement with true grades."""
        stats: dict[str, Any] = {}
        if self.num_heldout:
            rows = self.prompts("val")[:self.num_heldout]
            generation = {key: value for key, value in self.generation.items() if key != "temperature"}
            stats["heldout_score"] = evaluate(module.model, self.tokenizer, self.heldout_judge or self.judge,
                                              [r["prompt"] for r in rows], [r.get("reference") for r in rows],
                                              **dict(generation, top_p=1.0))
        if self.num_judge_heldout:
            rows = self.graded(self.num_judge_heldout)
            stats.update(judge_agreement(module.model, self.tokenizer, self.judge, [r["prompt"] for r in rows],
                                         [r["response"] for r in rows], [r["grade"] for r in rows],
                                         [r.get("reference") for r in rows]))
        return stats

    def finish(self, module) -> dict[str, Any]:
        """After the last iteration: the last model's held-out score and every iteration's statistics (rank 0 writes
        `iterations/final.json`)."""
        trainer = self.trainer
        last = max(self.history) if self.history else -1
        if last in self.history and self.boundary_done_at is not None:
            self.history[last]["train_s"] = time.perf_counter() - self.boundary_done_at
        summary = {"iterations": {str(k): v for k, v in sorted(self.history.items())}}
        heldout = self.evaluate_heldout(module)
        if heldout:
            summary.update(heldout)
            self.log_stats(last + 1, heldout)
        if trainer.is_global_zero:
            write_json(iteration_paths(self.directory(), 0)[0].parent / "final.json", summary)
        return summary

    def log_stats(self, k: int, stats: dict[str, Any]) -> None:
        """Send an iteration's numeric statistics to every logger as `iteration/<name>`, with the index."""
        if not self.trainer.is_global_zero:
            return
        metrics = {f"iteration/{key}": float(value) for key, value in stats.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "iteration"}
        metrics["iteration/index"] = float(k)
        for logger in self.trainer.loggers:
            logger.log_metrics(metrics, step=self.trainer.global_step)


def refuse_sharded_generation(trainer) -> None:
    """Fail before training when the boundary's generation would hang: a sharded model (FSDP) needs every rank in
    every forward, but each rank samples its own prompts for its own number of steps."""
    if isinstance(trainer.strategy, (ModelParallelStrategy, FSDPStrategy)) and trainer.world_size > 1:
        raise ValueError(f"iterative training generates at iteration boundaries, which is not supported with a "
                         f"sharded model on {trainer.world_size} processes ({type(trainer.strategy).__name__}): "
                         f"use DDP (configs/strategy/ddp.yaml), where each rank generates for its own prompts")


class ArithmeticIterativeDataModule(IterativeDataModule):
    """The arithmetic questions of `datamodules/arithmetic.py` as prompts, their sums as reference answers (and
    graded responses to test questions for `num_judge_heldout`).

    Args:
        num_train: questions the policy generates for.
        num_val: held-out questions (evaluate `num_heldout` of them).
        num_terms: numbers added per question.
        min_operand: smallest operand.
        max_operand: largest operand.
        task_seed: seed of the questions.
        **kwargs: see `IterativeDataModule`.
    """

    def __init__(self, num_train: int = 200, num_val: int = 100, num_terms: int = 3, min_operand: int = 10,
                 max_operand: int = 99, task_seed: int = 0, **kwargs):
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("stop", None)
        super().__init__(**kwargs)
        self.counts = {"train": num_train, "val": num_val, "test": num_val}
        self.task = dict(num_terms=num_terms, min_operand=min_operand, max_operand=max_operand)
        self.task_seed = task_seed

    def prompts(self, split):
        return [{"prompt": q["prompt"], "reference": str(q["answer"])}
                for q in arithmetic_questions(self.counts[split], split, self.task_seed, **self.task)]

    def graded(self, count):
        """Test-split questions (disjoint from the training pool and the held-out prompts) answered by correct and
        corrupted responses with their true grades (`grade_points`), balanced over grades 0-5."""
        return graded_responses(arithmetic_questions(count, "test", self.task_seed, **self.task), count,
                                seed=self.task_seed, balanced=True)


class JSONLIterativeDataModule(IterativeDataModule):
    """Prompts from JSONL lines `{"prompt": str, "reference": str (optional)}`.

    Args:
        prompts_path: the generation pool.
        heldout_path: held-out prompts (optional).
        **kwargs: see `IterativeDataModule`.
    """

    def __init__(self, prompts_path: str, heldout_path: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.paths = {"train": prompts_path, "val": heldout_path}

    def prompts(self, split):
        if self.paths.get(split) is None:
            return []
        rows = []
        for record in read_jsonl(self.paths[split]):
            reference = record.get_typed("reference", (str, int, float), required=False)
            rows.append({"prompt": record.get_text("prompt"),
                         "reference": None if reference is None else str(reference)})
        return rows
