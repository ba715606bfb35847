"""Test-only pieces of the iterative objectives' tests that subprocess runs name by class_path."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning as L
import torch
from litforge.plugins.judges import Judge


class HashJudge(Judge):
    """A deterministic stand-in for a judge that needs no trained model: a response's score is its byte sum mod 5.

    Args:
        kill_on_call: SIGKILL this process at this call of `score` (1-based), once: only while `marker` is absent.
        marker: the file that records the kill, so that the rerun of the same config runs through.
    """

    def __init__(self, kill_on_call: int | None = None, marker: str | None = None):
        self.calls, self.kill_on_call, self.marker = 0, kill_on_call, marker

    def score(self, prompts, responses, references=None):
        self.calls += 1
        if self.calls == self.kill_on_call and not Path(self.marker).exists():
            Path(self.marker).write_text("killed while judging")
            os.kill(os.getpid(), signal.SIGKILL)
        return [float(sum(r.encode()) % 5) for r in responses]


class KillAtStep(L.Callback):
    """SIGKILLs the process before training step `step` (0-based global step), once: only while `marker` is absent."""

    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, marker

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and not Path(self.marker).exists():
            Path(self.marker).write_text(f"killed at step {self.step}")
            os.kill(os.getpid(), signal.SIGKILL)


class PairsLog(L.Callback):
    """At each epoch start, records (epoch, training pairs, frozen reference == policy?) to `<folder>/rank<r>.json`."""

    def __init__(self, folder: str):
        self.folder, self.seen = folder, []

    def on_train_epoch_start(self, trainer, module):
        probe, same = torch.tensor([[1, 2, 3, 4, 5]], device=module.device), None
        if module.reference_model is not None:
            with torch.no_grad():
                same = torch.equal(module.model(probe).logits, module.reference_model(probe).logits)
        self.seen.append({"epoch": trainer.current_epoch, "pairs": trainer.datamodule.rows, "reanchored": same})
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        (Path(self.folder) / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))
