"""irfoundry.data.io: every image kind becomes one float channel; masks, size policy, corrupt files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from helpers_data import write_png
from irfoundry.data.io import DataWarning, WarnOnce, binarise, read_image, read_image_info, read_mask
from irfoundry.errors import DataError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)


def _pil_l(arr: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).convert("L"), dtype=np.float32) / 255


def test_grey_png(tmp_path):
    arr = RGB[..., 0]
    out = read_image(write_png(tmp_path / "g.png", arr))
    assert out.dtype == np.float32 and out.shape == (9, 11)
    np.testing.assert_allclose(out, arr / 255.0, atol=1e-7)


@pytest.mark.parametrize("ext", ["png", "bmp", "tif"])
def test_rgb_becomes_pil_luminance(tmp_path, ext):
    p = tmp_path / f"c.{ext}"
    Image.fromarray(RGB).save(p)
    out = read_image(p)
    assert out.shape == (9, 11)
    np.testing.assert_array_equal(out, _pil_l(RGB))
    # ITU-R 601 weights, within Pillow's 8-bit rounding
    np.testing.assert_allclose(out, RGB @ np.array([0.299, 0.587, 0.114]) / 255, atol=1 / 255)


def test_jpeg_reads_grey(tmp_path):
    p = tmp_path / "c.jpg"
    Image.fromarray(RGB).save(p, quality=95)
    out = read_image(p)
    assert out.shape == (9, 11) and 0 <= out.min() and out.max() <= 1


def test_rgba_drops_alpha(tmp_path):
    rgba = np.dstack([RGB, np.zeros((9, 11), np.uint8)])  # fully transparent: alpha must be ignored
    out = read_image(write_png(tmp_path / "a.png", rgba))
    np.testing.assert_array_equal(out, _pil_l(RGB))


def test_grey_alpha(tmp_path):
    la = Image.merge("LA", [Image.fromarray(RGB[..., 1]), Image.fromarray(RGB[..., 2])])
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), RGB[..., 1] / np.float32(255))


@pytest.mark.parametrize("transparency", [None, 3])
def test_palette_goes_through_rgb(tmp_path, transparency):
    pal = Image.fromarray(RGB).quantize(colors=16)
    kw = {} if transparency is None else {"transparency": transparency}
    pal.save(tmp_path / "p.png", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out, _pil_l(np.asarray(pal.convert("RGB"))))


def test_16bit_scaled_by_65535(tmp_path):
    arr = np.array([[0, 1000, 65535], [30000, 2, 40000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    np.testing.assert_allclose(out, arr / 65535.0, rtol=1e-6)


def test_tifffile_16bit_rgb_and_float(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rgb16 = (RGB.astype(np.uint16) * 257)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    out = read_image(tmp_path / "rgb16.tif")
    assert out.shape == (9, 11)
    np.testing.assert_allclose(out, RGB @ np.array([0.299, 0.587, 0.114]) / 255, atol=1e-5)
    f = (RGB[..., 0] / 255.0).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", f)
    np.testing.assert_allclose(read_image(tmp_path / "f.tif"), f, atol=1e-7)
    tifffile.imwrite(tmp_path / "bad.tif", f * 10)
    with pytest.raises(DataError, match="bad.tif"):
        read_image(tmp_path / "bad.tif")


@pytest.mark.parametrize(
    "content",
    [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, None],
    ids=["garbage", "header", "truncated"],
)
def test_corrupt_raises_dataerror_naming_file(tmp_path, content):
    p = tmp_path / "broken.png"
    if content is None:
        write_png(p, RGB)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    else:
        p.write_bytes(content)
    with pytest.raises(DataError, match="broken.png"):
        read_image(p)
    with pytest.raises(DataError, match="broken.png"):
        read_image_info(p)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_binarise():
    m, ok = binarise(np.array([[0, 255], [0, 0]]))
    assert ok and m.tolist() == [[False, True], [False, False]]
    m, ok = binarise(np.array([[0, 1], [1, 0]]))
    assert ok and m.sum() == 2
    m, ok = binarise(np.array([[0, 100], [200, 255]]))
    assert not ok and m.tolist() == [[False, False], [True, True]]


def test_read_mask_binary_and_nonbinary_warns_once(tmp_path):
    write_png(tmp_path / "b.png", np.array([[0, 255], [0, 0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_mask(tmp_path / "b.png").sum() == 1
    write_png(tmp_path / "n1.png", np.array([[0, 100], [200, 255]]))
    write_png(tmp_path / "n2.png", np.array([[0, 10], [250, 255]]))
    once = WarnOnce()
    with pytest.warns(DataWarning, match="n1.png") as rec:
        m1 = read_mask(tmp_path / "n1.png", warn=once)
        m2 = read_mask(tmp_path / "n2.png", warn=once)
    assert len([w for w in rec if issubclass(w.category, DataWarning)]) == 1
    assert m1.tolist() == [[False, False], [True, True]] and m2.sum() == 2


def test_mask_same_aspect_rescaled_with_warning(tmp_path):
    big = np.zeros((40, 60), np.uint8)
    big[10:20, 30:40] = 255
    write_png(tmp_path / "m_pixels0.png", big)
    with pytest.warns(DataWarning, match="m_pixels0.png"):
        m = read_mask(tmp_path / "m_pixels0.png", image_shape=(20, 30))
    assert m.shape == (20, 30) and m[5:10, 15:20].all() and m.sum() == 25


def test_mask_other_aspect_refused_naming_sizes(tmp_path):
    write_png(tmp_path / "m.png", np.zeros((40, 40), np.uint8))
    with pytest.raises(DataError, match=r"m.png.*40x40.*30x20"):
        read_mask(tmp_path / "m.png", image_shape=(20, 30))


@pytest.mark.realdata
def test_real_sirst_every_image_one_channel(real_data):
    sirst = real_data / "sirst"
    paths = sorted((sirst / "images").glob("*.png"))
    assert len(paths) == 427
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quirky files (Misc_23 interlaced, Misc_73 bytes after IEND) load silently
        for p in paths:
            img = read_image(p)
            assert img.ndim == 2 and img.dtype == np.float32, p
            assert 0.0 <= img.min() and img.max() <= 1.0, p
    assert read_image_info(sirst / "images" / "Misc_23.png").size == (150, 200)


@pytest.mark.realdata
def test_real_sirst_misc111_mask_rescaled(real_data):
    img = read_image(real_data / "sirst" / "images" / "Misc_111.png")
    with pytest.warns(DataWarning, match="Misc_111_pixels0.png"):
        mask = read_mask(real_data / "sirst" / "masks" / "Misc_111_pixels0.png", image_shape=img.shape)
    assert mask.shape == (220, 325) and mask.any()
