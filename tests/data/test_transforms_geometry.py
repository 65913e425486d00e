"""TrainTransform geometry: the recorded crop box / flips reproduce the crop, snapped origins, collation."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from irfoundry.data.dataset import IRSTDDataset
from irfoundry.data.layouts import Sample
from irfoundry.data.transforms import (
    GEOMETRY_FIELDS,
    CropGeometry,
    TrainTransform,
    apply_flip_rot,
    snapped_origins,
)
from irfoundry.errors import ConfigError

from helpers_data import tiny_sample, write_png


def _pair(shape, seed=0):
    """Position-coded image (every pixel unique) whose bright pixels are the mask."""
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.03
    mask[shape[0] // 2, shape[1] // 3] = True
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = (0.01 + 0.3 * (yy * shape[1] + xx) / mask.size).astype(np.float32)
    image[mask] = 0.9
    return image, mask


def _replay(image: np.ndarray, g: CropGeometry, pad_mode: str) -> np.ndarray:
    """Rebuild the transformed crop from the ORIGINAL image and the recorded geometry alone."""
    h, w = image.shape
    widths = ((max(0, -g.top), max(0, g.top + g.height - h)), (max(0, -g.left), max(0, g.left + g.width - w)))
    padded = np.pad(image, widths) if pad_mode == "zero" else np.pad(image, widths, mode="reflect")
    y0, x0 = g.top + widths[0][0], g.left + widths[1][0]
    return np.ascontiguousarray(g.apply_ops(padded[y0 : y0 + g.height, x0 : x0 + g.width]))


@pytest.mark.parametrize("snap", [1, 4, 7])
@pytest.mark.parametrize("pad_mode", ["zero", "reflect"])
@pytest.mark.parametrize("shape", [(23, 31), (40, 17), (9, 9), (64, 50)])  # smaller, mixed, larger than the crop
def test_geometry_replays_the_crop(shape, pad_mode, snap):
    image, mask = _pair(shape)
    t = TrainTransform(crop_size=28, pad_mode=pad_mode, target_prob=0.5, jitter=None, snap=snap)
    for seed in range(25):
        im, m, g = t.with_geometry(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(_replay(image, g, pad_mode), im)
        np.testing.assert_array_equal(_replay(mask.astype(np.float32), g, pad_mode) > 0.5, m)
        assert g.top % snap == 0 and g.left % snap == 0
        assert (g.height, g.width) == (28, 28) and g.output_size == im.shape
        # the call interface returns exactly the same pair
        a, b = t(image, mask, np.random.default_rng(seed))
        assert np.array_equal(a, im) and np.array_equal(b, m)


def test_snap_one_is_the_historical_crop():
    """snap=1 must not change a single random draw. The digest below was computed with the transform as it
    was before geometry recording existed (same inputs, seeds and settings; jitter off so that only the
    random draws and index operations count)."""
    h = hashlib.sha1()
    rng0 = np.random.default_rng(5)
    for shape in [(23, 31), (70, 40), (5, 90)]:
        img = rng0.random(shape).astype(np.float32)
        m = rng0.random(shape) < 0.03
        for kw in [
            dict(crop_size=32, jitter=None),
            dict(crop_size=48, pad_mode="reflect", target_prob=1.0, jitter=None),
            dict(crop_size=16, target_prob=0.0, jitter=None),
        ]:
            t = TrainTransform(**kw)
            for s in range(10):
                a, b = t(img, m, np.random.default_rng(s))
                h.update(a.tobytes())
                h.update(b.tobytes())
    assert h.hexdigest() == "52e7d88cf658a2cf76dff533d0a60d03dbd001b2"


def test_snapped_origins_ranges_cover_every_pixel():
    assert snapped_origins(100, 32, 1) == (0, 68)
    assert snapped_origins(20, 32, 1) == (-12, 0)
    assert snapped_origins(100, 32, 8) == (0, 72)  # 68 rounded up: the last crop overhangs by 4 px
    assert snapped_origins(20, 32, 8) == (-8, 0)  # floor(12 / 8) * 8: the image stays inside the crop
    assert snapped_origins(32, 32, 8) == (0, 0)
    image, mask = _pair((45, 50))
    seen = np.zeros(image.shape, bool)
    t = TrainTransform(crop_size=16, target_prob=0.0, jitter=None, snap=8, hflip=0, vflip=0, rot90=False, transpose=0)
    for seed in range(300):
        _, _, g = t.with_geometry(image, mask, np.random.default_rng(seed))
        seen[max(g.top, 0) : g.top + 16, max(g.left, 0) : g.left + 16] = True
    assert seen.all()


def test_snapped_target_crops_contain_a_target():
    image = np.zeros((70, 90), np.float32)
    mask = np.zeros((70, 90), bool)
    mask[69, 1] = mask[3, 88] = True
    image[mask] = 1.0
    t = TrainTransform(crop_size=24, target_prob=1.0, jitter=None, snap=8)
    for seed in range(60):
        _, m, g = t.with_geometry(image, mask, np.random.default_rng(seed))
        assert m.any() and g.top % 8 == 0 and g.left % 8 == 0


def test_small_image_stays_whole_inside_a_snapped_crop():
    image, mask = _pair((10, 13))
    t = TrainTransform(crop_size=32, jitter=None, snap=8, hflip=0, vflip=0, rot90=False, transpose=0)
    for seed in range(30):
        im, _, g = t.with_geometry(image, mask, np.random.default_rng(seed))
        assert -g.top + 10 <= 32 and -g.left + 13 <= 32 and g.top <= 0 and g.left <= 0
        assert np.isclose(im.sum(), image.sum())  # zero padding: every pixel once


def test_geometry_tensor_round_trip_and_ops():
    g = CropGeometry(-8, 16, 32, 24, True, False, 3, True)
    t = g.to_tensor()
    assert t.dtype == torch.int64 and t.shape == (len(GEOMETRY_FIELDS),)
    assert CropGeometry.from_tensor(t) == g and CropGeometry.from_tensor(t.tolist()) == g
    assert g.output_size == (32, 24)  # 3 turns swap, the transpose swaps back
    x = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    for h in (0, 1):
        for v in (0, 1):
            for k in range(4):
                for tr in (0, 1):
                    a = apply_flip_rot(x, h, v, k, tr)
                    b = apply_flip_rot(torch.from_numpy(x), h, v, k, tr).numpy()
                    np.testing.assert_array_equal(a, b)
                    ref = x.copy()
                    for c in range(2):  # the 2-d op of random_flip_rot, channel by channel
                        r = ref[c][:, ::-1] if h else ref[c]
                        r = r[::-1] if v else r
                        r = np.rot90(r, k)
                        ref_c = r.T if tr else r
                        np.testing.assert_array_equal(a[c], ref_c)
    with pytest.raises(ValueError):
        CropGeometry.from_tensor([1, 2, 3])


def test_bad_snap_is_a_config_error():
    with pytest.raises(ConfigError, match="snap"):
        TrainTransform(crop_size=16, snap=0)
    with pytest.raises(ConfigError, match="snap"):
        TrainTransform(crop_size=16, snap=17)


def test_dataset_items_carry_geometry_that_collates(tmp_path):
    samples = []
    for i, shape in enumerate([(20, 24), (40, 36), (17, 50)]):
        img, m = tiny_sample(i, shape)
        samples.append(
            Sample(f"s{i}", write_png(tmp_path / f"images/s{i}.png", img), write_png(tmp_path / f"masks/s{i}.png", m))
        )
    ds = IRSTDDataset(samples, transform=TrainTransform(crop_size=16, jitter=None, snap=4), seed=3)
    items = [ds[i] for i in range(3)]
    for it in items:
        g = CropGeometry.from_tensor(it["geometry"])
        raw, _ = ds.load(it["index"])
        np.testing.assert_array_equal(_replay(raw, g, "zero"), it["image"][0].numpy())
    batch = default_collate([{"geometry": it["geometry"]} for it in items])
    assert batch["geometry"].shape == (3, 8)
    # evaluation items (no transform) have no geometry, as before
    assert "geometry" not in IRSTDDataset(samples)[0]
