"""Run-folder checkpoints: ``last`` and ``best`` as safetensors + JSON, written atomically.

The JSON sidecar makes a weights file self-describing: model name and arguments, normalisation
statistics, the resolved config, the epoch, validation metrics and the git revision. ``irfoundry eval``
and ``predict`` need nothing else. Lightning's own ``resume.ckpt`` (optimiser state etc.) sits beside
them for ``--resume``.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import lightning as L

from irfoundry.models.checkpoint import save_weights


def git_revision() -> str:
    """``git describe --always --dirty`` of the irfoundry source tree, or ``"unknown"``."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=here, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class WeightsCheckpoint(L.Callback):
    """After each validation, write ``last.safetensors`` and, when ``monitor`` improved, ``best.safetensors``.

    Every run leaves weights: the final epoch is always validated (also when ``val_every`` does not divide
    the number of epochs), and when training ends anywhere else (``trainer.max_steps`` within an epoch)
    ``last`` is written once more. With ``validate=False`` (no validation split) only ``last`` exists,
    written at the end of training epochs (every ``every_n_epochs`` and the final one)."""

    def __init__(
        self,
        run_dir: Path,
        meta: dict,
        monitor: str = "val/iou",
        mode: str = "max",
        validate: bool = True,
        every_n_epochs: int = 1,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.validate = validate
        self.every_n_epochs = max(1, every_n_epochs)
        self.meta = meta
        self.monitor = monitor
        self.mode = mode
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._last_step: int | None = None

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "last_step": self._last_step}

    def load_state_dict(self, state: dict) -> None:
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")
        self._last_step = state.get("last_step")

    def _improved(self, score: float) -> bool:
        if math.isnan(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        final = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if self.validate and final and trainer.check_val_every_n_epoch:
            trainer.check_val_every_n_epoch = 1  # Lightning reads it at each epoch's end: validate the final one

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # training ended where no weights were written (max_steps within an epoch): the weights of this step,
        # without validation metrics (those of an earlier epoch would be attributed to them)
        if self._last_step != trainer.global_step:
            self._write_last(trainer, pl_module, {})

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.validate:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val")}
        extra = self._write_last(trainer, pl_module, metrics)
        score = metrics.get(self.monitor)
        if score is not None and self._improved(score):
            self.best_score, self.best_epoch = score, trainer.current_epoch
            if trainer.is_global_zero:
                save_weights(
                    pl_module.method.export_model(),
                    self.run_dir / "best.safetensors",
                    extra={**extra, "role": "best", "monitor": self.monitor, "monitor_mode": self.mode},
                )
                if len(pl_module.method.eval_branches()) > 1:  # the other branches at the same epoch
                    from irfoundry.engine.branches import METHOD_WEIGHTS, save_method_weights

                    save_method_weights(pl_module.method, self.run_dir / METHOD_WEIGHTS,
                                        {"epoch": str(trainer.current_epoch), "monitor": self.monitor})

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Without validation (``data.val_split: none``) ``last`` is written every ``every_n_epochs``
        epochs and after the final epoch."""
        if self.validate:
            return
        epoch = trainer.current_epoch
        final = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if final or (epoch + 1) % self.every_n_epochs == 0:
            self._write_last(trainer, pl_module, {})

    def _write_last(self, trainer: L.Trainer, pl_module: L.LightningModule, metrics: dict) -> dict:
        self._last_step = trainer.global_step
        extra = {**self.meta, "epoch": trainer.current_epoch, "global_step": trainer.global_step, "metrics": metrics,
                 "git_revision": git_revision()}
        if trainer.is_global_zero:
            save_weights(pl_module.method.export_model(), self.run_dir / "last.safetensors", extra={**extra, "role": "last"})
        return extra
