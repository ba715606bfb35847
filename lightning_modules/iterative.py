"""The loop every generation-driven objective shares, run by the objective itself from Lightning hooks.

One `fit` holds `iterations` rounds of: the current policy generates for the iteration's prompts, the output is
scored or filtered, the rows of the next iteration are built, written to `<run_dir>/iterations/iter_<k>.jsonl`
(`litforge.iterations`) and handed to the datamodule (`datamodule.set_rows(rows)`), the reference is re-anchored to
the policy, and training runs `epochs_per_iteration` epochs over the rows. A subclass says how rows are built
(`build_rows`) and what is measured at each boundary (`evaluate`); self-rewarding, iterative RPO and Cringe build
preference pairs (`lightning_modules/iterative_preference.py`), System 2 distillation or ToolVerifier would build
their own rows from the same hooks.

Hooks: `on_fit_start` prepares the iteration the run starts (or resumes) in; `on_train_epoch_end` of an iteration's
last epoch prepares the next one, before the trainer rebuilds the training dataloader for the next epoch (the trainer
reloads it every epoch) and before an epoch-end checkpoint is written. The epoch count follows from the model:
`trainer.max_epochs` is set to iterations x epochs_per_iteration (a different value in the config is refused).

The datamodule it feeds serves prompts and rows and never calls the module: `prompts(split)` ("val" = held out),
`iteration_prompts(k)`, `graded(count)` (fixed responses with true grades, optional) and `set_rows(rows)`.

Resume: the checkpoint records the iteration being trained and the epoch a resumed run starts in. A resumed run
reads finished iterations' files instead of generating again and keeps the reference it restored mid-iteration; a
run killed while generating generates that iteration again, from the same weights and seed, so its rows are the
same. Under DDP each rank generates for its own shard of the prompts and all ranks train on the gathered rows; a
subclass that seeds its draws per prompt (or per fixed chunk of prompts, as `iterative_preference` does) rather than
per rank builds the same rows on any number of ranks.

Where the policy samples: `generation_backend` is opened around each boundary's evaluation and row building
(`BuiltinGeneration`, the KV-cache loop of litforge/generation.py, or `VLLMGeneration`, litforge/vllm_backend.py,
which is handed the policy's current weights there).
"""

from __future__ import annotations

import time
from typing import Any

from litforge.lazy import lazy_default
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

from litforge.errors import ConfigError, require
from litforge.generation import BuiltinGeneration, GenerationBackend
from litforge.iterations import load_iteration, save_iteration, write_final
from litforge.vllm_backend import VLLMGeneration  # noqa: F401 (imported so YAML can name it by short name)

UNSET_MAX_EPOCHS = (None, -1, 1000)  # what Lightning makes of a config without max_epochs


class IterativeObjective:
    """Mixed in before a `LitforgeModule` subclass: generate -> score/filter -> build rows -> train, per iteration.

    Subclasses implement `build_rows(k, prompts)` and may extend `evaluate()` and `reanchor()`.

    Args:
        iterations: rounds of generate -> build rows -> train inside one `fit`.
        epochs_per_iteration: training epochs over each iteration's rows.
        seed: seed of the generation (iteration k samples with seed + 7919 k; a subclass may add per-chunk offsets).
        run_dir: where `iterations/` is written (None = the trainer's default_root_dir, stable across resumes).
        generation_backend: where the policy samples at each boundary (`BuiltinGeneration` or `VLLMGeneration`).
        **kwargs: see the objective this is mixed into.
    """

    plugin_fields = ("generation_backend",)

    def __init__(self, iterations: int = 3, epochs_per_iteration: int = 1, seed: int = 0, run_dir: str | None = None,
                 generation_backend: GenerationBackend = lazy_default(BuiltinGeneration), **kwargs):
        require(iterations >= 1, "iterations", f"must be >= 1, got {iterations}")
        require(epochs_per_iteration >= 1, "epochs_per_iteration", f"must be >= 1, got {epochs_per_iteration}")
        super().__init__(**kwargs)
        self.iterations, self.epochs_per_iteration = iterations, epochs_per_iteration
        self.seed, self.run_dir, self.generation_backend = seed, run_dir, generation_backend
        self.iteration: int | None = None  # the iteration whose rows the datamodule holds
        self.resume_epoch = 0  # the epoch a run restored from a checkpoint starts in
        self.history: dict[int, dict[str, Any]] = {}
        self.boundary_done_at: float | None = None

    # -- what a subclass says ----------------------------------------------------------------------------------
    def build_rows(self, k: int, prompts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Iteration k's training rows from its prompts (`{"prompt", "reference"}` dicts), and their statistics.

        Runs on every rank; each rank works on its shard (`self.rank`, `self.world_size`) and returns all rows.
        """
        raise NotImplementedError

    def evaluate(self) -> dict[str, Any]:
        """Statistics of the current policy, logged at each boundary (the model entering it) and at the end."""
        return {}

    def reanchor(self) -> None:
        """Make the reference equal the current policy (objectives with a reference override or inherit this)."""
        reanchor = getattr(self, "reanchor_reference", None)
        if reanchor is not None:
            reanchor()

    # -- Lightning hooks ---------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            self.configure_trainer()

    def on_fit_start(self) -> None:
        super().on_fit_start()
        k = min(self.resume_epoch // self.epochs_per_iteration, self.iterations - 1)  # a finished run: the last
        self.begin_iteration(k, at_boundary=self.iteration != k)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        following = self.trainer.current_epoch + 1
        if following % self.epochs_per_iteration == 0 and following // self.epochs_per_iteration < self.iterations:
            self.begin_iteration(following // self.epochs_per_iteration, at_boundary=True)

    def on_train_end(self) -> None:
        super().on_train_end()
        self.finish()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        progress = self.trainer.fit_loop.epoch_progress.current
        epoch_over = progress.processed == progress.started  # saved at an epoch's end (its boundary already ran)
        # saved after an epoch's last batch: a resumed run goes on with the next epoch, without epoch-end hooks
        last_batch = not epoch_over and self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        checkpoint["iterative"] = {"iteration": self.iteration, "resume_epoch": progress.processed + last_batch}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("iterative", {})
        self.iteration, self.resume_epoch = state.get("iteration"), state.get("resume_epoch", 0)

    # -- the loop ----------------------------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        """This process's rank."""
        return self.trainer.global_rank

    @property
    def world_size(self) -> int:
        """The number of processes generating."""
        return self.trainer.world_size

    def directory(self) -> str:
        """The run directory holding `iterations/`."""
        return self.run_dir or self.trainer.default_root_dir

    def configure_trainer(self) -> None:
        """Derive the trainer's epoch count and dataloader reloads from the iterations; refuse what cannot work."""
        trainer, epochs = self.trainer, self.iterations * self.epochs_per_iteration
        if not hasattr(trainer.datamodule, "set_rows"):
            raise ConfigError("data", f"{type(self).__name__} hands each iteration's rows to its datamodule: use one "
                                      "that takes them (IterativeDataModule, datamodules/iterative.py)")
        if trainer.max_epochs not in (*UNSET_MAX_EPOCHS, epochs):
            raise ConfigError("trainer.max_epochs", f"is {trainer.max_epochs}, but the model runs iterations x "
                                                    f"epochs_per_iteration = {epochs} epochs: leave it out")
        if trainer.reload_dataloaders_every_n_epochs not in (0, 1):
            raise ConfigError("trainer.reload_dataloaders_every_n_epochs", "must be 1 (or left out) for an iterative "
                              "objective: each iteration's rows are read when an epoch starts")
        trainer.fit_loop.max_epochs = epochs
        trainer.reload_dataloaders_every_n_epochs = 1
        self.refuse_sharded_generation()

    def refuse_sharded_generation(self) -> None:
        """Fail before training where generation would hang: a sharded forward (FSDP) needs every rank, but each
        rank generates for its own prompts and its own number of steps."""
        strategy, world_size = self.trainer.strategy, self.trainer.world_size
        if isinstance(strategy, (ModelParallelStrategy, FSDPStrategy)) and world_size > 1:
            raise ConfigError("trainer.strategy", f"a sharded model on {world_size} processes "
                              f"({type(strategy).__name__}) cannot generate at iteration boundaries: use DDP "
                              "(configs/strategy/ddp.yaml), where each rank generates for its own prompts")

    def begin_iteration(self, k: int, at_boundary: bool) -> None:
        """Get iteration k's rows (read when finished, else built) and hand them to the datamodule; at a boundary
        also re-anchor the reference. A run resumed mid-iteration only reads the rows back."""
        trainer, datamodule = self.trainer, self.trainer.datamodule
        if self.boundary_done_at is not None and self.iteration in self.history:
            self.history[self.iteration]["train_s"] = time.perf_counter() - self.boundary_done_at
        finished = load_iteration(self.directory(), k)
        if finished is not None:
            rows, stats = finished
            stats = dict(stats, reused=True)
        elif not at_boundary:
            raise RuntimeError(f"resuming inside iteration {k}, but its rows are missing from "
                               f"{self.directory()}/iterations: they cannot be generated again by a policy that has "
                               "trained since")
        else:
            with self.generation_backend.serving(self.model, self.tokenizer):
                stats = dict(self.evaluate(), iteration=k)
                trainer.strategy.barrier("iteration-generate")
                rows, built = self.build_rows(k, datamodule.iteration_prompts(k))
            stats.update(built, reused=False)
            if trainer.is_global_zero:
                save_iteration(self.directory(), k, rows, stats)
            trainer.strategy.barrier("iteration-saved")
        datamodule.set_rows(rows)
        if at_boundary:
            self.reanchor()
        self.iteration = k
        self.history[k] = stats
        self.log_stats(k, stats)
        self.boundary_done_at = time.perf_counter()

    def finish(self) -> dict[str, Any]:
        """After the last iteration: evaluate the last model and write every iteration's statistics (rank 0 writes
        `iterations/final.json`)."""
        if self.iteration in self.history and self.boundary_done_at is not None:
            self.history[self.iteration]["train_s"] = time.perf_counter() - self.boundary_done_at
        for k in range(self.iterations):  # iterations finished before a resume: their statistics files
            finished = k not in self.history and load_iteration(self.directory(), k)
            if finished:
                self.history[k] = dict(finished[1], reused=True)
        summary: dict[str, Any] = {"iterations": {str(k): v for k, v in sorted(self.history.items())}}
        with self.generation_backend.serving(self.model, self.tokenizer):
            final = self.evaluate()
        self.generation_backend.close()
        if final:
            summary.update(final)
            self.log_stats(self.iterations, final)
        if self.trainer.is_global_zero:
            write_final(self.directory(), summary)
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
