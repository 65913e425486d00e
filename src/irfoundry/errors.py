"""Exceptions with messages that name the offending file or key and say what to do.

Every error a user can cause by bad input derives from :class:`IRFoundryError`; the CLI prints
its message and exits with status 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class IRFoundryError(Exception):
    """Base class of all user-facing errors."""


class DataError(IRFoundryError):
    """A dataset, image, mask or split file is missing, unreadable or inconsistent."""


class ModelError(IRFoundryError):
    """Unknown model name, bad model arguments or an input the model cannot take."""


class CheckpointError(IRFoundryError):
    """A checkpoint is unreadable, corrupt or belongs to another architecture."""


class ConfigError(IRFoundryError):
    """A configuration key is missing, unknown or has a value outside the allowed set."""


class TrainingInterrupted(IRFoundryError):
    """Ctrl-C (SIGINT) stopped training; says how to continue (the CLI exits 130)."""

    def __init__(self, run_dir: Path | str, resumable: bool) -> None:
        self.run_dir = run_dir
        if resumable:
            msg = (f"training interrupted; {run_dir} holds the state of its last finished epoch: continue with "
                   f"'irfoundry train --resume {run_dir}'")
        else:
            msg = "training interrupted before its first epoch ended; nothing to resume (the run folder was removed)"
        super().__init__(msg)
