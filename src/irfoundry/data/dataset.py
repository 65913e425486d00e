"""A torch ``Dataset`` over resolved samples, train/val carving and normalisation statistics.

Typical use::

    from irfoundry.data import DatasetSpec, IRSTDDataset, TrainTransform, compute_norm_stats, train_val_samples

    train, val, how = train_val_samples(DatasetSpec.parse("/data/nudt_sirst:train"), val_fraction=0.1, seed=0)
    stats = compute_norm_stats(train)                 # TRAIN pixels only; save with save_norm_stats
    ds = IRSTDDataset(train, norm=stats, transform=TrainTransform(crop_size=256), seed=0)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from irfoundry.data.io import read_image
from irfoundry.data.labels import LabelSource, MaskLabels, attributes_of
from irfoundry.data.layouts import DatasetSpec, Sample
from irfoundry.data.transforms import CropGeometry
from irfoundry.errors import DataError

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], "tuple[np.ndarray, np.ndarray]"]
"""``transform(image float32 HxW, target float32 HxW, rng) -> (image, target)`` (see ``data.transforms``)."""

NORM_STATS_VERSION = 1


class IRSTDDataset(Dataset):
    """Images and their targets of a list of samples as tensors.

    Each item is a dict::

        {"image":  float32 1 x H x W (normalised: (x - mean) / std, x in [0, 1]),
         "target": float32 1 x H x W in [0, 1]: what the run trains on (``labels``; binary masks stay 0 / 1),
         "id": str, "size": (H0, W0) size of the file before the transform, "index": int}

    plus ``"mask"`` (the same tensor as ``target``) when the label source is the ground truth
    (:class:`~irfoundry.data.labels.MaskLabels`, the default), so that metrics never read a pseudo-label
    as ground truth and a point-supervised item carries no ground truth;
    ``"geometry"``: int64 tensor ``(8,)`` (``CropGeometry.to_tensor()``: crop box in original pixels, flips,
    quarter turns, transpose) when the transform has a ``with_geometry`` method
    (:class:`~irfoundry.data.transforms.TrainTransform` does), or the identity geometry of the whole image
    when there are ``crop_stores`` and no transform;
    one entry per ``crop_stores`` name: that store's maps under the item's crop (a list over levels);
    one entry per ``attributes`` name: that table's value for the item's id (e.g. a cluster id).

    Args:
        samples: resolved samples (``DatasetSpec.resolve()``), or a spec / spec string to resolve.
        transform: paired transform ``(image, target, rng) -> (image, target)`` applied before normalisation,
            or ``None`` (evaluation: native size; the inference path pads, ``irfoundry.engine.inference``).
        norm: ``{"mean": float, "std": float}`` (from :func:`compute_norm_stats`), or ``None`` for no
            normalisation.
        seed: ``None`` draws transform randomness from torch's generator (seeded per DataLoader worker by
            torch); an int makes item ``i`` of epoch ``e`` use ``default_rng([seed, e, i])`` whatever the
            worker count (call :meth:`set_epoch`; with ``persistent_workers`` the workers keep their epoch).
        split: name of the split the samples come from (informational; :func:`compute_norm_stats` refuses
            test splits).
        labels: the label source (:mod:`irfoundry.data.labels`); default: the ground-truth masks.
        attributes: per-image attribute tables ``{name: {id: value}}``; every id must be present.
        crop_stores: per-image stores served per crop (:class:`~irfoundry.data.store.PerImageStore`, or a
            :class:`~irfoundry.foundation.cache.FeatureCache`): ``{name: store}``.

    Works with multi-process ``DataLoader`` workers (the object is picklable; files are opened per item).
    The non-binary-mask warning is emitted once per dataset object (once per worker with workers).
    """

    def __init__(
        self,
        samples: Sequence[Sample] | DatasetSpec | str,
        *,
        transform: Transform | None = None,
        norm: Mapping[str, float] | None = None,
        seed: int | None = None,
        split: str | None = None,
        labels: LabelSource | None = None,
        attributes: Mapping[str, Mapping[str, object]] | None = None,
        crop_stores: Mapping[str, object] | None = None,
    ) -> None:
        if isinstance(samples, (str, DatasetSpec)):
            spec = DatasetSpec.parse(samples)
            split = split if split is not None else spec.split
            samples = spec.resolve(require_masks=labels is None or labels.ground_truth)
        self.samples = list(samples)
        if not self.samples:
            raise DataError("IRSTDDataset got no samples; check the split (it resolved to an empty list).")
        self.transform = transform
        self.norm = _check_norm(norm) if norm is not None else None
        self.seed = seed
        self.split = split
        self.labels: LabelSource = labels if labels is not None else MaskLabels()
        self.attributes = {k: dict(v) for k, v in (attributes or {}).items()}
        attributes_of(self.samples, self.attributes)
        self.crop_stores = dict(crop_stores or {})
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch for seeded transforms (``seed`` not ``None``)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The random generator item ``index`` uses this epoch."""
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**63 - 1, (1,)).item()))
        return np.random.default_rng([int(self.seed), self.epoch, int(index)])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(image float32 HxW in [0, 1], target float32 HxW in [0, 1])`` of item ``index`` (no transform)."""
        s = self.samples[index]
        image = read_image(s.image)
        return image, self.labels.load(s, image.shape)

    def __getitem__(self, index: int) -> dict:
        image, target = self.load(index)
        size = tuple(image.shape)
        geometry = None
        if self.transform is not None:
            with_geometry = getattr(self.transform, "with_geometry", None)
            if with_geometry is not None:
                image, target, geometry = with_geometry(image, target, self.rng(index))
            else:
                image, target = self.transform(image, target, self.rng(index))
        elif self.crop_stores:
            geometry = CropGeometry(0, 0, size[0], size[1])
        image = np.ascontiguousarray(image, dtype=np.float32)
        if self.norm is not None:
            image = (image - np.float32(self.norm["mean"])) / np.float32(self.norm["std"])
        sample_id = self.samples[index].id
        item = {
            "image": torch.from_numpy(image)[None],
            "target": torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))[None],
            "id": sample_id,
            "size": size,
            "index": int(index),
        }
        if self.labels.ground_truth:
            item["mask"] = item["target"]
        if geometry is not None:
            item["geometry"] = geometry.to_tensor()
            for name, store in self.crop_stores.items():
                item[name] = store.lookup(sample_id, geometry)
        for name, table in self.attributes.items():
            item[name] = table[sample_id]
        return item


def split_train_val(ids: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Carve a validation set out of training ids, deterministically.

    The result depends only on the *set* of ids, ``val_fraction`` and ``seed`` (ids are sorted before
    the seeded shuffle), so reordering a split file does not change the carve-out.

    Args:
        ids: training ids (unique).
        val_fraction: in (0, 1); ``round(len * val_fraction)`` ids go to val, at least 1, leaving at least 1.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(train_ids, val_ids)``, each in the order of ``ids``.

    Raises:
        DataError: fewer than 2 ids, or a fraction outside (0, 1).
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must lie in (0, 1), got {val_fraction}; e.g. 0.1 for 10 % of train.")
    ids = list(ids)
    if len(ids) < 2:
        raise DataError(f"cannot carve a validation set from {len(ids)} training id(s); need at least 2.")
    n_val = min(max(1, int(round(len(ids) * val_fraction))), len(ids) - 1)
    order = sorted(set(ids))
    perm = np.random.default_rng(seed).permutation(len(order))
    val = {order[i] for i in perm[:n_val]}
    return [i for i in ids if i not in val], [i for i in ids if i in val]


def train_val_samples(
    spec: DatasetSpec | str, *, val_fraction: float = 0.1, seed: int = 0, val_split: str = "val",
    require_masks: bool = True,
) -> tuple[list[Sample], list[Sample], str]:
    """Training and validation samples for a training split, never touching the test split.

    ``val_split`` selects the validation data:

    * ``"val"`` (default): the layout's ``val`` split next to the training split (SIRST v1
      ``idx_427/val`` for ``train``, ``idx_320/val`` for ``idx_320/train``) when it exists; otherwise
      (NUDT ``50_50``, BasicIRSTD, split files) ``val_fraction`` of the training split is carved off
      with :func:`split_train_val` (seeded, deterministic).
    * another split name or a ``.txt`` split-file path: that split, which must exist.
    * ``"none"``: no validation; every training image is used for training (the BasicIRSTD protocol,
      which trains on all of e.g. NUAA 213 and reports the last epoch).

    ``require_masks=False`` (training on point labels) accepts images without a mask file (``mask=None``).

    Returns:
        ``(train, val, source)`` where ``source`` says where val came from (``"split <file>"`` or
        ``"carved <fraction> seed <seed>"``).

    Raises:
        DataError: no training split named, an explicit val split that does not exist, or train and val
            sharing ids.
    """
    spec = DatasetSpec.parse(spec)
    if spec.split is None:
        raise DataError(f"dataset spec {spec} names no training split; write PATH:train (or PATH:/path/train.txt).")
    train = spec.resolve(require_masks=require_masks)
    if val_split.lower() == "none":
        return train, [], "none"
    layout = spec.layout()
    val_spec: DatasetSpec | None = None
    if val_split != "val" or val_split.lower().endswith(".txt"):
        val_spec = DatasetSpec(spec.root, val_split)  # explicit: must exist (resolve raises otherwise)
    elif not spec.is_split_file:
        group = spec.split.rsplit("/", 1)[0] + "/" if "/" in spec.split else ""
        train_file = layout.splits[spec.split]
        val_file = layout.splits.get(group + val_split)
        if val_file is not None and val_file != train_file and val_file.parent == train_file.parent:
            val_spec = DatasetSpec(spec.root, group + val_split)
    if val_spec is not None:
        val = val_spec.resolve(require_masks=require_masks)
        overlap = {s.id for s in train} & {s.id for s in val}
        if overlap:
            raise DataError(
                f"training split {spec.split} and validation split {val_spec.split} of {spec.root} share ids "
                f"{sorted(overlap)[:5]}; choose disjoint splits."
            )
        return train, val, f"split {val_spec.split_file(layout)}"
    tr_ids, va_ids = split_train_val([s.id for s in train], val_fraction, seed)
    keep_val = set(va_ids)
    return (
        [s for s in train if s.id not in keep_val],
        [s for s in train if s.id in keep_val],
        f"carved {val_fraction} seed {seed}",
    )


def _check_norm(norm: Mapping[str, float], where: str = "norm") -> dict:
    try:
        mean, std = float(norm["mean"]), float(norm["std"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{where} must hold numbers 'mean' and 'std' (from compute_norm_stats); got {norm!r}.") from exc
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise DataError(f"{where} has mean={mean}, std={std}; std must be a positive finite number.")
    return {"mean": mean, "std": std}


def compute_norm_stats(
    data: IRSTDDataset | Iterable[Sample], *, allow_test: bool = False
) -> dict:
    """Mean and standard deviation over all pixels of the given (training) images, in [0, 1] units.

    Every pixel counts once, so larger images weigh more. Images are read raw (no transform).

    Args:
        data: an :class:`IRSTDDataset` or samples of the TRAIN split.
        allow_test: statistics must not come from test data; a dataset whose ``split`` mentions "test"
            is refused unless this is True.

    Returns:
        ``{"mean", "std", "n_images", "n_pixels", "version"}`` (save with :func:`save_norm_stats`).
    """
    split = getattr(data, "split", None)
    if split is not None and "test" in str(split).lower() and not allow_test:
        raise DataError(
            f"normalisation statistics requested on split {split!r}; compute them on the training split only."
        )
    samples = data.samples if isinstance(data, IRSTDDataset) else list(data)
    if not samples:
        raise DataError("compute_norm_stats got no samples.")
    total = 0.0
    total_sq = 0.0
    n = 0
    for s in samples:
        img = read_image(s.image).astype(np.float64)
        total += float(img.sum())
        total_sq += float(np.square(img).sum())
        n += img.size
    mean = total / n
    var = max(total_sq / n - mean * mean, 0.0)
    std = math.sqrt(var)
    if std == 0.0:
        raise DataError("training images are constant (std 0); normalisation statistics are undefined.")
    return {"mean": mean, "std": std, "n_images": len(samples), "n_pixels": n, "version": NORM_STATS_VERSION}


def save_norm_stats(stats: Mapping[str, float], path: str | Path) -> Path:
    """Write statistics as JSON (next to a run's checkpoints). Returns the path."""
    _check_norm(stats)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(stats), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def load_norm_stats(path: str | Path) -> dict:
    """Read statistics written by :func:`save_norm_stats`.

    Returns:
        The stored dict; ``mean`` and ``std`` are validated floats.

    Raises:
        DataError: missing file, bad JSON, or missing/invalid ``mean`` / ``std`` (names the file).
    """
    path = Path(path)
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(
            f"normalisation statistics file {path} does not exist; compute it with compute_norm_stats."
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read normalisation statistics file {path}: {exc}.") from exc
    if not isinstance(stats, dict):
        raise DataError(f"normalisation statistics file {path} must hold a JSON object with 'mean' and 'std'.")
    stats.update(_check_norm(stats, where=f"normalisation statistics file {path}"))
    return stats
