"""The engine's :class:`~irfoundry.methods.context.StepContext`: what a method's hooks see of Lightning.

One object per :class:`~irfoundry.engine.module.IRSTDModule`, handed to every method hook. It forwards
to the LightningModule (optimisers, manual backward with the NaN guard, gradient clipping that also works
under manual optimisation, logging) and to the datamodule (named loaders), and it is the only place a
method's training touches Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch
from torch import Tensor

from irfoundry.engine.inference import Predictor
from irfoundry.errors import ConfigError, IRFoundryError
from irfoundry.methods.context import EpochMeans

from irfoundry.engine.label_stores import TRAIN_LABELS as LABEL_STORE
from irfoundry.engine.label_stores import VAL_LABELS

if TYPE_CHECKING:  # pragma: no cover
    from irfoundry.engine.module import IRSTDModule


class TrainingDiverged(IRFoundryError):
    """The loss became NaN or infinite; the message names the step and the batch's image ids."""


class LightningStepContext:
    """:class:`~irfoundry.methods.context.StepContext` over an :class:`IRSTDModule` (see that protocol)."""

    def __init__(self, module: "IRSTDModule", run_dir: Path | None = None, norm: Mapping[str, float] | None = None):
        self._module = module
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.norm = dict(norm or {"mean": 0.0, "std": 1.0})
        #: the batch being trained on (for the NaN guard's message and the logged batch size)
        self.batch: Mapping | None = None
        self.batch_idx = 0
        self._iterators: dict[str, Iterator] = {}
        #: batches drawn from each named loader this epoch (resume state: a resumed run draws on from there)
        self._draws: dict[str, int] = {}
        self._skip_draws: dict[str, int] = {}
        self.epoch_means = EpochMeans()

    # ------------------------------------------------------------------ state of the run
    @property
    def _trainer(self):
        return self._module.trainer

    @property
    def epoch(self) -> int:
        return int(self._module.current_epoch)

    @property
    def global_step(self) -> int:
        """Optimiser steps so far as Lightning counts them (under manual optimisation: every
        ``optimizer.step()`` of every optimiser)."""
        return int(self._module.global_step)

    @property
    def max_epochs(self) -> int:
        return int(self._trainer.max_epochs)

    @property
    def is_last_batch(self) -> bool:
        return bool(self._trainer.is_last_batch)

    @property
    def world_size(self) -> int:
        return int(self._trainer.world_size)

    @property
    def rank(self) -> int:
        return int(self._trainer.global_rank)

    @property
    def device(self) -> torch.device:
        return self._module.device

    @property
    def stores(self) -> Mapping[str, Any]:
        dm = self._trainer.datamodule
        stores = dict(getattr(dm, "stores", {}) or {})
        if getattr(dm, "label_store", None) is not None:
            stores[LABEL_STORE] = dm.label_store
        if getattr(dm, "val_label_store", None) is not None:
            stores[VAL_LABELS] = dm.val_label_store
        return stores

    @property
    def train_pool(self):
        return getattr(self._trainer.datamodule, "train_pool", None)

    def commit_labels(self) -> None:
        self._module.commit_labels()

    def epoch_mean(self, name: str) -> float | None:
        means = self.epoch_means.means()
        if name not in means:
            return None
        values = self.all_gather_object(float(means[name]))  # every process ran the same number of batches
        return sum(values) / len(values)

    def predictor(self, fn) -> Predictor:
        if self.world_size > 1:
            # every process predicts with rank 0's buffers (BatchNorm statistics: each process's last training
            # forward updated its own), those of the weights rank 0 saves; DDP does this only in its forward
            for buf in self._module.buffers():
                torch.distributed.broadcast(buf.data, src=0)
        dm = self._trainer.datamodule
        return Predictor(fn, norm=self.norm, multiple=dm.multiple, padding=dm.padding, device=self.device,
                         module=self._module.method)

    # ------------------------------------------------------------------ optimisation
    def optimizers(self) -> dict[str, Any]:
        opts = self._module.optimizers(use_pl_optimizer=True)
        opts = opts if isinstance(opts, (list, tuple)) else [opts]
        return dict(zip(self._module.optimizer_names, opts))

    def check_finite(self, loss: Tensor, what: str = "loss") -> None:
        """The NaN guard: every process stops at the same step when any has a non-finite ``loss``."""
        local_ok = bool(torch.isfinite(loss.detach()).all())
        ok = local_ok
        if self.world_size > 1:
            # every process must stop at the same step, or the others wait forever in the gradient all-reduce
            ok = self._trainer.strategy.reduce_boolean_decision(local_ok, all=True)
        if not ok:
            ids = ", ".join(map(str, (self.batch or {}).get("id", [])))
            value = f"{loss.detach().float().mean().item()}" if not local_ok else "non-finite on another process"
            raise TrainingDiverged(
                f"{what} became {value} at epoch {self.epoch}, global step {self.global_step} "
                f"(batch {self.batch_idx}, images: {ids}). The last good checkpoint is kept in the run folder; "
                "lower optim.lr, check these images, or enable trainer.gradient_clip_val."
            )

    def manual_backward(self, loss: Tensor, what: str = "loss") -> None:
        self.check_finite(loss, what)
        self._module.manual_backward(loss)

    def clip_gradients(self, optimizer: Any, max_norm: float | None = None) -> None:
        value = max_norm if max_norm is not None else self._module.gradient_clip_val
        if value:
            self._module.clip_gradients(optimizer, gradient_clip_val=float(value), gradient_clip_algorithm="norm")

    def unscaled_step(self, optimizer: Any) -> None:
        # the wrapped optimiser itself: LightningOptimizer.step would let the precision plugin unscale gradients
        # that were never scaled (16-mixed)
        getattr(optimizer, "optimizer", optimizer).step()

    # ------------------------------------------------------------------ data
    def _named(self, name: str, skip_batches: int = 0):
        dm = self._trainer.datamodule
        if dm is None or not hasattr(dm, "named_loader"):
            raise ConfigError(f"loader {name!r} needs the irfoundry datamodule")
        if name not in self._module.requested_loaders:
            raise ConfigError(f"loader {name!r} was not requested: add it to the method's data_requests().loaders")
        loader = dm.named_loader(name)
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        if skip_batches and hasattr(sampler, "skip_in_epoch"):
            sampler.skip_in_epoch(self.epoch, skip_batches * int(loader.batch_size))
        return loader

    def _to_device(self, batch):
        return self._trainer.strategy.batch_to_device(batch)

    def loader(self, name: str):
        for batch in self._named(name):
            yield self._to_device(batch)

    def next_batch(self, name: str) -> dict:
        it = self._iterators.get(name)
        try:
            if it is None:
                raise StopIteration
            batch = next(it)
        except StopIteration:
            loader = self._named(name)
            skip = self._skip_draws.pop(name, 0) % max(1, len(loader))
            it = self._iterators[name] = iter(self._named(name, skip) if skip else loader)
            batch = next(it)
        self._draws[name] = self._draws.get(name, 0) + 1
        return self._to_device(batch)

    def new_epoch(self) -> None:
        """Forget the named loaders' iterators: every epoch draws its own seeded order (exact on resume)."""
        self._iterators.clear()
        self._draws, self._skip_draws = {}, {}
        self.epoch_means.reset()

    def resume_state(self) -> dict[str, Any]:
        """What a run resumed inside this epoch needs of the context: draws per named loader, epoch means."""
        return {"draws": dict(self._draws), "epoch_means": self.epoch_means.state_dict()}

    def load_resume_state(self, state: Mapping[str, Any]) -> None:
        """After :meth:`new_epoch` of a run resumed inside the epoch: named loaders continue where they were."""
        self._draws = dict(state.get("draws", {}))
        self._skip_draws = dict(self._draws)
        self.epoch_means.load_state_dict(state.get("epoch_means", {}))

    # ------------------------------------------------------------------ processes
    def all_gather_object(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        self._trainer.strategy.barrier()

    # ------------------------------------------------------------------ logging
    def _batch_size(self) -> int | None:
        image = (self.batch or {}).get("image")
        return int(image.shape[0]) if isinstance(image, Tensor) else None

    def log(self, name: str, value, *, on_step: bool = False, on_epoch: bool = True, prog_bar: bool = False) -> None:
        """Log a training value. Names as Lightning's: with both ``on_step`` and ``on_epoch``, ``NAME_step``
        per step and ``NAME_epoch`` per epoch. The epoch value is the batch-size-weighted mean of the epoch
        (:class:`EpochMeans`, part of the resume state, so an epoch cut and resumed logs the same mean),
        averaged over processes."""
        if on_step:
            # sync_dist: the mean over all processes (a no-op with one process)
            self._module.log(f"{name}_step" if on_epoch else name, value, on_step=True, on_epoch=False,
                             prog_bar=prog_bar, batch_size=self._batch_size(), sync_dist=True)
        if on_epoch:
            self.epoch_means.add(f"{name}_epoch" if on_step else name, value, self._batch_size() or 1)

    def log_dict(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            self.log(f"train/{k}", v, on_step=True, on_epoch=True, prog_bar=k == "loss")

    def log_epoch_means(self) -> None:
        """Log this epoch's means (the module calls it at the epoch's end)."""
        for name, value in self.epoch_means.means().items():
            self._module.log(name, value, on_step=False, on_epoch=True, sync_dist=True)

