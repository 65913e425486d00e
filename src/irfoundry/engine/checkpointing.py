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
    """After each validation, write ``last.safetensors`` and, when ``monitor`` improved, ``best.safetensors``."""

    def __init__(self, run_dir: Path, meta: dict, monitor: str = "val/iou", mode: str = "max") -> None:
        self.run_dir = Path(run_dir)
        self.meta = meta
        self.monitor = monitor
        self.mode = mode
        self.best_score: float | None = None
        self.best_epoch: int | None = None

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")

    def _improved(self, score: float) -> bool:
        if math.isnan(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val")}
        if trainer.is_global_zero:
            extra = {**self.meta, "epoch": trainer.current_epoch, "metrics": metrics, "git_revision": git_revision()}
            model = pl_module.method.export_model()
            save_weights(model, self.run_dir / "last.safetensors", extra={**extra, "role": "last"})
        score = metrics.get(self.monitor)
        if score is not None and self._improved(score):
            self.best_score, self.best_epoch = score, trainer.current_epoch
            if trainer.is_global_zero:
                save_weights(
                    pl_module.method.export_model(),
                    self.run_dir / "best.safetensors",
                    extra={**extra, "role": "best", "monitor": self.monitor, "monitor_mode": self.mode},
                )
