"""LightningDataModule: train / val / test datasets from a :class:`DataConfig`.

* train: the configured training split with paired random transforms, seeded per (seed, epoch, index)
  so that a resumed run sees exactly the crops an uninterrupted one would;
* val: the dataset's own ``val`` split when it has one, else a seeded carve-out from train
  (never the test split);
* test: the configured test split, full images at native resolution.

Normalisation statistics come from the training images only and are stored with the run.
Evaluation batches are padded to a multiple of 32 by :func:`pad_collate` and cropped back by the
metric / predictor using ``batch["size"]``.

Multi-process (DDP) runs: the Trainer is built with ``use_distributed_sampler=False`` and the loaders
shard themselves from ``trainer.world_size`` / ``trainer.global_rank``. Lightning's default would wrap the
validation loader in a ``DistributedSampler`` that pads the split with repeated images up to a multiple
of the world size, so those images would be counted twice in the summed metric counters. Here

* training (:class:`EpochSeededSampler`): every process draws the same ``(seed, epoch)`` permutation and
  takes a disjoint strided shard of it (padded by wrap-around to equal length, as ``DistributedSampler``
  does for training);
* validation (:class:`EvalShardSampler`): every image is *counted* exactly once over all processes;
  shards are padded to equal length with images marked ``counted=False``, which the metric skips, so all
  processes run the same number of validation steps.

With one process both reduce to the single-process behaviour (same order, every image counted once).

Foundation feature cache: :meth:`IRSTDDataModule.use_prior_cache` (called by ``train`` for methods whose
:meth:`~irfoundry.methods.Method.prior_cache` asks for one) builds a
:class:`~irfoundry.foundation.cache.FeatureCache` of the training images in :meth:`setup`, i.e. once per
process after DDP is initialised (a disk cache is then built once, in shards, by all ranks), snaps the
training crops to its stride and attaches ``batch["prior"]`` to training batches.
"""

from __future__ import annotations

import logging
from typing import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from irfoundry.data import (
    DatasetSpec,
    IntensityJitter,
    IRSTDDataset,
    TrainTransform,
    compute_norm_stats,
    train_val_samples,
)
from irfoundry.engine.config import DataConfig
from irfoundry.models.base import INPUT_MULTIPLE

log = logging.getLogger(__name__)


def pad_collate(items: Sequence[dict], multiple: int = INPUT_MULTIPLE) -> dict:
    """Stack evaluation items of any sizes: zero-pad (bottom/right) to the largest size rounded up to
    ``multiple``. ``size`` keeps each native ``(H, W)`` so outputs can be cropped back exactly."""
    h = max(it["image"].shape[-2] for it in items)
    w = max(it["image"].shape[-1] for it in items)
    H, W = -(-h // multiple) * multiple, -(-w // multiple) * multiple

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, W - t.shape[-1], 0, H - t.shape[-2]))

    batch = {
        "image": torch.stack([pad(it["image"]) for it in items]),
        "mask": torch.stack([pad(it["mask"]) for it in items]),
        "size": [tuple(it["image"].shape[-2:]) for it in items],
        "id": [it["id"] for it in items],
    }
    if "counted" in items[0]:  # items from a sharded validation loader (see EvalShardSampler)
        batch["counted"] = [bool(it["counted"]) for it in items]
    return batch


def train_collate(items: Sequence[dict]) -> dict:
    return {
        "image": torch.stack([it["image"] for it in items]),
        "mask": torch.stack([it["mask"] for it in items]),
        "id": [it["id"] for it in items],
    }


class EpochSeededSampler(Sampler[int]):
    """Random order that depends only on ``(seed, epoch)``; ``set_epoch`` also selects the dataset's
    augmentation epoch (items draw from ``default_rng([seed, epoch, index])``).

    Lightning calls ``set_epoch`` before every training epoch (also after ``--resume``), so a resumed run
    sees exactly the batches and crops an uninterrupted one would.

    With ``num_replicas > 1`` (DDP) every process draws the same permutation, extends it by wrap-around
    to a multiple of ``num_replicas`` (so all processes run the same number of steps; at most
    ``num_replicas - 1`` images are seen twice per epoch) and takes positions ``rank, rank + W, ...``.
    ``num_replicas=1`` yields the permutation itself.
    """

    def __init__(self, dataset: IRSTDDataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        _check_rank(num_replicas, rank)
        self.dataset = dataset
        self.seed = int(seed)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.num_replicas)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.dataset), generator=g).tolist()
        if self.num_replicas == 1:
            return iter(order)
        total = len(self) * self.num_replicas
        order = [order[i % len(order)] for i in range(total)]
        return iter(order[self.rank :: self.num_replicas])


class EvalShardSampler(Sampler[tuple[int, bool]]):
    """Shard of an evaluation set in which every image is counted exactly once over all processes.

    Yields ``(index, counted)`` keys for :class:`CountedDataset`: process ``rank`` gets images
    ``rank, rank + W, ...`` with ``counted=True``, then repeats of its own first image with
    ``counted=False`` until every process has ``ceil(n / W)`` items. Equal lengths keep the processes in
    step (DDP synchronises module buffers on the first forward after training; a rank with fewer batches
    would leave the others waiting), and the flag keeps the repeats out of the metric.
    """

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0) -> None:
        _check_rank(num_replicas, rank)
        self.n, self.num_replicas, self.rank = int(n), int(num_replicas), int(rank)

    def __len__(self) -> int:
        return -(-self.n // self.num_replicas) if self.n else 0

    def __iter__(self):
        own = list(range(self.rank, self.n, self.num_replicas))
        fill = own[0] if own else 0  # a rank past the end of a tiny split re-reads image 0, uncounted
        keys = [(i, True) for i in own] + [(fill, False)] * (len(self) - len(own))
        return iter(keys)


class CountedDataset(Dataset):
    """Wraps an evaluation dataset for :class:`EvalShardSampler`: ``ds[(index, counted)]`` is
    ``ds.dataset[index]`` plus the ``counted`` flag."""

    def __init__(self, dataset: IRSTDDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, bool]) -> dict:
        index, counted = key
        return {**self.dataset[index], "counted": bool(counted)}


def _check_rank(num_replicas: int, rank: int) -> None:
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")


class IRSTDDataModule(L.LightningDataModule):
    def __init__(self, cfg: DataConfig, batch_size: int, eval_batch_size: int = 1, norm: dict | None = None):
        super().__init__()
        self.cfg = cfg
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        train, val, source = train_val_samples(
            DatasetSpec(cfg.root, cfg.train_split),
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
            val_split=cfg.val_split or "val",
        )
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
            train, transform=self.transform, norm=self.norm, seed=cfg.seed, split=cfg.train_split
        )
        self.val_set = IRSTDDataset(val, norm=self.norm, split="val") if val else None
        self._prior_request: tuple | None = None
        #: the foundation feature cache, once :meth:`setup` built it
        self.prior_cache = None

    def use_prior_cache(self, model, root: str | None = None) -> None:
        """Serve ``model``'s features of the un-augmented training images as ``batch["prior"]``, computed
        once in :meth:`setup` (in memory, or memory-mapped under ``root``), cut and turned per crop."""
        self._prior_request = (model, root)

    def setup(self, stage: str | None = None) -> None:
        if self._prior_request is None or self.prior_cache is not None or stage not in (None, "fit"):
            return
        from dataclasses import replace

        from irfoundry.foundation.cache import FeatureCache

        model, root = self._prior_request
        if self.trainer is not None:  # build where training will run (Lightning moves the module later)
            model.to(self.trainer.strategy.root_device)
        self.prior_cache = FeatureCache(model, self.train_samples, root=root).build(progress=False)
        log.info("foundation feature cache: %s", self.prior_cache.stats)
        if self.cfg.crop_size % self.prior_cache.alignment:
            log.warning(
                "data.crop_size %d is not a multiple of the foundation stride %d: cached prior cells overhang "
                "the crop (see irfoundry.foundation.cache)", self.cfg.crop_size, self.prior_cache.alignment,
            )
        self.transform = replace(self.transform, snap=min(self.prior_cache.alignment, self.cfg.crop_size))
        self.train_set.transform = self.transform

    def summary(self) -> dict:
        return {
            "root": str(self.cfg.root),
            "train_split": self.cfg.train_split,
            "n_train": len(self.train_samples),
            "n_val": len(self.val_samples),
            "val_source": self.val_source,
            "norm": {"mean": self.norm["mean"], "std": self.norm["std"]},
        }

    def replicas(self) -> tuple[int, int]:
        """``(world_size, global_rank)`` of the attached trainer; ``(1, 0)`` when used without one."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> DataLoader:
        world, rank = self.replicas()
        sampler = EpochSeededSampler(self.train_set, self.cfg.seed, num_replicas=world, rank=rank)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            collate_fn=self._train_collate(),
            drop_last=len(sampler) > self.batch_size,
        )

    def _train_collate(self):
        if self.prior_cache is None:
            return train_collate
        from irfoundry.foundation.cache import PriorCollate

        return PriorCollate(self.prior_cache, train_collate)

    @property
    def has_val(self) -> bool:
        return len(self.val_samples) > 0

    def val_dataloader(self) -> DataLoader:
        """Full validation images; under DDP a shard per process (:class:`EvalShardSampler`), batches
        carry ``counted`` flags."""
        world, rank = self.replicas()
        return DataLoader(
            CountedDataset(self.val_set),
            batch_size=self.eval_batch_size,
            sampler=EvalShardSampler(len(self.val_set) if self.val_set else 0, num_replicas=world, rank=rank),
            num_workers=self.cfg.num_workers,
            collate_fn=pad_collate,
        )


def eval_loader(spec: DatasetSpec | str, norm: dict, batch_size: int = 1, num_workers: int = 0) -> DataLoader:
    """Full-image loader of any split for evaluation (native resolution, padded by :func:`pad_collate`)."""
    spec = DatasetSpec.parse(spec)
    ds = IRSTDDataset(spec.resolve(), norm=norm, split=spec.split)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=pad_collate)
