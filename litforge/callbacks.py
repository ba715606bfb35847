"""Callbacks for runs people cannot watch: checkpoint names that mean what they say, and progress a log file shows.

The CLI installs the progress display itself (`ProgressLine` when stdout is not a terminal, `StepProgressBar` when it
is); configs name `LastAndBestCheckpoint` under `trainer.callbacks`.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.trainer.states import TrainerFn

from litforge.errors import require


class LastAndBestCheckpoint(ModelCheckpoint):
    """Keeps `last.ckpt`, the latest training step, and with `monitor` set also `best.ckpt`, the best by that metric.

    `last.ckpt` is written every `every_n_train_steps` steps, after each validation, at each epoch end and when
    training ends, so `--ckpt_path last` resumes a killed run from its latest state and `litforge export` of it ships
    the final weights. Each file is written beside its destination and renamed into place: a kill mid-write leaves
    the previous checkpoint intact.

    Args:
        dirpath: the folder of last.ckpt and best.ckpt.
        monitor: the metric that picks best.ckpt (e.g. "val/loss"); None keeps only last.ckpt.
        mode: "min" or "max": whether a lower or a higher `monitor` is better.
        every_n_train_steps: also write last.ckpt every this many optimizer steps (None: only at the points above).
    """

    def __init__(self, dirpath: str, monitor: str | None = None, mode: str = "min",
                 every_n_train_steps: int | None = None):
        super().__init__(dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_top_k=1 if monitor else 0,
                         save_last=True, enable_version_counter=False)
        require(every_n_train_steps is None or every_n_train_steps >= 1, "every_n_train_steps",
                f"must be at least 1 (or null), got {every_n_train_steps}")
        # our own step trigger: Lightning's would also re-judge best.ckpt on validation metrics of an older step
        self.every_n_steps = every_n_train_steps
        self._last_step_saved: int | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._save_last(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)  # best.ckpt, when the monitored metric improved
        self._save_last(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_last(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save_last(trainer)

    def _save_last(self, trainer: L.Trainer) -> None:
        """Write last.ckpt for the current step, unless it is already written or this is not a training step."""
        if (trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or trainer.fast_dev_run
                or self._last_step_saved == trainer.global_step):
            return
        saved_before = self._last_global_step_saved
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_global_step_saved = saved_before  # last.ckpt alone must not stop this step's best.ckpt check

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_step_saved = trainer.global_step

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        # a hidden name: Lightning's `--ckpt_path last` search matches any file whose name starts with "last"
        staging = os.path.join(os.path.dirname(filepath), f".{os.path.basename(filepath)}.partial")
        super()._save_checkpoint(trainer, staging)
        if trainer.is_global_zero:
            if os.path.isdir(filepath):  # a sharded (distributed) checkpoint is a directory
                shutil.rmtree(filepath)
            os.replace(staging, filepath)
        trainer.strategy.barrier("LastAndBestCheckpoint")
        self._last_checkpoint_saved = filepath


class ProgressLine(ProgressBar):
    """Plain, flushed progress lines for output that is not a terminal (a cluster job's log file).

    Each line gives the step out of the run's total, the step's loss, tokens per second (all processes) and the
    estimated time left; each validation adds a line of its metrics.

    Args:
        every_n_steps: print every this many optimizer steps (None: the trainer's `log_every_n_steps`).
        max_silence_s: print at least this often, in seconds, however slow the steps are.
    """

    def __init__(self, every_n_steps: int | None = None, max_silence_s: float = 60.0):
        super().__init__()
        self.every_n_steps = every_n_steps
        self.max_silence_s = max_silence_s
        self._enabled = True
        self._start_time = self._last_print_time = 0.0
        self._start_step = self._last_print_step = 0
        self._tokens = 0

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._start_time = self._last_print_time = time.monotonic()
        self._start_step = self._last_print_step = trainer.global_step
        self._tokens = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._tokens += count_tokens(batch)
        step, now = trainer.global_step, time.monotonic()
        every = self.every_n_steps or trainer.log_every_n_steps or 1
        due = step % every == 0 or step == total_steps(trainer) or now - self._last_print_time >= self.max_silence_s
        if self.is_enabled and step != self._last_print_step and due:
            self._last_print_time, self._last_print_step = now, step
            self.print(self._train_line(trainer, outputs, now))

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.is_enabled and not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            metrics = {key: value for key, value in trainer.callback_metrics.items() if key.startswith("val")}
            shown = "  ".join(f"{key} {_number(value)}" for key, value in sorted(metrics.items()))
            self.print(f"step {trainer.global_step}/{_total(trainer)}  {shown}".rstrip())

    def on_train_end(self, trainer, pl_module) -> None:
        if self.is_enabled:
            elapsed = time.monotonic() - self._start_time
            self.print(f"done: step {trainer.global_step}/{_total(trainer)} in {_duration(elapsed)}")

    def print(self, *args: Any, **kwargs: Any) -> None:
        print(*args, **kwargs, flush=True)

    def _train_line(self, trainer: L.Trainer, outputs: Any, now: float) -> str:
        """`step 120/300  epoch 1  loss 2.345  tokens/s 5,432  elapsed 0:00:42  eta 0:01:03`."""
        step, elapsed = trainer.global_step, now - self._start_time
        done = step - self._start_step
        parts = [f"step {step}/{_total(trainer)}", f"epoch {trainer.current_epoch}"]
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            parts.append(f"loss {_number(loss)}")
        if elapsed > 0:
            parts.append(f"tokens/s {self._tokens * trainer.world_size / elapsed:,.0f}")
        parts.append(f"elapsed {_duration(elapsed)}")
        remaining = total_steps(trainer) - step
        if done > 0 and math.isfinite(remaining):
            parts.append(f"eta {_duration(remaining * elapsed / done)}")
        return "  ".join(parts)


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar, counting the run's optimizer steps out of its total instead of batches per epoch.

    Lightning's own bar reads "Epoch 2/-2" when the run is bounded by `max_steps`; this one reads "Epoch 2" and
    fills up to `max_steps` (or the steps of `max_epochs`) once, across epochs.
    """

    @property
    def total_train_batches(self) -> int | float:
        return total_steps(self.trainer)

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the bar is filled to "batch_idx + 1"; hand it the step count instead
        super().on_train_batch_end(trainer, pl_module, outputs, batch, trainer.global_step - 1)


def default_progress_bar() -> ProgressBar:
    """`ProgressLine` when stdout is not a terminal (a log file), else `StepProgressBar`."""
    return StepProgressBar() if sys.stdout.isatty() else ProgressLine()


def total_steps(trainer: L.Trainer) -> int | float:
    """Optimizer steps the run will take: `max_steps`, or what `max_epochs` amounts to (inf when unbounded)."""
    return trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches


def count_tokens(batch: Any) -> int:
    """Tokens in a batch: the sum of its attention masks, or the size of its token ids when it has no mask."""
    if not isinstance(batch, Mapping):
        return 0
    masks = [value for key, value in batch.items() if key.endswith("attention_mask") and torch.is_tensor(value)]
    if masks:
        return int(sum(mask.sum().item() for mask in masks))
    return sum(value.numel() for key, value in batch.items() if key.endswith("input_ids") and torch.is_tensor(value))


def _total(trainer: L.Trainer) -> str:
    total = total_steps(trainer)
    return str(int(total)) if math.isfinite(total) else "?"


def _number(value: Any) -> str:
    value = float(value)
    return f"{value:.4g}"


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))
