"""Loggers with litforge's defaults."""

from __future__ import annotations

import netrc
import os

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


def wandb_credentials_present() -> bool:
    """True when wandb could authenticate: WANDB_API_KEY, or an api.wandb.ai entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger that runs offline when no credentials are configured (or WANDB_MODE=offline).

    Args:
        offline: True/False force the mode; None (default) picks offline exactly when there is nothing to log in with.
        **kwargs: passed to `lightning.pytorch.loggers.WandbLogger` (project, group, tags, save_dir, ...).
    """

    def __init__(self, offline: bool | None = None, **kwargs):
        if offline is None:
            offline = os.environ.get("WANDB_MODE") in ("offline", "dryrun") or not wandb_credentials_present()
        super().__init__(offline=offline, **kwargs)
