"""The errors a user can cause, in one place: the CLI turns each into one line on stderr and exit status 2.

Anything else that escapes is a bug in litforge and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error caused by the user's input (config, data, paths, checkpoints), never by litforge."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work (an objective's hyperparameter, a trainer setting), named by field."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")

    def __reduce__(self):  # pickled whole (a worker process hands it to its parent), not from `args`
        return type(self), (self.field, self.message)


class CheckpointError(UserError, ValueError):
    """A checkpoint path that is missing, unreadable, truncated or not written by litforge."""

    def __init__(self, path, message: str):
        self.path, self.message = path, message
        super().__init__(f"checkpoint {path}: {message}")

    def __reduce__(self):
        return type(self), (self.path, self.message)


def require(condition: bool, field: str, message: str) -> None:
    """Raise ConfigError(field, message) unless `condition` holds (hyperparameter checks in `__init__`)."""
    if not condition:
        raise ConfigError(field, message)
