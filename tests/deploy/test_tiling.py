"""Tiled inference: tile placement, exactness for a host without global context, blending arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irfoundry.bench.tiling import mosaic
from irfoundry.data.io import read_image
from irfoundry.deploy.tiling import TileSettings, tile_starts, tiled_probabilities
from irfoundry.engine.inference import Predictor
from irfoundry.errors import ConfigError


@pytest.mark.parametrize("length,tile,overlap", [(1024, 512, 64), (1280, 512, 64), (1056, 256, 32), (544, 512, 32),
                                                 (2048, 256, 0), (96, 256, 64)])
def test_tiles_cover_the_canvas_on_the_grid_with_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap, 32)
    assert starts[0] == 0 and all(s % 32 == 0 for s in starts)
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap
    # the fewest tiles: one fewer could not cover the canvas with that overlap
    n = len(starts)
    assert (n - 1) * (tile - overlap) + overlap < length


def test_settings_are_aligned_and_checked():
    assert TileSettings(500, 40).aligned(32) == (480, 64)
    with pytest.raises(ConfigError, match="input multiple 32"):
        TileSettings(64, 64).aligned(32)
    with pytest.raises(ConfigError, match="blend 'feather'"):
        TileSettings(blend="feather")


def _pointwise_predictor() -> Predictor:
    """A per-pixel network (logit = 3 x): any tiling must reproduce its whole-frame map."""
    return Predictor(lambda x: 3.0 * x, norm={"mean": 0.5, "std": 0.25}, multiple=32)


@pytest.mark.parametrize("blend", ["crop", "linear"])
def test_blending_reproduces_a_pointwise_network_exactly(blend):
    image = np.random.default_rng(0).random((333, 517)).astype(np.float32)
    p = _pointwise_predictor()
    tiled = tiled_probabilities(p, image, TileSettings(128, 32, blend, batch=5))
    assert tiled.shape == image.shape and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, p.predict(image), rtol=0, atol=1e-6 if blend == "linear" else 0)


def test_a_frame_that_fits_one_tile_is_one_whole_frame_pass(unet_weights):
    predictor, _ = Predictor.from_checkpoint(unet_weights)
    image = np.random.default_rng(1).random((200, 250)).astype(np.float32)
    assert np.array_equal(tiled_probabilities(predictor, image, TileSettings(256, 64)), predictor.predict(image))


def _check_exact(predictor, frame):
    whole = predictor.predict(frame)
    # unet_tiny's receptive field reaches 110 px (measured: the support of the gradient of an output pixel);
    # with overlap 256 every kept pixel is >= 128 px from a cut edge
    tiled = tiled_probabilities(predictor, frame, TileSettings(512, 256, "crop", batch=4))
    assert tiled.shape == frame.shape == (1024, 1280)
    assert float(np.abs(tiled - whole).max()) < 1e-5
    # a small overlap is not exact, but blends without a seam worth the name
    loose = tiled_probabilities(predictor, frame, TileSettings(512, 64, "linear", batch=4))
    assert float(np.abs(loose - whole).max()) < 0.05


@pytest.mark.slow
def test_tiled_equals_whole_frame_for_a_local_host_on_a_synthetic_mosaic(unet_weights, tiny_synth):
    torch.manual_seed(0)
    predictor, _ = Predictor.from_checkpoint(unet_weights)
    frame = mosaic([read_image(p) for p in sorted((tiny_synth / "images").glob("*.png"))])
    _check_exact(predictor, frame)


@pytest.mark.slow
@pytest.mark.realdata
def test_tiled_equals_whole_frame_on_a_1280x1024_frame_of_real_sirst_images(unet_weights, shared_data):
    predictor, _ = Predictor.from_checkpoint(unet_weights)
    frame = mosaic([read_image(p) for p in sorted((shared_data / "sirst" / "images").glob("*.png"))[:30]])
    _check_exact(predictor, frame)
