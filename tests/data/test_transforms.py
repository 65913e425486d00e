"""irfoundry.data.transforms: image/mask stay aligned, seeding, target crops, pad/crop round trip."""

from __future__ import annotations

import numpy as np
import pytest

from irfoundry.data.transforms import (
    IntensityJitter,
    TrainTransform,
    random_crop,
    random_flip_rot,
)
from irfoundry.errors import ConfigError


def _pair(shape=(23, 31), seed=0):
    """Image whose bright pixels ARE the mask, with a unique gradient so any misalignment shows."""
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.05
    mask[3, 4] = True
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = (0.3 * (yy * shape[1] + xx) / mask.size).astype(np.float32)  # < 0.3, position-coded
    image[mask] = 0.9
    return image, mask


@pytest.mark.parametrize("pad_mode", ["zero", "reflect"])
@pytest.mark.parametrize("size", [8, 40])  # smaller and larger than the image
def test_train_transform_keeps_alignment(pad_mode, size):
    image, mask = _pair()
    t = TrainTransform(crop_size=size, pad_mode=pad_mode, target_prob=0.5, jitter=None)
    for seed in range(30):
        im, m = t(image, mask, np.random.default_rng(seed))
        assert im.shape == m.shape == (size, size) and im.dtype == np.float32 and m.dtype == bool
        np.testing.assert_array_equal(im > 0.5, m)


def test_flip_rot_is_a_permutation_applied_to_both():
    image, mask = _pair()
    for seed in range(16):
        im, m = random_flip_rot(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(im > 0.5, m)
        assert sorted(im.ravel().tolist()) == sorted(image.ravel().tolist())


def test_seeded_and_varied():
    image, mask = _pair()
    t = TrainTransform(crop_size=12)
    a = t(image, mask, np.random.default_rng(7))
    b = t(image, mask, np.random.default_rng(7))
    c = t(image, mask, np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_target_prob_one_always_contains_a_target():
    image = np.zeros((100, 100), np.float32)
    mask = np.zeros((100, 100), bool)
    mask[90, 5] = True
    for seed in range(50):
        _, m = random_crop(image, mask, 16, np.random.default_rng(seed), target_prob=1.0)
        assert m.any()
    hits = sum(random_crop(image, mask, 16, np.random.default_rng(s), target_prob=0.0)[1].any() for s in range(50))
    assert hits < 10
    # no target: falls back to a uniform crop without error
    out = random_crop(image, np.zeros_like(mask), 16, np.random.default_rng(0), target_prob=1.0)
    assert out[0].shape == (16, 16)


def test_zero_padding_fills_zero():
    image, mask = np.ones((4, 4), np.float32), np.ones((4, 4), bool)
    im, m = random_crop(image, mask, 10, np.random.default_rng(0), pad_mode="zero")
    assert im.sum() == 16 and m.sum() == 16


def test_jitter_image_only_and_in_range():
    image, mask = _pair()
    j = IntensityJitter(p=1.0, noise_std=(0.05, 0.05))
    out = j(image, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and not np.array_equal(out, image)
    t = TrainTransform(crop_size=23, target_prob=0.0, hflip=0, vflip=0, rot90=False, transpose=0, jitter=j)
    _, m = t(image[:, :23], mask[:, :23], np.random.default_rng(0))
    np.testing.assert_array_equal(m, mask[:, :23])  # the mask is never jittered


def test_bad_config():
    with pytest.raises(ConfigError, match="pad_mode"):
        TrainTransform(pad_mode="wrap")
    with pytest.raises(ConfigError, match="hflip"):
        TrainTransform(hflip=2.0)
