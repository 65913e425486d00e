"""Label sources: what a dataset serves as the training target of each image.

A label source turns a sample into a float map ``H x W`` in [0, 1] at the image's size (binary labels
stay exactly 0 / 1):

* :class:`MaskLabels` -- the ground-truth mask file (full supervision, and every evaluation split);
* :class:`PointLabels` -- one click per target from a point-label file (:mod:`irfoundry.data.point_files`);
  the initial target is the clicked pixels, masks are never read, so a dataset of images + points
  without masks can train;
* :class:`StoreLabels` -- a per-image store (:class:`~irfoundry.data.store.PerImageStore`, one channel at
  stride 1), e.g. pseudo-masks that label evolution rewrites during training.

``IRSTDDataset`` puts the map in every item as ``target``; only a :class:`MaskLabels` source (``ground_truth
= True``) also names it ``mask``, the key metrics read. So a point-supervised training batch carries no
ground truth at all, and target-forced crops can only aim at the label the run trains on.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

import numpy as np

from irfoundry.data.io import WarnOnce, read_mask
from irfoundry.data.layouts import Sample
from irfoundry.data.point_files import PointTable, read_points
from irfoundry.data.points import points_to_mask
from irfoundry.errors import DataError

__all__ = ["LabelSource", "MaskLabels", "PointLabels", "StoreLabels"]


class LabelSource(Protocol):
    """``load(sample, shape) -> float32 H x W`` in [0, 1]; ``ground_truth``: whether it is the true mask."""

    ground_truth: bool

    def check(self, samples: Sequence[Sample]) -> None:
        """Raise :class:`DataError` naming every sample this source cannot label (before training)."""

    def load(self, sample: Sample, shape: tuple[int, int]) -> np.ndarray:
        """The target of ``sample`` whose image is ``shape = (H, W)``."""

    def describe(self) -> dict:
        """JSON-able description for the run's ``data.json``."""


class MaskLabels:
    """Ground-truth masks read from the samples' mask files (binarised; see :func:`irfoundry.data.read_mask`)."""

    ground_truth = True

    def __init__(self) -> None:
        self._warn = WarnOnce()

    def check(self, samples: Sequence[Sample]) -> None:
        missing = [s.id for s in samples if s.mask is None]
        if missing:
            raise DataError(f"{len(missing)} image(s) have no mask file (e.g. {missing[:5]}); masks are needed here. "
                            "Train on clicks with data.labels: points, or add the masks.")

    def load(self, sample: Sample, shape: tuple[int, int]) -> np.ndarray:
        if sample.mask is None:
            raise DataError(f"sample {sample.id!r} ({sample.image}) has no mask; this dataset needs labelled samples.")
        return read_mask(sample.mask, image_shape=shape, warn=self._warn).astype(np.float32)

    def describe(self) -> dict:
        return {"labels": "mask"}


class PointLabels:
    """Targets drawn from clicks: 1 on every clicked pixel, 0 elsewhere (the initial mask of point supervision).

    Args:
        points: ``{id: [(y, x), ...]}`` or the path of a point-label file (CSV / JSON).
        source: the file the points came from, for messages and ``describe()``.
    """

    ground_truth = False

    def __init__(self, points: PointTable | str, *, source: str | None = None) -> None:
        if isinstance(points, str):
            source = source or points
            points = read_points(points)
        self.points: PointTable = {str(k): [(int(y), int(x)) for y, x in v] for k, v in points.items()}
        self.source = source or "points"

    def check(self, samples: Sequence[Sample]) -> None:
        missing = [s.id for s in samples if s.id not in self.points]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) of the split have no entry in {self.source} (e.g. {missing[:5]}); list every "
                "image (a JSON file can give a target-free image as [])"
            )

    def load(self, sample: Sample, shape: tuple[int, int]) -> np.ndarray:
        pts = self.points.get(sample.id)
        if pts is None:
            raise DataError(f"image {sample.id!r} has no entry in {self.source}")
        try:
            return points_to_mask(pts, shape).astype(np.float32)
        except DataError as exc:
            raise DataError(f"{self.source}, image {sample.id!r} ({sample.image}): {exc}") from exc

    def describe(self) -> dict:
        return {"labels": "points", "points": self.source, "n_points": sum(len(v) for v in self.points.values())}


class StoreLabels:
    """Targets read from a one-channel, stride-1 per-image store (pseudo-labels that evolve in training)."""

    ground_truth = False

    def __init__(self, store) -> None:
        if [tuple(lv) for lv in store.levels] != [(1, 1)]:
            raise DataError(f"a label store needs one level of 1 channel at stride 1, got {store.levels}")
        self.store = store

    def check(self, samples: Sequence[Sample]) -> None:
        for s in samples:
            self.store.index_of(s.id)

    def load(self, sample: Sample, shape: tuple[int, int]) -> np.ndarray:
        target = self.store.full(sample.id)[0][0].numpy()
        if target.shape != tuple(shape):
            raise DataError(f"label store {self.store.name}: image {sample.id!r} is {tuple(shape)} but its label is "
                            f"{target.shape}")
        return np.ascontiguousarray(target, dtype=np.float32)

    def describe(self) -> dict:
        return {"labels": "store", "store": self.store.name}


def attributes_of(samples: Sequence[Sample], tables: Mapping[str, Mapping[str, object]]) -> None:
    """Raise :class:`DataError` unless every per-image attribute table holds every sample's id."""
    for name, table in tables.items():
        missing = [s.id for s in samples if s.id not in table]
        if missing:
            raise DataError(f"per-image attribute {name!r} has no value for {len(missing)} image(s), e.g. {missing[:5]}")
