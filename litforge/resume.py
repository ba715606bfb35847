"""Exact resume of the random draws a training step makes (dropout, Cringe's sampling, any `random`/numpy call).

`RandomState` is a callback every `LitforgeModule` adds (`configure_callbacks`). A checkpoint carries every rank's
torch (CPU and CUDA), Python `random` and numpy states as they are after the saved step; a resumed fit sets them back
at `on_train_start`, so its next step draws what the uninterrupted run drew. Validation draws from a fork of the
training state (restored when validation ends): Lightning skips or repeats a validation around a resumed step, and
that must not shift the training stream. The data order is resumed by `litforge.sampling`.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn


def capture() -> dict[str, Any]:
    """This process's random states, as plain tensors and tuples (loadable with `torch.load(weights_only=True)`)."""
    numpy = np.random.get_state(legacy=False)
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"key": torch.from_numpy(numpy["state"]["key"].astype(np.int64)), "pos": numpy["state"]["pos"],
                       "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"]}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    """Set this process's random states to `capture()` output."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": numpy["key"].numpy().astype(np.uint32),
                                                               "pos": numpy["pos"]},
                         "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"]})
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class RandomState(L.Callback):
    """Saves each rank's random states in checkpoints and restores them on resume; validation leaves them unchanged."""

    def __init__(self):
        self.saved: list[dict[str, Any]] | None = None  # per rank, from the checkpoint being resumed
        self.outside_validation: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Every rank's states (gathered: Lightning calls this on all ranks; rank 0 writes the file)."""
        state = capture()
        _, world = _rank_and_world()
        if world == 1:
            return {"ranks": [state]}
        states = [None] * world
        dist.all_gather_object(states, state)
        return {"ranks": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved = state_dict["ranks"]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saved is None:
            return
        rank, world = _rank_and_world()
        if len(self.saved) == world:
            restore(self.saved[rank])
        else:
            rank_zero_warn(f"the checkpoint holds the random states of {len(self.saved)} ranks and this run has "
                           f"{world}: random draws continue from the seed, not from the checkpoint")
        self.saved = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.outside_validation = capture()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        restore(self.outside_validation)
        self.outside_validation = None
