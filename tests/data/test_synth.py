"""irfoundry.data.synth: determinism, SIRST v1 layout of the output, target statistics."""

from __future__ import annotations

import numpy as np
import pytest

from irfoundry.data.layouts import DatasetSpec, detect_layout
from irfoundry.data.points import label_components
from irfoundry.data.synth import synth_sample, write_synthetic_dataset
from irfoundry.errors import DataError


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_byte_identical_other_seed_differs(tmp_path):
    a = _files(write_synthetic_dataset(tmp_path / "a", n=10, size=48, seed=1))
    b = _files(write_synthetic_dataset(tmp_path / "b", n=10, size=48, seed=1))
    c = _files(write_synthetic_dataset(tmp_path / "c", n=10, size=48, seed=2))
    assert a == b
    assert a["images/Misc_1.png"] != c["images/Misc_1.png"]


def test_output_is_sirst_v1_with_60_20_20_splits(tmp_path):
    root = write_synthetic_dataset(tmp_path / "s", n=10, size=48, seed=0)
    assert (root / "images" / "Misc_10.png").is_file() and (root / "masks" / "Misc_10_pixels0.png").is_file()
    assert detect_layout(root).name == "sirst_v1"
    sizes = {s: len(DatasetSpec(root, s).resolve()) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 6, "val": 2, "test": 2, "trainval": 8}
    ids = [i for s in ("train", "val", "test") for i in DatasetSpec(root, s).ids()]
    assert sorted(ids) == sorted(f"Misc_{i}" for i in range(1, 11))
    from PIL import Image

    img = Image.open(root / "images" / "Misc_1.png")
    mask = np.asarray(Image.open(root / "masks" / "Misc_1_pixels0.png"))
    assert img.mode == "L" and set(np.unique(mask)) <= {0, 255} and mask.shape == (img.height, img.width)


def test_scene_statistics():
    empty, areas, sides = 0, [], []
    for i in range(60):
        img, mask, targets = synth_sample(np.random.default_rng([0, i]), size=64)
        assert img.dtype == np.uint8 and mask.shape == img.shape
        sides += list(img.shape)
        labels, n = label_components(mask)
        empty += n == 0
        assert n == len(targets)
        areas += np.bincount(labels.ravel())[1:].tolist()
    assert 40 <= min(sides) and max(sides) <= 80
    assert 1 <= empty <= 15  # about 10 % background-only
    assert min(areas) >= 1 and max(areas) <= 80 and np.median(areas) < 30


def test_bad_arguments(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        write_synthetic_dataset(tmp_path / "full", n=5)
    with pytest.raises(DataError, match="n >= 3"):
        write_synthetic_dataset(tmp_path / "o", n=2)
