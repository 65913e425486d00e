"""Progress a user can read: one log line per epoch when there is no progress bar, and quiet Lightning.

:class:`EpochLog` prints, when the output is not a terminal (a log file, CI, ``nohup``) or the bar is off,
one line per epoch: ``epoch 3/30  loss 0.412  val IoU 45.20 nIoU 40.10  4.2 s/epoch  ETA 1 min 50 s``.
:func:`quiet_lightning` makes Lightning's own INFO lines appear once (they reached both Lightning's handler
and the root logger) and drops its advertisement.
"""

from __future__ import annotations

import logging
import time

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

log = logging.getLogger("irfoundry.train")

__all__ = ["EpochLog", "quiet_lightning"]


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


class EpochLog(Checkpoint):
    """One line per training epoch: loss, validation IoU / nIoU when validated, epoch time and ETA.

    A :class:`~lightning.pytorch.callbacks.Checkpoint` (it writes nothing) only so that Lightning calls its
    ``on_train_epoch_end`` after the module's, which logs the epoch means."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._start_epoch = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._start_epoch = time.perf_counter(), trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._t0 is None:
            return
        m = trainer.callback_metrics  # on every process: reading it may synchronise the epoch means (DDP)
        if not trainer.is_global_zero:
            return
        done = trainer.current_epoch + 1
        per_epoch = (time.perf_counter() - self._t0) / max(1, done - self._start_epoch)
        parts = [f"epoch {done}/{trainer.max_epochs}"]
        loss = m.get("train/loss_epoch", m.get("train/loss"))
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        validated = trainer.check_val_every_n_epoch and done % trainer.check_val_every_n_epoch == 0
        if "val/iou" in m and validated:
            parts.append(f"val IoU {100 * float(m['val/iou']):.2f} nIoU {100 * float(m['val/niou']):.2f}")
        elif "val/point_f1" in m and validated:
            parts.append(f"val click F1 {100 * float(m['val/point_f1']):.2f} recall {100 * float(m['val/point_recall']):.2f}")
        parts.append(f"{per_epoch:.1f} s/epoch")
        if trainer.max_epochs:
            parts.append(f"ETA {_duration(per_epoch * (trainer.max_epochs - done))}")
        log.info("  ".join(parts))


class _DropAdvert(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


def quiet_lightning() -> None:
    """Lightning's INFO lines once each, through the root logger the CLI configures (Lightning also adds a
    handler of its own, so every line came twice), without its advertisement."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        if logging.getLogger().handlers:
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)  # a filter acts on the logger a record is made on
        if not any(isinstance(f, _DropAdvert) for f in logger.filters):
            logger.addFilter(_DropAdvert())
