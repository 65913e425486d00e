"""Datasets: image/mask reading, layout detection, a torch Dataset with label sources (masks, points,
per-image stores), per-image stores, one collate, transforms, point labels, a synthetic generator and a
dataset checker.

Quick tour::

    from irfoundry.data import DatasetSpec, IRSTDDataset, TrainTransform, compute_norm_stats

    spec = DatasetSpec.parse("/data/sirst:train")       # PATH, PATH:SPLIT or PATH:/path/split.txt
    samples = spec.resolve()                             # [Sample(id, image, mask), ...]
    stats = compute_norm_stats(samples)                  # train pixels only
    ds = IRSTDDataset(samples, transform=TrainTransform(crop_size=256), norm=stats, seed=0)
"""

from irfoundry.data.check import CheckReport, Problem, check_dataset
from irfoundry.data.collate import collate
from irfoundry.data.dataset import (
    IRSTDDataset,
    compute_norm_stats,
    load_norm_stats,
    save_norm_stats,
    split_train_val,
    train_val_samples,
)
from irfoundry.data.io import IMAGE_EXTENSIONS, DataWarning, WarnOnce, binarise, read_image, read_mask
from irfoundry.data.labels import LabelSource, MaskLabels, PointLabels, StoreLabels
from irfoundry.data.layouts import DatasetSpec, Layout, Sample, detect_layout, read_split_file
from irfoundry.data.point_files import read_points, write_points
from irfoundry.data.points import centroid_points, coarse_points, derive_points, label_components, points_to_mask
from irfoundry.data.store import PerImageStore
from irfoundry.data.synth import synth_sample, write_synthetic_dataset
from irfoundry.data.transforms import (
    IntensityJitter,
    TrainTransform,
    random_crop,
    random_flip_rot,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "CheckReport",
    "DataWarning",
    "DatasetSpec",
    "IRSTDDataset",
    "IntensityJitter",
    "LabelSource",
    "Layout",
    "MaskLabels",
    "PerImageStore",
    "PointLabels",
    "Problem",
    "Sample",
    "StoreLabels",
    "TrainTransform",
    "WarnOnce",
    "binarise",
    "centroid_points",
    "coarse_points",
    "derive_points",
    "check_dataset",
    "collate",
    "compute_norm_stats",
    "detect_layout",
    "label_components",
    "load_norm_stats",
    "points_to_mask",
    "random_crop",
    "random_flip_rot",
    "read_image",
    "read_mask",
    "read_points",
    "read_split_file",
    "save_norm_stats",
    "split_train_val",
    "synth_sample",
    "train_val_samples",
    "write_points",
    "write_synthetic_dataset",
]
