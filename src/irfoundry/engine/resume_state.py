"""The resume state of a run (``state/resume.ckpt``): written often, atomically, and restored completely.

A run killed at any point (Ctrl-C, ``SIGKILL``, a lost node) and continued with ``irfoundry train --resume
RUN`` gives the uninterrupted run's weights, metrics and log. That needs three things:

* **Saved often enough**: :class:`ResumeState` writes the state after every training epoch (after its
  validation and the method's epoch-end hook) and, inside an epoch, every ``trainer.state_every_batches``
  training batches and / or every ``trainer.state_every_minutes`` of wall time (the time decision is taken
  by global rank 0 and broadcast, so all processes save at the same step). Each write goes to a temporary
  file that replaces the old one, so a kill during the write keeps the previous state whole.
* **Restored completely**: Lightning restores model, optimisers, schedulers, loop counters and the
  callbacks; the module adds the method's state, the epoch means of the logged training values and every
  process's random generators (:func:`rng_state`); the training loader (:class:`ResumableLoader`) tells
  Lightning how many batches of the epoch were consumed, and its sampler skips exactly those.
* **No hidden randomness**: crops draw from ``default_rng([seed, epoch, index])`` and the order from
  ``(seed, epoch)``; loaders carry their own generator, so starting an iterator consumes nothing of
  torch's global generator (which dropout or a method's sampling may use).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from torch.utils.data import DataLoader


def rng_state() -> dict[str, Any]:
    """This process's random generators: torch (CPU and every CUDA device), numpy's global, Python's."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    # plain ints and tensors only: the resume checkpoint loads with torch.load(weights_only=True)
    numpy_state = {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (in the same process layout)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumableLoader(DataLoader):
    """The training :class:`~torch.utils.data.DataLoader`, resumable inside an epoch.

    Lightning saves ``state_dict()`` with the resume state and, when it continues an epoch, hands it back
    through ``load_state_dict`` before the epoch's iterator starts; the sampler (an
    :class:`~irfoundry.engine.datamodule.EpochSeededSampler`) then skips the samples of the batches already
    trained on. ``batches_done`` is set by the module after every training step."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("generator", torch.Generator().manual_seed(0))
        super().__init__(*args, **kwargs)
        self.batches_done = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches_done": int(self.batches_done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches_done = int(state["batches_done"])
        self.sampler.skip_in_epoch(int(state["epoch"]), self.batches_done * int(self.batch_size))


def _atomic_save(trainer: L.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` (collective) into ``path`` through a temporary file (rank 0 renames)."""
    tmp = path.with_name(path.name + ".tmp")
    for logger in trainer.loggers:  # the log on disk then holds every row up to this state
        logger.save()
    trainer.save_checkpoint(tmp, weights_only=False)  # every process builds the state; rank 0 writes it; ends in a barrier
    if trainer.is_global_zero:
        os.replace(tmp, path)
    trainer.strategy.barrier("irfoundry.resume_state")


class ResumeState(Checkpoint):
    """Write the run's resume state (see the module docstring).

    Args:
        path: the resume checkpoint, ``RUN/state/resume.ckpt``.
        every_batches: also save inside an epoch every this many training batches (0: off).
        every_minutes: also save inside an epoch when this much wall time passed since the last save (0: off).
    """

    def __init__(self, path: Path, every_batches: int = 0, every_minutes: float = 0.0) -> None:
        self.path = Path(path)
        self.every_batches = int(every_batches)
        self.every_seconds = float(every_minutes) * 60.0
        self._last_save = time.monotonic()

    @property
    def state_key(self) -> str:
        return "irfoundry.ResumeState"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.path = Path(trainer.strategy.broadcast(str(self.path)))
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_save = time.monotonic()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning hands an epoch's own rows (epoch means, validation) to the loggers only after the
        # epoch-end hooks, i.e. after that epoch's state was written: put them on disk now, so a run killed
        # in this epoch keeps the log of every epoch its resume state contains
        for logger in trainer.loggers:
            logger.save()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        progress = trainer.fit_loop.epoch_loop.batch_progress
        if progress.is_last_batch:
            return  # the epoch's end saves (after validation) anyway
        due = bool(self.every_batches) and progress.total.processed % self.every_batches == 0
        if self.every_seconds:
            due = due or time.monotonic() - self._last_save >= self.every_seconds
        if trainer.world_size > 1:
            due = bool(trainer.strategy.broadcast(due))  # every process saves at the same step, or none does
        if due:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a Checkpoint callback: Lightning calls this after the module's own epoch-end hook
        self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        _atomic_save(trainer, self.path)
        saved = getattr(trainer.lightning_module, "on_resume_state_saved", None)
        if saved is not None:
            saved()
        self._last_save = time.monotonic()
