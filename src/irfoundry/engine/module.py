"""LightningModule wrapping a :class:`~irfoundry.methods.Method`.

The module owns what every method shares: turning the method's optimisers into Lightning's, the NaN
guard, the epoch timer, validation of every branch through the inference path at native resolution,
metric logging, and the method's resume state. The method owns its training step (automatic or manual
optimisation), its optimisers and schedules, and the export; every method hook receives the
:class:`~irfoundry.engine.context.LightningStepContext`.

Schedules: Lightning steps the scheduler of an automatically optimised method at its interval. Under
manual optimisation the engine does it for the method: ``interval: step`` schedulers after every training
batch, ``interval: epoch`` ones after every epoch, so a method only steps its optimisers.

Under DDP each process validates its shard of the validation split (see
:mod:`irfoundry.engine.datamodule`); the metric state is summed counters that torchmetrics gathers from
every process inside ``compute()``, so the logged ``val/*`` values, and hence the ``best`` checkpoint
choice, are the global ones and identical on every process.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Mapping

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from irfoundry.engine.context import LightningStepContext, TrainingDiverged
from irfoundry.engine.inference import crop, probabilities
from irfoundry.engine.metrics import build_eval_metrics
from irfoundry.engine.resume_state import ResumableLoader, rng_state, set_rng_state
from irfoundry.errors import ConfigError
from irfoundry.metrics.points import PointHitMetrics
from irfoundry.methods.base import Method
from irfoundry.methods.context import LOADER_NAMES
from irfoundry.optim import OptimConfig, ScheduleLength

__all__ = ["IRSTDModule", "TrainingDiverged"]

log = logging.getLogger(__name__)

#: key of the method's own resume state inside Lightning's checkpoint
METHOD_STATE = "irfoundry_method_state"
#: key of the label-store snapshot (``RUN/labels/<version>``) the state trains on
LABELS_STATE = "irfoundry_labels_version"
#: folder of the label-store snapshots in the run folder
LABELS_DIR = "labels"
#: key of every process's random generators, epoch means and named-loader positions (one entry per rank)
PROCESS_STATE = "irfoundry_process_state"


class IRSTDModule(L.LightningModule):
    """Train ``method`` with ``optim``; validate every branch of ``method.eval_branches()``.

    Args:
        method: the method (its ``automatic_optimization`` decides who steps the optimisers).
        optim: the optim section, passed to ``method.configure_optimizers``.
        threshold: validation threshold.
        gradient_clip_val: the norm ``ctx.clip_gradients`` clips to by default (manual optimisation; under
            automatic optimisation the Trainer clips).
        run_dir, norm: what the step context tells the method.
        empty_niou: validation nIoU of an image with empty ground truth and prediction.

    Batches are dicts from :class:`irfoundry.data.IRSTDDataset` (training: :func:`irfoundry.data.collate`;
    evaluation: :func:`irfoundry.engine.inference.pad_collate`, with ``box`` to crop back to).
    """

    def __init__(self, method: Method, optim: OptimConfig, threshold: float = 0.5, *,
                 gradient_clip_val: float | None = None, run_dir: Path | None = None,
                 norm: Mapping[str, float] | None = None, empty_niou: float = 0.0, val_labels: str = "mask") -> None:
        super().__init__()
        self.method = method
        self.optim_cfg = optim
        self.threshold = threshold
        self.gradient_clip_val = gradient_clip_val
        self.automatic_optimization = bool(method.automatic_optimization)
        self.requested_loaders = tuple(method.data_requests().loaders)
        unknown = sorted(set(self.requested_loaders) - set(LOADER_NAMES))
        if unknown:
            raise ConfigError(f"method {method.name!r} requests loaders {unknown}; the engine offers {list(LOADER_NAMES)}")
        self.ctx = LightningStepContext(self, run_dir=run_dir, norm=norm)
        self.optimizer_names: list[str] = []
        self._scheduled_intervals: list[str] = []
        #: ``mask``: validation scores masks; ``points``: clicks (:class:`~irfoundry.metrics.points.PointHitMetrics`)
        self.val_labels = val_labels
        self.val_metrics = torch.nn.ModuleDict(
            {name: PointHitMetrics(threshold) if val_labels == "points" else build_eval_metrics(threshold, empty_niou)
             for name in method.eval_branches()}
        )
        # the label snapshot trained on now / named by the last resume state, snapshots so far
        self._labels_version: str | None = None
        self._saved_labels_version: str | None = None
        self._label_commits = 0
        self._labels_restored = False
        #: every process's state from the checkpoint being resumed, applied in on_train_start
        self._restored_process_state: list | None = None

    # ----------------------------------------------------------------------------------------- train
    def on_train_start(self) -> None:
        self._restore_labels()
        restored, self._restored_process_state = self._restored_process_state, None
        if self.trainer.fit_loop.restarted_mid_epoch:
            # Lightning continues the cut epoch without its epoch-start hooks: begin it again here (the
            # method's on_train_epoch_start depends on the epoch and its state only), then put back what the
            # epoch had reached
            self._begin_epoch()
        if restored is None:
            return
        if len(restored) != self.trainer.world_size:
            log.warning("resumed with %d processes, saved with %d: random generators start afresh (crops and order "
                        "are still exact)", self.trainer.world_size, len(restored))
            return
        mine = restored[self.trainer.global_rank]
        if self.trainer.fit_loop.restarted_mid_epoch:
            self.ctx.load_resume_state(mine["context"])
        set_rng_state(mine["rng"])

    def on_train_epoch_start(self) -> None:
        self._begin_epoch()
        loader = self._train_loader()
        if loader is not None:
            loader.batches_done = 0

    def _begin_epoch(self) -> None:
        self.ctx.new_epoch()
        # current_epoch is the trainer's (restored by --resume), 0-based
        self.method.on_train_epoch_start(self.ctx)
        self._epoch_t0, self._epoch_train_s, self._epoch_batches = time.perf_counter(), None, 0

    def _train_loader(self) -> ResumableLoader | None:
        loader = self.trainer.train_dataloader
        return loader if isinstance(loader, ResumableLoader) else None

    def on_validation_epoch_start(self) -> None:
        # Validation inside fit runs before the training epoch ends. Lightning flips the stage to
        # ``validating`` first, so ``trainer.training`` is False here: ask for the fit instead.
        fitting = self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking
        if fitting and getattr(self, "_epoch_t0", None) is not None and self._epoch_train_s is None:
            self._epoch_train_s = time.perf_counter() - self._epoch_t0

    def on_train_epoch_end(self) -> None:
        self.method.on_train_epoch_end(self.ctx)
        if not self.automatic_optimization:
            self._step_schedulers("epoch")
        self.ctx.log_epoch_means()
        # wall time of this epoch's training batches (data loading included, validation excluded), and how
        # many batches it timed: seconds per batch compare methods whose epochs differ in length (PAL's pool)
        seconds = self._epoch_train_s if self._epoch_train_s is not None else time.perf_counter() - self._epoch_t0
        self.log("train/epoch_seconds", seconds, sync_dist=True, reduce_fx="max")
        self.log("train/epoch_batches", float(self._epoch_batches), sync_dist=True, reduce_fx="max")

    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        self.ctx.batch, self.ctx.batch_idx = batch, batch_idx
        self._epoch_batches = getattr(self, "_epoch_batches", 0) + 1
        out = self.method.training_step(batch, self.ctx)
        loader = self._train_loader()
        if loader is not None:  # the resume state's position in the epoch (read at the end of this batch)
            loader.batches_done = batch_idx + 1
        if self.automatic_optimization:
            if out is None:
                raise ConfigError(f"method {self.method.name!r} optimises automatically but its training_step "
                                  "returned no loss")
            self.ctx.check_finite(out)
            return out
        self._step_schedulers("step")
        return None

    def _step_schedulers(self, interval: str) -> None:
        scheds = self.lr_schedulers()
        if scheds is None:
            return
        scheds = scheds if isinstance(scheds, list) else [scheds]
        for sched, spec_interval in zip(scheds, self._scheduled_intervals):
            if spec_interval == interval:
                sched.step()

    # ------------------------------------------------------------------------------------ validation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        images, boxes = batch["image"], batch["box"]
        masks = batch["target"] if self.val_labels == "points" else batch["mask"]  # clicks, or ground truth
        counted = batch.get("counted")
        if counted is not None and not all(counted):  # padding of a DDP shard: never enters a metric
            keep = [i for i, c in enumerate(counted) if c]
            if not keep:
                return
            images, masks, boxes = images[keep], masks[keep], [boxes[i] for i in keep]
        targets = [crop(masks[i, 0], box) > 0.5 for i, box in enumerate(boxes)]
        for name, branch in self.method.eval_branches().items():
            self.val_metrics[name].update(probabilities(branch, images, boxes), targets)

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

    # ------------------------------------------------------------------------------------- label store
    def _labels_dir(self) -> Path:
        if self.ctx.run_dir is None:
            raise ConfigError("a label store is snapshotted in the run folder; train through irfoundry.engine.train")
        return self.ctx.run_dir / LABELS_DIR

    def commit_labels(self) -> None:
        """Snapshot the label store (every process wrote the same maps) as ``RUN/labels/<version>``; keep only
        it and the one the last resume state names."""
        labels = self.trainer.datamodule.run_labels() if hasattr(self.trainer.datamodule, "run_labels") else None
        if labels is None:
            raise ConfigError(f"method {self.method.name!r} commits labels but did not request a label store "
                              "(DataRequests(label_store=True))")
        self._label_commits += 1
        version = f"{self._label_commits:04d}-epoch{self.current_epoch:04d}"
        if self.trainer.is_global_zero:
            labels.save(self._labels_dir() / version)
        self.trainer.strategy.barrier("irfoundry.commit_labels")
        self._labels_version = version
        self._prune_labels()

    def _prune_labels(self) -> None:
        """Remove snapshots neither current nor named by the resume state on disk (rank 0)."""
        folder = self.ctx.run_dir / LABELS_DIR if self.ctx.run_dir is not None else None
        if folder is None or not folder.is_dir() or not self.trainer.is_global_zero:
            return
        keep = {self._labels_version, self._saved_labels_version}
        for old in folder.iterdir():
            if old.is_dir() and old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)

    def _restore_labels(self) -> None:
        """A resumed run: load the label snapshot (and training pool) its state trained on, once."""
        if self._labels_version is None or self._labels_restored:
            return
        dm = self.trainer.datamodule
        dm.run_labels().load(self._labels_dir() / self._labels_version)
        self._labels_restored = True

    def on_resume_state_saved(self) -> None:
        """Called by :class:`~irfoundry.engine.resume_state.ResumeState` once the state is on disk."""
        self._prune_labels()

    # ------------------------------------------------------------------------------------- resume state
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # every process runs this when a checkpoint is saved; rank 0 writes what all of them gathered
        checkpoint[METHOD_STATE] = self.method.method_state()
        checkpoint[LABELS_STATE] = {"version": self._labels_version, "commits": self._label_commits}
        self._saved_labels_version = self._labels_version
        checkpoint[PROCESS_STATE] = self.ctx.all_gather_object({"rng": rng_state(), "context": self.ctx.resume_state()})

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.method.load_method_state(checkpoint.get(METHOD_STATE) or {})
        labels = checkpoint.get(LABELS_STATE) or {}
        self._labels_version = self._saved_labels_version = labels.get("version")
        self._label_commits = int(labels.get("commits", 0))
        self._labels_restored = False
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is not None and getattr(dm, "label_store", None) is not None:
            # now, not in on_train_start: the training loader (a pool's length) is built before that
            self._restore_labels()
        # applied in on_train_start, after everything that might still draw random numbers while restoring
        self._restored_process_state = checkpoint.get(PROCESS_STATE)

    # ------------------------------------------------------------------------------------- optimiser
    def _stepping_batches(self) -> int:
        """Training batches of the whole run (Lightning's ``estimated_stepping_batches``, computed from the
        datamodule: Lightning's own estimate builds the training iterator before a resumed run's loop state
        is restored, and the loader then never learns where inside the epoch it was cut)."""
        t = self.trainer
        dm = t.datamodule
        if dm is None or not hasattr(dm, "train_dataloader"):
            return int(t.estimated_stepping_batches)
        n = len(dm.train_dataloader())
        limit = t.limit_train_batches
        n = min(n, limit) if isinstance(limit, int) else int(n * limit)
        steps = n * max(int(t.max_epochs or 1), 1)
        return min(steps, int(t.max_steps)) if t.max_steps not in (None, -1) else steps

    def configure_optimizers(self):
        t = self.trainer
        length = ScheduleLength(epochs=int(t.max_epochs or 1), steps=self._stepping_batches())
        specs = self.method.configure_optimizers(self.optim_cfg, length)
        if not specs:
            raise ConfigError(f"method {self.method.name!r} built no optimiser")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"method {self.method.name!r} named two optimisers alike: {names}")
        if self.automatic_optimization and len(specs) > 1:
            raise ConfigError(f"method {self.method.name!r} builds {len(specs)} optimisers: that needs "
                              "automatic_optimization = False (it steps them in training_step)")
        self.optimizer_names = names
        self._scheduled_intervals = [s.interval for s in specs if s.scheduler is not None]
        out = []
        for s in specs:
            entry: dict = {"optimizer": s.optimizer}
            if s.scheduler is not None:
                entry["lr_scheduler"] = {"scheduler": s.scheduler, "interval": s.interval}
            out.append(entry)
        if len(out) == 1:
            only = out[0]
            return only if "lr_scheduler" in only else only["optimizer"]
        return out
