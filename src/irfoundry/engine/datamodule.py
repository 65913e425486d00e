"""LightningDataModule: train / val / test datasets from a :class:`DataConfig`.

* train: the configured training split with paired random transforms, seeded per (seed, epoch, index)
  so that a resumed run sees exactly the crops an uninterrupted one would; its targets come from the
  configured label source (``data.labels``: the masks, or point labels that need no mask at all);
* val: the dataset's own ``val`` split when it has one, else a seeded carve-out from train
  (never the test split), scored against its ground-truth masks;
* test: the configured test split, full images at native resolution.

Normalisation statistics come from the training images only and are stored with the run.
Evaluation batches are padded by the inference path (:func:`irfoundry.engine.inference.pad_collate`,
the model's ``input_multiple``) and cropped back by the metric / predictor using ``batch["box"]``.

Multi-process (DDP) runs: the Trainer is built with ``use_distributed_sampler=False`` and the loaders
shard themselves from ``trainer.world_size`` / ``trainer.global_rank``. Lightning's default would wrap the
validation loader in a ``DistributedSampler`` that pads the split with repeated images up to a multiple
of the world size, so those images would be counted twice in the summed metric counters. Here

* training (:class:`EpochSeededSampler`): every process draws the same ``(seed, epoch)`` permutation and
  takes a disjoint strided shard of it (padded by wrap-around to equal length, as ``DistributedSampler``
  does for training);
* validation and the full training images (:class:`EvalShardSampler`): every image is *counted* exactly
  once over all processes; shards are padded to equal length with images marked ``counted=False``, which
  the metric (and a label update) skips, so all processes run the same number of steps.

With one process both reduce to the single-process behaviour (same order, every image counted once).

Method requests (:class:`~irfoundry.methods.context.DataRequests`): features (``request_features``) are
built in :meth:`setup`, i.e. once per process after DDP is initialised (a disk cache is then built once, in
shards, by all ranks); the training crops snap to their stride and training items carry them. Named
loaders (:meth:`named_loader`): ``train_full`` (the training images whole, un-augmented, sharded like
validation), ``train_crops`` (a second seeded stream of training crops), ``val_crops`` (augmented crops of
the validation split, seeded like training) and ``val_full`` (the validation images whole). Label stores
(:mod:`irfoundry.engine.label_stores`) and per-image attributes are built in :meth:`setup` too.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from functools import partial
from typing import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from irfoundry.data import (
    DatasetSpec,
    IntensityJitter,
    IRSTDDataset,
    MaskLabels,
    PointLabels,
    TrainTransform,
    collate,
    compute_norm_stats,
    train_val_samples,
)
from irfoundry.data.mix import mix_entries, mixed_train_val
from irfoundry.data.pool import TrainingPool
from irfoundry.engine.config import DataConfig
from irfoundry.engine.inference import pad_collate
from irfoundry.engine.resume_state import ResumableLoader
from irfoundry.engine.samplers import CountedDataset, EpochSeededSampler, EvalShardSampler
from irfoundry.errors import ConfigError, DataError
from irfoundry.methods.context import LOADER_NAMES, FeatureRequest
from irfoundry.models.base import DEFAULT_INPUT_MULTIPLE

log = logging.getLogger(__name__)

__all__ = ["CountedDataset", "EpochSeededSampler", "EvalShardSampler", "IRSTDDataModule", "eval_loader"]


class IRSTDDataModule(L.LightningDataModule):
    """Datasets and loaders of one run.

    Args:
        cfg: the data section.
        batch_size, eval_batch_size: training and evaluation batch sizes.
        norm: saved statistics (resume, evaluation); ``None`` computes them on the training images.
        multiple: the model's input multiple (evaluation padding).
        padding: padding policy of the inference path.
    """

    def __init__(self, cfg: DataConfig, batch_size: int, eval_batch_size: int = 1, norm: dict | None = None,
                 multiple: int = DEFAULT_INPUT_MULTIPLE, padding: str = "multiple"):
        super().__init__()
        self.cfg = cfg
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.multiple, self.padding = int(multiple), padding
        derived = derived_points_kind(cfg.points)
        require_masks = cfg.labels == "mask" or derived is not None
        if cfg.mix:
            entries = mix_entries(cfg.mix)
            train, val, source = mixed_train_val(entries, val_fraction=cfg.val_fraction, seed=cfg.seed,
                                                 require_masks=require_masks)
        else:
            entries = []
            train, val, source = train_val_samples(DatasetSpec(cfg.root, cfg.train_split), val_fraction=cfg.val_fraction,
                                                   seed=cfg.seed, val_split=cfg.val_split or "val",
                                                   require_masks=require_masks)
        clicks = None
        if derived:
            clicks = derive_point_labels([*train, *val], *derived)
        elif cfg.points:
            clicks = PointLabels(cfg.points)
        elif any(e.points for e in entries):  # each dataset's own file, its ids tagged as the samples are
            clicks = PointLabels({f"{e.name}/{k}": v for e in entries for k, v in PointLabels(e.points).points.items()},
                                 source=", ".join(e.points for e in entries))
        self.labels = MaskLabels() if cfg.labels == "mask" else clicks
        self.labels.check(train)
        #: what validation scores: ``mask`` or ``points`` (``data.val_labels``, ``auto`` resolved)
        self.val_labels = cfg.val_labels if cfg.val_labels != "auto" else cfg.labels
        val_clicks = None
        if val and self.val_labels == "points":
            val_clicks = clicks
            val_clicks.check(val)
        elif val:
            self._check_val_masks(val)
        self.train_samples, self.val_samples, self.val_source = train, val, source
        #: mean / std of the TRAIN images; pass the saved ones when resuming or evaluating
        self.norm = norm if norm is not None else compute_norm_stats(train)
        self.transform = TrainTransform(
            crop_size=cfg.crop_size,
            pad_mode=cfg.pad_mode,
            target_prob=cfg.target_crop_prob,
            hflip=0.5 if cfg.flip else 0.0,
            vflip=0.5 if cfg.flip else 0.0,
            rot90=cfg.rot90,
            transpose=0.5 if cfg.rot90 else 0.0,
            jitter=IntensityJitter() if cfg.intensity_jitter else None,
        )
        self.train_set = IRSTDDataset(
            train, transform=self.transform, norm=self.norm, seed=cfg.seed, split=cfg.train_split, labels=self.labels
        )
        self.val_set = IRSTDDataset(val, norm=self.norm, split="val", labels=val_clicks) if val else None
        #: the validation split's clicks (point supervision), whatever validation scores
        self.val_clicks = clicks if cfg.labels == "points" and val else None
        self._feature_requests: list[FeatureRequest] = []
        #: built per-crop stores (``{name: store}``), once :meth:`setup` ran
        self.stores: dict = {}
        #: the evolving training labels (:meth:`request_label_store`), once :meth:`setup` ran
        self.label_store = None
        #: the pool the training crops come from (:meth:`request_label_store` with ``pool``), else ``None``
        self.train_pool: TrainingPool | None = None
        #: the evolving validation labels (``request_label_store(val=True)``), once :meth:`setup` ran
        self.val_label_store = None
        #: per-image attribute tables ``{name: {id: value}}`` (:meth:`request_attributes`), once :meth:`setup` ran
        self.attributes: dict | None = None
        self._label_store_requested = self._val_label_store_requested = False
        self._label_init = self._attributes_request = None

    def _check_val_masks(self, val) -> None:
        missing = [s.id for s in val if s.mask is None]
        if missing:
            raise DataError(
                f"the validation split has {len(missing)} image(s) without a mask (e.g. {missing[:5]}); validation "
                "scores ground-truth masks. Give a labelled val split (data.val_split) or set data.val_split: none."
            )

    def request_features(self, requests: Sequence[FeatureRequest]) -> None:
        """Serve each request's model features of the un-augmented training images as ``batch[name]``,
        computed once in :meth:`setup` (in memory, or memory-mapped under ``root``), cut and turned per crop."""
        names = [r.name for r in requests]
        reserved = {"image", "target", "mask", "id", "size", "index", "geometry", "box", "counted"}
        if len(set(names)) != len(names) or reserved & set(names):
            raise ConfigError(f"feature names {names} must be unique and not one of {sorted(reserved)}")
        self._feature_requests = list(requests)

    def request_label_store(self, init=None, pool: bool = False, val: bool = False, val_init=None) -> None:
        """Train on a per-image label store initialised from the configured labels, optionally through
        ``init``, from a training pool, and with a validation label store (see
        :class:`~irfoundry.methods.context.DataRequests`: ``label_store``, ``label_init``, ``train_pool``,
        ``val_label_store``), built in :meth:`setup`."""
        if val and not self.has_val:
            raise ConfigError("the method evolves validation pseudo-labels (val_label_store) but the run has no "
                              "validation split (data.val_split: none); give one")
        if val and self.val_clicks is None:
            raise ConfigError("the method evolves validation pseudo-labels from the validation split's clicks; "
                              "train with data.labels: points")
        self._label_store_requested, self._label_init, self._val_label_store_requested = True, init, bool(val)
        self._val_label_init = val_init if val_init is not None else init
        if pool:
            self.train_pool = TrainingPool([s.id for s in self.train_samples])

    def request_attributes(self, compute) -> None:
        """Serve ``compute(train_samples, val_samples) -> {name: {id: value}}`` as per-image batch entries
        (:attr:`~irfoundry.methods.context.DataRequests.attributes`), computed in :meth:`setup`."""
        self._attributes_request = compute

    def _build_label_stores(self) -> None:
        from irfoundry.data.labels import StoreLabels
        from irfoundry.engine.label_stores import TRAIN_LABELS, VAL_LABELS, build_label_store

        self.label_store, members = build_label_store(self.train_samples, self.labels, self._label_init, TRAIN_LABELS)
        self.train_set.labels = StoreLabels(self.label_store)
        if self.train_pool is not None and self._label_init is not None:
            self.train_pool.set(members)
        if self._val_label_store_requested:
            self.val_label_store, _ = build_label_store(self.val_samples, self.val_clicks, self._val_label_init,
                                                        VAL_LABELS)

    def run_labels(self):
        """The :class:`~irfoundry.engine.label_stores.RunLabels` of this run (``None`` without a label store)."""
        from irfoundry.engine.label_stores import RunLabels

        if self.label_store is None:
            return None
        return RunLabels(self.label_store, self.train_pool, self.val_label_store)

    def _build_attributes(self) -> None:
        from irfoundry.data.labels import attributes_of

        tables = {k: dict(v) for k, v in self._attributes_request(self.train_samples, self.val_samples).items()}
        attributes_of([*self.train_samples, *self.val_samples], tables)
        self.attributes = tables
        self.train_set.attributes = tables

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit"):
            return
        if self._label_store_requested and self.label_store is None:
            self._build_label_stores()
        if self._attributes_request is not None and self.attributes is None:
            self._build_attributes()
        if not self._feature_requests or self.stores:
            return
        from irfoundry.foundation.cache import FeatureCache

        for req in self._feature_requests:
            if self.trainer is not None:  # build where training will run (Lightning moves the module later)
                req.model.to(self.trainer.strategy.root_device)
            samples = [*self.train_samples, *(self.val_samples if req.include_val else [])]
            cache = FeatureCache(req.model, samples, root=req.root).build(progress=True)
            log.info("feature cache %s: %s", req.name, cache.stats)
            self.stores[req.name] = cache
        alignment = math.lcm(*(c.alignment for c in self.stores.values()))
        if self.cfg.crop_size % alignment:
            log.warning(
                "data.crop_size %d is not a multiple of the feature stride %d: cached cells overhang the crop "
                "(see irfoundry.data.store)", self.cfg.crop_size, alignment,
            )
        self.transform = replace(self.transform, snap=min(alignment, self.cfg.crop_size))
        self.train_set.transform = self.transform
        self.train_set.crop_stores = dict(self.stores)

    def summary(self) -> dict:
        return {
            "root": str(self.cfg.root) if not self.cfg.mix else [e["root"] for e in self.cfg.mix],
            "train_split": self.cfg.train_split,
            "n_train": len(self.train_samples),
            "n_val": len(self.val_samples),
            "val_source": self.val_source,
            **self.labels.describe(),
            "norm": {"mean": self.norm["mean"], "std": self.norm["std"]},
        }

    def replicas(self) -> tuple[int, int]:
        """``(world_size, global_rank)`` of the attached trainer; ``(1, 0)`` when used without one."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    @property
    def _pad_collate(self):
        return partial(pad_collate, multiple=self.multiple, policy=self.padding)

    def train_dataloader(self) -> DataLoader:
        world, rank = self.replicas()
        sampler = EpochSeededSampler(self.train_set, self.cfg.seed, num_replicas=world, rank=rank, pool=self.train_pool)
        if len(sampler) == 0:
            raise DataError("the training pool is empty: no training image to draw crops from (with PAL: no image "
                            "got its initial contour masks; check the clicks)")
        return ResumableLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            collate_fn=collate,
            drop_last=len(sampler) > self.batch_size,
        )

    @property
    def has_val(self) -> bool:
        return len(self.val_samples) > 0

    def _sharded(self, dataset: IRSTDDataset | None, batch_size: int | None = None) -> DataLoader:
        world, rank = self.replicas()
        return DataLoader(
            CountedDataset(dataset),
            batch_size=batch_size or self.eval_batch_size,
            sampler=EvalShardSampler(len(dataset) if dataset else 0, num_replicas=world, rank=rank),
            num_workers=self.cfg.num_workers,
            collate_fn=self._pad_collate,
            generator=_own_generator(),
        )

    def val_dataloader(self) -> DataLoader:
        """Full validation images; under DDP a shard per process (:class:`EvalShardSampler`), batches
        carry ``counted`` flags."""
        return self._sharded(self.val_set)

    def _val_labels_source(self):
        """Targets of the validation crops / images a method trains on: the validation label store, else the
        configured labels (clicks under point supervision, else the masks)."""
        from irfoundry.data.labels import StoreLabels

        if self.val_label_store is not None:
            return StoreLabels(self.val_label_store)
        return self.val_clicks

    def _crops(self, samples, labels, seed: int, split: str, pool: TrainingPool | None = None,
               stores: dict | None = None) -> DataLoader:
        crops = IRSTDDataset(samples, transform=self.transform, norm=self.norm, seed=seed, split=split, labels=labels,
                             attributes=self.attributes, crop_stores=stores)
        world, rank = self.replicas()
        sampler = EpochSeededSampler(crops, seed, num_replicas=world, rank=rank, pool=pool)
        return DataLoader(crops, batch_size=self.batch_size, sampler=sampler, num_workers=self.cfg.num_workers,
                          collate_fn=collate, drop_last=len(sampler) > self.batch_size, generator=_own_generator())

    def named_loader(self, name: str) -> DataLoader:
        """``train_full``, ``train_crops``, ``val_crops`` or ``val_full`` (see the module docstring); the
        sampler's ``set_epoch`` selects the epoch of the seeded crops."""
        if name == "train_full":
            full = IRSTDDataset(self.train_samples, norm=self.norm, split=self.cfg.train_split,
                                labels=self.train_set.labels, crop_stores=self.stores, attributes=self.attributes)
            # per-image features of images of different sizes are not padded: one image per batch then
            return self._sharded(full, 1 if self.stores else None)
        if name == "train_crops":
            return self._crops(self.train_samples, self.train_set.labels, self.cfg.seed + 2, self.cfg.train_split,
                               self.train_pool, self.stores)
        if name not in ("val_crops", "val_full"):
            raise ConfigError(f"unknown loader {name!r}; the engine offers {', '.join(LOADER_NAMES)}")
        if not self.has_val:
            raise ConfigError(f"the method reads validation images ({name}) but the run has no validation split "
                              "(data.val_split: none); give one")
        names = {r.name for r in self._feature_requests if r.include_val}
        with_val = {k: v for k, v in self.stores.items() if k in names}
        if name == "val_full":  # per-image features of images of different sizes: one image per batch then
            full = IRSTDDataset(self.val_samples, norm=self.norm, split="val", labels=self._val_labels_source(),
                                attributes=self.attributes, crop_stores=with_val)
            return self._sharded(full, 1 if with_val else None)
        return self._crops(self.val_samples, self._val_labels_source(), self.cfg.seed + 1, "val", stores=with_val)


def derived_points_kind(points: str | None) -> tuple[str, int] | None:
    """``(kind, seed)`` of ``data.points: derive:centroid`` / ``derive:coarse[:SEED]``, else ``None`` (a file)."""
    if not points or not points.startswith("derive:"):
        return None
    parts = points.split(":")
    ok = len(parts) in (2, 3) and parts[1] in ("centroid", "coarse") and (len(parts) == 2 or parts[2].isdigit())
    if not ok or (parts[1] == "centroid" and len(parts) == 3):
        raise ConfigError(f"data.points = {points!r}: write derive:centroid or derive:coarse[:SEED] (or a file's path)")
    return parts[1], int(parts[2]) if len(parts) == 3 else 0


def derive_point_labels(samples, kind: str, seed: int) -> PointLabels:
    """Clicks derived from the masks of ``samples`` as ``irfoundry data points`` derives them (LESPS' rules,
    per-image seeded draws): the simulated point supervision of the field's papers, without a file."""
    from irfoundry.data.point_files import derive_point_table

    table, counts = derive_point_table(samples, kind, seed)
    log.info("derived %s clicks from the masks: %d targets in %d images", kind, counts["targets"], counts["images"])
    return PointLabels(table, source=f"derive:{kind}" + (f":{seed}" if kind == "coarse" else ""))


def _own_generator() -> torch.Generator:
    """A loader's own generator: starting its iterator then draws nothing from torch's global one (whose
    state a resumed run restores; see :mod:`irfoundry.engine.resume_state`)."""
    return torch.Generator().manual_seed(0)


def eval_loader(spec: DatasetSpec | str, norm: dict, batch_size: int = 1, num_workers: int = 0, *,
                multiple: int = DEFAULT_INPUT_MULTIPLE, padding: str = "multiple") -> DataLoader:
    """Full-image loader of any split for evaluation (native resolution, padded by the inference path)."""
    spec = DatasetSpec.parse(spec)
    ds = IRSTDDataset(spec.resolve(), norm=norm, split=spec.split)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=partial(pad_collate, multiple=multiple, policy=padding))
