"""LightningDataModule: train / val / test datasets from a :class:`DataConfig`.

* train: the configured training split with paired random transforms, seeded per (seed, epoch, index)
  so that a resumed run sees exactly the crops an uninterrupted one would;
* val: the dataset's own ``val`` split when it has one, else a seeded carve-out from train
  (never the test split);
* test: the configured test split, full images at native resolution.

Normalisation statistics come from the training images only and are stored with the run.
Evaluation batches are padded to a multiple of 32 by :func:`pad_collate` and cropped back by the
metric / predictor using ``batch["size"]``.
"""

from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

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


def pad_collate(items: Sequence[dict], multiple: int = INPUT_MULTIPLE) -> dict:
    """Stack evaluation items of any sizes: zero-pad (bottom/right) to the largest size rounded up to
    ``multiple``. ``size`` keeps each native ``(H, W)`` so outputs can be cropped back exactly."""
    h = max(it["image"].shape[-2] for it in items)
    w = max(it["image"].shape[-1] for it in items)
    H, W = -(-h // multiple) * multiple, -(-w // multiple) * multiple

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, W - t.shape[-1], 0, H - t.shape[-2]))

    return {
        "image": torch.stack([pad(it["image"]) for it in items]),
        "mask": torch.stack([pad(it["mask"]) for it in items]),
        "size": [tuple(it["image"].shape[-2:]) for it in items],
        "id": [it["id"] for it in items],
    }


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
    """

    def __init__(self, dataset: IRSTDDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(len(self.dataset), generator=g).tolist())


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

    def summary(self) -> dict:
        return {
            "root": str(self.cfg.root),
            "train_split": self.cfg.train_split,
            "n_train": len(self.train_samples),
            "n_val": len(self.val_samples),
            "val_source": self.val_source,
            "norm": {"mean": self.norm["mean"], "std": self.norm["std"]},
        }

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=EpochSeededSampler(self.train_set, self.cfg.seed),
            num_workers=self.cfg.num_workers,
            collate_fn=train_collate,
            drop_last=len(self.train_set) > self.batch_size,
        )

    @property
    def has_val(self) -> bool:
        return len(self.val_samples) > 0

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set, batch_size=self.eval_batch_size, num_workers=self.cfg.num_workers, collate_fn=pad_collate
        )


def eval_loader(spec: DatasetSpec | str, norm: dict, batch_size: int = 1, num_workers: int = 0) -> DataLoader:
    """Full-image loader of any split for evaluation (native resolution, padded by :func:`pad_collate`)."""
    spec = DatasetSpec.parse(spec)
    ds = IRSTDDataset(spec.resolve(), norm=norm, split=spec.split)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=pad_collate)
