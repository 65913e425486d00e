"""What a method may ask of the engine: the step context and its data requests.

Methods never import the engine (nor Lightning). The engine hands every training hook a
:class:`StepContext`, implemented by :class:`irfoundry.engine.context.LightningStepContext`; tests and
other training loops may implement it themselves. Before training, the engine reads the method's
:class:`DataRequests` (:meth:`irfoundry.methods.Method.data_requests`) to build what the method's batches
and loaders need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import torch
from torch import Tensor, nn

from irfoundry.errors import ConfigError


@dataclass(frozen=True)
class FeatureRequest:
    """Serve a frozen model's features of every training image as ``batch[name]``.

    The features are computed once per un-augmented training image (a
    :class:`~irfoundry.foundation.cache.FeatureCache`) and cut to each crop, turned like it.

    Attributes:
        name: batch key (``"foundation"`` for FDEP).
        model: the frozen model (``forward(x in [0, 1]) -> list[maps]``, ``feature_info``, ``cache_key()``).
        root: ``None`` keeps the features in memory; a directory keeps them memory-mapped there (reused).
        include_val: also compute them for the validation images, served on the ``val_crops`` loader (a method
            that trains on validation crops: semantic-prior KD's outer step).
    """

    name: str
    model: nn.Module
    root: str | None = None
    include_val: bool = False


@dataclass(frozen=True)
class DataRequests:
    """What a method needs from the data side besides the configured training batches.

    Attributes:
        features: per-crop feature stores to attach to training batches (:class:`FeatureRequest`).
        loaders: named extra loaders the method iterates through :meth:`StepContext.loader` /
            :meth:`StepContext.next_batch` (``"train_full"``: the training images whole, un-augmented, each
            rank its shard; ``"train_crops"``: a second, independently seeded stream of training crops (from the
            training pool, targets from the label store: e.g. an outer step's training batch); ``"val_crops"``:
            augmented crops of the validation split, like training crops, whose targets are the validation label
            store's with ``val_label_store``, else the validation split's configured labels (clicks for point
            supervision: never a mask the run may not read); ``"val_full"``: the validation images whole,
            un-augmented, sharded like validation, targets as ``val_crops``).
        label_store: train on an evolving per-image label store instead of the configured labels: the engine
            builds ``stores["labels"]`` (one float map per training image at its size, initialised from the
            configured labels, e.g. point clicks) and serves it as ``batch["target"]`` of the training crops and
            of ``train_full``; the method rewrites maps with ``store.write(id, [map])`` and then calls
            :meth:`StepContext.commit_labels`, which snapshots the store in the run folder (``RUN/labels/``)
            and makes it part of the resume state.
        label_init: with ``label_store``: ``init(image, label) -> (label, in_pool)`` turns each training image's
            configured label (e.g. its click map, ``float32 H x W``) into its initial label, given the image as
            ``uint8 H x W`` grey; ``in_pool`` says whether it starts in the training pool (run once per process
            when the store is built).
        train_pool: draw the training crops from a pool of the training images only
            (:class:`~irfoundry.data.pool.TrainingPool`, ``ctx.train_pool``): all of them, or those ``label_init``
            put in; the method lets more in between epochs and commits its labels, which saves the pool with
            them. Each epoch is then one pass over the pool (the loader is rebuilt every epoch).
        labels: the label source the method needs (``"points"``: it trains on clicks); the run is refused
            before anything is written when ``data.labels`` differs.
        val_label_store: also evolve labels of the validation split: ``stores["val_labels"]``, initialised from
            the validation split's clicks through ``label_init`` (every image kept), served as the targets of
            ``val_crops`` and ``val_full``, snapshotted with the training labels by ``commit_labels``. The
            engine's validation still scores the configured validation labels (``data.val_labels``).
        val_label_init: the validation store's ``label_init`` when it differs from the training one (its
            ``in_pool`` is ignored: every validation image is kept).
        attributes: ``attributes(train_samples, val_samples) -> {name: {id: value}}``: per-image values
            (e.g. a cluster id) computed once per process when the data is set up (from the training images
            only, or as the method decides), served as ``batch[name]`` (a ``B`` tensor of ints / floats) on
            the training crops and every named loader. Every training and validation id needs a value.
    """

    features: Sequence[FeatureRequest] = ()
    loaders: Sequence[str] = ()
    label_store: bool = False
    label_init: Callable[[Any, Any], tuple[Any, bool]] | None = None
    train_pool: bool = False
    labels: str | None = None
    val_label_store: bool = False
    val_label_init: Callable[[Any, Any], tuple[Any, bool]] | None = None
    attributes: Callable[[Sequence[Any], Sequence[Any]], Mapping[str, Mapping[str, Any]]] | None = None

    def __post_init__(self) -> None:
        if (self.label_init is not None or self.train_pool or self.val_label_store) and not self.label_store:
            raise ConfigError("DataRequests: label_init, train_pool and val_label_store come with the label store "
                              "(label_store=True)")


LOADER_NAMES = ("train_full", "train_crops", "val_crops", "val_full")
"""The named loaders an engine offers (see :class:`DataRequests`)."""


class StepContext(Protocol):
    """The engine, as a method's training hooks see it.

    Attributes:
        epoch: 0-based epoch of the trainer (restored by ``--resume``).
        global_step: optimiser steps taken so far, as Lightning counts them (under manual optimisation every
            ``optimizer.step()`` of every optimiser counts).
        max_epochs: the run's length in epochs.
        world_size, rank: processes of the run (1 and 0 without DDP).
        is_last_batch: the batch being trained on is the epoch's last (a phase that ends an epoch, such as an
            outer step, runs in this step: before the epoch's validation).
        device: where the method's parameters live.
        run_dir: the run folder (for stores the method saves), ``None`` outside ``train``.
        norm: the run's train-split normalisation ``{"mean", "std"}`` in [0, 1] units.
    """

    epoch: int
    global_step: int
    max_epochs: int
    world_size: int
    rank: int
    is_last_batch: bool
    device: torch.device
    run_dir: Path | None
    norm: Mapping[str, float]

    @property
    def stores(self) -> Mapping[str, Any]:
        """The run's per-image stores by name (the feature caches of :attr:`DataRequests.features`,
        ``"labels"`` with :attr:`DataRequests.label_store`, ``"val_labels"`` with ``val_label_store``)."""
        ...

    @property
    def train_pool(self) -> Any:
        """The :class:`~irfoundry.data.pool.TrainingPool` of :attr:`DataRequests.train_pool` (``None`` without)."""
        ...

    def commit_labels(self) -> None:
        """After every process wrote the same new maps into ``stores["labels"]``: snapshot it in the run
        folder; a resumed run continues from the snapshot of its resume state."""
        ...

    def epoch_mean(self, name: str) -> float | None:
        """This epoch's mean of a value logged with ``log`` / ``log_dict`` (e.g. ``"train/loss_epoch"``),
        over every batch and process so far; ``None`` when nothing was logged under that name."""
        ...

    def predictor(self, fn: Callable[[Tensor], Tensor]) -> Any:
        """An :class:`irfoundry.engine.inference.Predictor` of ``fn`` (normalised images -> logits) with the
        run's normalisation, input multiple and padding: the one inference path, e.g. for label updates on
        the full training images of ``loader("train_full")`` (``predictor.batch_probabilities(batch)``). It
        predicts in eval mode (BatchNorm running statistics, no dropout) and restores training mode. Under DDP
        it is collective (every process calls it): it gives every process rank 0's buffers, those of the
        weights rank 0 saves."""
        ...

    def optimizers(self) -> dict[str, Any]:
        """The method's optimisers by :class:`~irfoundry.optim.OptimizerSpec` name (manual optimisation)."""
        ...

    def manual_backward(self, loss: Tensor, what: str = "loss") -> None:
        """``loss.backward()`` through the engine (precision, DDP), after the NaN guard: a non-finite loss
        on any process stops the run with a message naming the step and the batch's images."""
        ...

    def clip_gradients(self, optimizer: Any, max_norm: float | None = None) -> None:
        """Clip the gradient norm of ``optimizer``'s parameters to ``max_norm`` (default:
        ``trainer.gradient_clip_val``; nothing when both are unset). Works under manual optimisation."""
        ...

    def unscaled_step(self, optimizer: Any) -> None:
        """Step ``optimizer`` with gradients the method wrote itself (``torch.autograd.grad``, not
        ``manual_backward``): they carry no mixed-precision loss scale, so the engine's scaler must not divide
        them by one. Not counted in :attr:`global_step`."""
        ...

    def loader(self, name: str) -> Iterable[dict]:
        """A named loader of :attr:`DataRequests.loaders`, batches on :attr:`device`."""
        ...

    def next_batch(self, name: str) -> dict:
        """The next batch of a named loader, cycling through it (seeded, so a resumed run draws the same)."""
        ...

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` of every process, in rank order (``[obj]`` with one process)."""
        ...

    def barrier(self) -> None:
        """Wait for every process."""
        ...

    def log(self, name: str, value: float | Tensor, *, on_step: bool = False, on_epoch: bool = True) -> None:
        """Log a scalar (mean over processes)."""
        ...

    def log_dict(self, values: Mapping[str, float | Tensor]) -> None:
        """Log training scalars under ``train/`` (per step and epoch mean, averaged over processes)."""
        ...


@dataclass
class NoOptions:
    """Options of a method that takes none."""


def check_finite(loss: Tensor, what: str = "loss") -> None:
    """Raise ``FloatingPointError`` when ``loss`` is NaN or infinite (the NaN guard of loops without the engine;
    the engine's own guard names the step and the batch's images)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} is {loss.item()}")


@dataclass(frozen=True)
class BuildEnv:
    """What a method's builder may use besides its options (constructor injection happens there).

    Attributes:
        norm: the train-split normalisation (``{"mean", "std"}``, [0, 1] units).
    """

    norm: Mapping[str, float] = field(default_factory=lambda: {"mean": 0.0, "std": 1.0})


class EpochMeans:
    """Batch-size-weighted running means of logged training values over one epoch (on the values' device,
    no synchronisation per step)."""

    def __init__(self) -> None:
        self._sums: dict[str, list[Tensor]] = {}

    def reset(self) -> None:
        self._sums = {}

    def add(self, name: str, value, weight: int) -> None:
        v = value.detach().double() if isinstance(value, Tensor) else torch.tensor(float(value), dtype=torch.float64)
        total = self._sums.setdefault(name, [torch.zeros((), dtype=torch.float64, device=v.device),
                                             torch.zeros((), dtype=torch.float64, device=v.device)])
        total[0] = total[0] + v.mean() * weight
        total[1] = total[1] + weight

    def means(self) -> dict[str, Tensor]:
        return {k: (s / w).float() for k, (s, w) in self._sums.items()}

    def state_dict(self) -> dict[str, list[Tensor]]:
        return {k: [s.cpu(), w.cpu()] for k, (s, w) in self._sums.items()}

    def load_state_dict(self, state: Mapping[str, list[Tensor]]) -> None:
        self._sums = {k: [s.clone(), w.clone()] for k, (s, w) in state.items()}


class LocalStepContext:
    """A single-process, plain-PyTorch :class:`StepContext`: for benchmarks, tests and loops without Lightning.

    ``optimizers`` are the method's own (:meth:`~irfoundry.methods.Method.configure_optimizers`), backward is
    ``loss.backward()`` after the NaN guard, clipping is ``torch.nn.utils.clip_grad_norm_``, named loaders
    are the given iterables, and logged values are kept in :attr:`logged` (last value per name).
    """

    def __init__(self, method: nn.Module, optimizers: Mapping[str, Any] | None = None, *,
                 loaders: Mapping[str, Iterable[dict]] | None = None, norm: Mapping[str, float] | None = None,
                 max_epochs: int = 1, gradient_clip_val: float | None = None) -> None:
        self.method = method
        self._optimizers = dict(optimizers or {})
        self._loaders = dict(loaders or {})
        self._iterators: dict[str, Any] = {}
        self.norm = dict(norm or {"mean": 0.0, "std": 1.0})
        self.epoch, self.global_step, self.max_epochs = 0, 0, int(max_epochs)
        self.world_size, self.rank, self.run_dir = 1, 0, None
        #: set by the caller's loop on an epoch's last batch
        self.is_last_batch = False
        self.gradient_clip_val = gradient_clip_val
        self.stores: dict[str, Any] = {}
        #: a :class:`~irfoundry.data.pool.TrainingPool` the caller sets, if the method uses one
        self.train_pool: Any = None
        self.logged: dict[str, float] = {}
        self.epoch_means = EpochMeans()
        #: how many times :meth:`commit_labels` was called
        self.label_commits = 0

    @property
    def device(self) -> torch.device:
        p = next(iter(self.method.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    def optimizers(self) -> dict[str, Any]:
        return self._optimizers

    def predictor(self, fn: Callable[[Tensor], Tensor]) -> Any:
        from irfoundry.engine.inference import Predictor

        return Predictor(fn, norm=self.norm, device=self.device, module=self.method)

    def manual_backward(self, loss: Tensor, what: str = "loss") -> None:
        check_finite(loss, what)
        loss.backward()

    def clip_gradients(self, optimizer: Any, max_norm: float | None = None) -> None:
        value = max_norm if max_norm is not None else self.gradient_clip_val
        if value:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, float(value))

    def unscaled_step(self, optimizer: Any) -> None:
        optimizer.step()

    def loader(self, name: str) -> Iterable[dict]:
        return self._loaders[name]

    def next_batch(self, name: str) -> dict:
        try:
            return next(self._iterators[name])
        except (KeyError, StopIteration):
            self._iterators[name] = iter(self._loaders[name])
            return next(self._iterators[name])

    def all_gather_object(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        pass

    def commit_labels(self) -> None:
        self.label_commits += 1

    def epoch_mean(self, name: str) -> float | None:
        value = self.epoch_means.means().get(name)
        return float(value) if value is not None else None

    def new_epoch(self) -> None:
        """Forget this epoch's means (call between epochs of a hand-written loop)."""
        self.epoch_means.reset()

    def log(self, name: str, value, *, on_step: bool = False, on_epoch: bool = True) -> None:
        self.logged[name] = float(value)
        if on_epoch:
            self.epoch_means.add(f"{name}_epoch" if on_step else name, value, 1)

    def log_dict(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            self.log(f"train/{k}", v, on_step=True, on_epoch=True)
