"""LightningModule wrapping a :class:`~irfoundry.methods.Method`.

The module owns what every method shares: optimiser and schedule, the NaN guard, validation on padded
full images cropped back to native size, and metric logging. The method owns the loss and the export;
it is told the epoch through :meth:`~irfoundry.methods.Method.on_train_epoch_start`.

Under DDP each process validates its shard of the validation split (see
:mod:`irfoundry.engine.datamodule`); the metric state is summed counters that torchmetrics gathers from
every process inside ``compute()``, so the logged ``val/*`` values, and hence the ``best`` checkpoint
choice, are the global ones and identical on every process.
"""

from __future__ import annotations

import math
import time

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from irfoundry.engine.config import OptimConfig
from irfoundry.engine.metrics import build_eval_metrics
from irfoundry.errors import IRFoundryError
from irfoundry.methods.base import Method


class TrainingDiverged(IRFoundryError):
    """The loss became NaN or infinite; the message names the step and the batch's image ids."""


class IRSTDModule(L.LightningModule):
    """Train ``method`` with ``optim``; validate every branch of ``method.eval_branches()``.

    Batches are dicts from :class:`irfoundry.data.IRSTDDataset` (training) and
    :func:`irfoundry.engine.datamodule.pad_collate` (evaluation: ``image`` padded to a multiple of 32,
    ``size`` the native sizes to crop back to).
    """

    def __init__(self, method: Method, optim: OptimConfig, threshold: float = 0.5) -> None:
        super().__init__()
        self.method = method
        self.optim_cfg = optim
        self.threshold = threshold
        self.val_metrics = torch.nn.ModuleDict(
            {name: build_eval_metrics(threshold) for name in method.eval_branches()}
        )

    # ----------------------------------------------------------------------------------------- train
    def on_train_epoch_start(self) -> None:
        # current_epoch is the trainer's (restored by --resume), 0-based
        self.method.on_train_epoch_start(self.current_epoch)
        self._epoch_t0, self._epoch_train_s = time.perf_counter(), None

    def on_validation_epoch_start(self) -> None:
        # Validation inside fit runs before the training epoch ends. Lightning flips the stage to
        # ``validating`` first, so ``trainer.training`` is False here: ask for the fit instead.
        fitting = self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking
        if fitting and getattr(self, "_epoch_t0", None) is not None and self._epoch_train_s is None:
            self._epoch_train_s = time.perf_counter() - self._epoch_t0

    def on_train_epoch_end(self) -> None:
        # wall time of this epoch's training batches (data loading included, validation excluded)
        seconds = self._epoch_train_s if self._epoch_train_s is not None else time.perf_counter() - self._epoch_t0
        self.log("train/epoch_seconds", seconds, sync_dist=True, reduce_fx="max")

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, logs = self.method.training_loss(batch)
        local_ok = bool(torch.isfinite(loss))
        ok = local_ok
        if self.trainer.world_size > 1:
            # every process must stop at the same step, or the others wait forever in the gradient all-reduce
            ok = self.trainer.strategy.reduce_boolean_decision(local_ok, all=True)
        if not ok:
            ids = ", ".join(map(str, batch.get("id", [])))
            what = f"{loss.item()}" if not local_ok else "non-finite on another process"
            raise TrainingDiverged(
                f"loss became {what} at epoch {self.current_epoch}, global step {self.global_step} "
                f"(batch {batch_idx}, images: {ids}). The last good checkpoint is kept in the run folder; "
                "lower optim.lr, check these images, or enable trainer.gradient_clip_val."
            )
        bs = batch["image"].shape[0]
        for k, v in logs.items():
            # sync_dist: the mean over all processes (a no-op with one process)
            self.log(f"train/{k}", v, prog_bar=k == "loss", on_step=True, on_epoch=True, batch_size=bs, sync_dist=True)
        return loss

    # ------------------------------------------------------------------------------------ validation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        images, masks, sizes = batch["image"], batch["mask"], batch["size"]
        counted = batch.get("counted")
        if counted is not None and not all(counted):  # padding of a DDP shard: never enters a metric
            keep = [i for i, c in enumerate(counted) if c]
            if not keep:
                return
            images, masks, sizes = images[keep], masks[keep], [sizes[i] for i in keep]
        for name, branch in self.method.eval_branches().items():
            logits = branch(images)
            self.val_metrics[name].update_padded(logits.float(), masks, sizes)

    def on_validation_epoch_end(self) -> None:
        for i, (name, metric) in enumerate(self.val_metrics.items()):
            if i == 0:  # images this process scored, summed over processes: the split's size, never more
                self.log("val/n_images", metric.n_images.float(), reduce_fx="sum", sync_dist=True)
            values = metric.compute()  # gathers the counters of every process (torchmetrics sync)
            metric.reset()
            prefix = "val" if i == 0 else f"val_{name}"
            for k, v in values.items():
                # already global and equal on every process: no further reduction
                self.log(f"{prefix}/{k}", v, prog_bar=(i == 0 and k in ("iou", "niou")), sync_dist=False)

    # ------------------------------------------------------------------------------------- optimiser
    def configure_optimizers(self):
        cfg = self.optim_cfg
        params = [p for p in self.method.parameters() if p.requires_grad]
        name = cfg.optimizer.lower()
        if name == "adam":
            opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        elif name == "adamw":
            opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        sched = build_scheduler(opt, cfg, self.trainer.max_epochs)
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, max_epochs: int):
    """Per-epoch LR schedule: ``none | step | multistep | cosine``, each with optional linear warm-up."""
    name = cfg.scheduler.lower()
    warm = max(0, int(cfg.warmup_epochs))

    def factor(epoch: int) -> float:
        f = 1.0
        if name == "step":
            f = cfg.gamma ** (epoch // max(1, cfg.step_size))
        elif name == "multistep":
            f = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        elif name == "cosine":
            span = max(1, max_epochs - warm)
            t = min(max(epoch - warm, 0), span) / span
            floor = cfg.min_lr / cfg.lr
            f = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        if warm and epoch < warm:
            f *= (epoch + 1) / (warm + 1)
        return f

    if name == "none" and not warm:
        return None
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
