"""Paired image/mask transforms (numpy, seeded) and native-resolution padding for evaluation.

Training: :class:`TrainTransform` = random crop (padding small images) -> flips / rot90 / transpose ->
intensity jitter (image only). Every random choice comes from the ``numpy.random.Generator`` passed in,
so a seeded generator reproduces the exact crop. Arrays are ``image float32 H x W in [0, 1]`` and the
target ``H x W``: a bool mask, or a float map in [0, 1] (soft pseudo-labels, point labels), whose dtype the
transforms keep (a binary float map stays exactly binary: crops, flips and zero / reflect padding only move
values). Crops forced onto targets pick a component of ``target > 0.5`` (of the mask itself when it is
bool): the label the run trains on, never hidden ground truth.

Geometry: ``TrainTransform.with_geometry`` also returns a :class:`CropGeometry` (crop box in the original
image's pixel coordinates, flips, quarter turns, transpose), which ``IRSTDDataset`` puts in each training
item as ``item["geometry"]`` (an int64 tensor of 8 values) so that per-image data computed once (the
foundation feature cache, ``irfoundry.foundation.cache``) can be cut and turned exactly like the crop.
``TrainTransform(snap=s)`` draws crop origins that are multiples of ``s`` in the original image (so a
feature map of stride ``s`` can be sliced at whole cells); ``snap=1`` (default) is the historical
behaviour, bit for bit.

Evaluation images are not transformed: the inference path (:mod:`irfoundry.engine.inference`) pads them to
the model's input multiple and crops the output back. Nothing is resized.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from irfoundry.errors import ConfigError

PAD_MODES = ("zero", "reflect")
_EIGHT = np.ones((3, 3), dtype=bool)


def _check_pair(image: np.ndarray, mask: np.ndarray) -> None:
    if image.ndim != 2 or image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must both be H x W of the same size")


def target_pixels(target: np.ndarray) -> np.ndarray:
    """The pixels a target-forced crop may aim at: the mask itself, or ``target > 0.5`` for float maps."""
    return target if target.dtype == bool else target > 0.5


def pad_pair(
    image: np.ndarray, mask: np.ndarray, size: tuple[int, int], rng: np.random.Generator, *, mode: str = "zero"
) -> tuple[np.ndarray, np.ndarray]:
    """Pad image and mask to at least ``size = (h, w)``, splitting the padding randomly before/after.

    ``mode="zero"`` pads the image with 0 and the mask with False; ``"reflect"`` mirrors both (mirrored
    targets stay labelled, so image and mask agree).
    """
    image, mask, _ = _pad_pair(image, mask, size, rng, mode=mode)
    return image, mask


def _pad_pair(
    image: np.ndarray, mask: np.ndarray, size: tuple[int, int], rng: np.random.Generator, *, mode: str = "zero"
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """:func:`pad_pair` that also returns the padding added before the image, ``(top, left)``."""
    if mode not in PAD_MODES:
        raise ConfigError(f"pad mode {mode!r} is not one of {PAD_MODES}.")
    h, w = image.shape
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph == 0 and pw == 0:
        return image, mask, (0, 0)
    top = int(rng.integers(0, ph + 1))
    left = int(rng.integers(0, pw + 1))
    widths = ((top, ph - top), (left, pw - left))
    image, mask = _pad_widths(image, mask, widths, mode)
    return image, mask, (top, left)


def random_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: int | tuple[int, int],
    rng: np.random.Generator,
    *,
    pad_mode: str = "zero",
    target_prob: float = 0.0,
    snap: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Random ``size`` crop of an image and its mask (padding first when the image is smaller).

    Args:
        size: crop ``(h, w)`` or one int for a square.
        target_prob: probability that the crop is forced to contain a target: a connected component is
            picked uniformly, then one of its pixels, then a window containing that pixel. Images without
            targets get a uniform crop.
        snap: crop origins (in the original image) are multiples of ``snap``; see :func:`snapped_origins`.
            ``1`` is the historical behaviour (same random draws, same crops).

    Returns:
        ``(image, mask)`` of shape ``size``.
    """
    image, mask, _ = _random_crop(image, mask, size, rng, pad_mode=pad_mode, target_prob=target_prob, snap=snap)
    return image, mask


def snapped_origins(n: int, c: int, snap: int) -> tuple[int, int]:
    """Smallest and largest crop origin on one axis when origins must be multiples of ``snap``.

    A crop of ``c`` pixels over an axis of ``n`` pixels starts at ``o`` (original-image coordinates;
    negative = padding before the image). With ``snap = s`` the origins are ``lo, lo + s, ..., hi`` with

    * ``n >= c``: ``lo = 0``, ``hi = s * ceil((n - c) / s)``: the last crop may overhang the far edge by
      fewer than ``s`` pixels (filled with the pad mode), so that every pixel can still be seen;
    * ``n < c``: ``lo = -s * floor((c - n) / s)``, ``hi = 0``: the whole image lies inside the crop, placed
      at an offset that is a multiple of ``s``.

    ``snap = 1`` gives the unsnapped ranges ``[0, n - c]`` and ``[-(c - n), 0]``.
    """
    if n >= c:
        return 0, snap * (-(-(n - c) // snap))
    return -snap * ((c - n) // snap), 0


def _pad_widths(image: np.ndarray, mask: np.ndarray, widths, mode: str) -> tuple[np.ndarray, np.ndarray]:
    if mode == "zero":
        return np.pad(image, widths), np.pad(mask, widths)
    how = "reflect" if min(image.shape) > 1 else "edge"
    return np.pad(image, widths, mode=how), np.pad(mask, widths, mode=how)


def _random_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: int | tuple[int, int],
    rng: np.random.Generator,
    *,
    pad_mode: str = "zero",
    target_prob: float = 0.0,
    snap: int = 1,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """:func:`random_crop` that also returns the crop origin ``(top, left)`` in the ORIGINAL image
    (negative where the crop starts in the padding). ``snap == 1`` keeps the historical draw order."""
    _check_pair(image, mask)
    ch, cw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if snap < 1 or snap > min(ch, cw):
        raise ConfigError(f"crop snap must lie in [1, crop size {min(ch, cw)}], got {snap}.")
    if snap == 1:
        image, mask, (pad_top, pad_left) = _pad_pair(image, mask, (ch, cw), rng, mode=pad_mode)
        h, w = image.shape
        anchor = target_pixels(mask)
        force = target_prob > 0 and rng.random() < target_prob and anchor.any()
        if force:
            labels, n = ndimage.label(anchor, structure=_EIGHT)
            comp = int(rng.integers(1, n + 1))
            ys, xs = np.nonzero(labels == comp)
            k = int(rng.integers(0, ys.size))
            py, px = int(ys[k]), int(xs[k])
            y0 = int(rng.integers(max(0, py - ch + 1), min(py, h - ch) + 1))
            x0 = int(rng.integers(max(0, px - cw + 1), min(px, w - cw) + 1))
        else:
            y0 = int(rng.integers(0, h - ch + 1))
            x0 = int(rng.integers(0, w - cw + 1))
        return image[y0 : y0 + ch, x0 : x0 + cw], mask[y0 : y0 + ch, x0 : x0 + cw], (y0 - pad_top, x0 - pad_left)
    if pad_mode not in PAD_MODES:
        raise ConfigError(f"pad mode {pad_mode!r} is not one of {PAD_MODES}.")
    h, w = image.shape
    (ylo, yhi), (xlo, xhi) = snapped_origins(h, ch, snap), snapped_origins(w, cw, snap)
    anchor = target_pixels(mask)
    force = target_prob > 0 and rng.random() < target_prob and anchor.any()
    if force:
        labels, n = ndimage.label(anchor, structure=_EIGHT)
        comp = int(rng.integers(1, n + 1))
        ys, xs = np.nonzero(labels == comp)
        k = int(rng.integers(0, ys.size))
        py, px = int(ys[k]), int(xs[k])
        # multiples of snap (offset from lo) in [max(lo, p - c + 1), min(p, hi)]; never empty for c >= snap
        top = ylo + snap * int(rng.integers(-(-(max(ylo, py - ch + 1) - ylo) // snap), (min(py, yhi) - ylo) // snap + 1))
        left = xlo + snap * int(rng.integers(-(-(max(xlo, px - cw + 1) - xlo) // snap), (min(px, xhi) - xlo) // snap + 1))
    else:
        top = ylo + snap * int(rng.integers(0, (yhi - ylo) // snap + 1))
        left = xlo + snap * int(rng.integers(0, (xhi - xlo) // snap + 1))
    widths = ((max(0, -top), max(0, top + ch - h)), (max(0, -left), max(0, left + cw - w)))
    if any(a or b for a, b in widths):
        image, mask = _pad_widths(image, mask, widths, pad_mode)
    y0, x0 = top + widths[0][0], left + widths[1][0]
    return image[y0 : y0 + ch, x0 : x0 + cw], mask[y0 : y0 + ch, x0 : x0 + cw], (top, left)


def random_flip_rot(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    hflip: float = 0.5,
    vflip: float = 0.5,
    rot90: bool = True,
    transpose: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal/vertical flips with the given probabilities, a random multiple of 90 degrees
    (``rot90=True``) and a transpose with probability ``transpose``; the same op on image and mask.

    Rotations and the transpose swap H and W of non-square inputs.
    """
    _check_pair(image, mask)
    ops = _draw_flip_rot(rng, hflip=hflip, vflip=vflip, rot90=rot90, transpose=transpose)
    return np.ascontiguousarray(apply_flip_rot(image, *ops)), np.ascontiguousarray(apply_flip_rot(mask, *ops))


def _draw_flip_rot(
    rng: np.random.Generator, *, hflip: float, vflip: float, rot90: bool, transpose: float
) -> tuple[bool, bool, int, bool]:
    """The random choices of :func:`random_flip_rot`, in its draw order: ``(hflip, vflip, k, transpose)``."""
    h = bool(rng.random() < hflip)
    v = bool(rng.random() < vflip)
    k = int(rng.integers(0, 4)) if rot90 else 0
    t = bool(rng.random() < transpose)
    return h, v, k, t


def apply_flip_rot(x, hflip: bool = False, vflip: bool = False, k: int = 0, transpose: bool = False):
    """Apply, in this order, a horizontal flip, a vertical flip, ``k`` counter-clockwise quarter turns
    (``np.rot90``) and a transpose to the last two dims of a numpy array or torch tensor ``... x H x W``.

    This is the operation :func:`random_flip_rot` draws; numpy inputs give (possibly non-contiguous) views.
    """
    if isinstance(x, torch.Tensor):
        if hflip:
            x = x.flip(-1)
        if vflip:
            x = x.flip(-2)
        if k % 4:
            x = torch.rot90(x, k % 4, dims=(-2, -1))
        return x.transpose(-2, -1) if transpose else x
    if hflip:
        x = x[..., :, ::-1]
    if vflip:
        x = x[..., ::-1, :]
    if k % 4:
        x = np.rot90(x, k % 4, axes=(-2, -1))
    return np.swapaxes(x, -2, -1) if transpose else x


GEOMETRY_FIELDS = ("top", "left", "height", "width", "hflip", "vflip", "rot90", "transpose")
"""Order of the 8 integers of ``CropGeometry.to_tensor()`` (``item["geometry"]`` of training items)."""


@dataclass(frozen=True)
class CropGeometry:
    """What :class:`TrainTransform` did to one image, enough to repeat it on any per-image map.

    Attributes:
        top, left: the crop's first row / column in ORIGINAL image pixels (negative: the crop starts in the
            padding added before the image; with ``snap = s`` both are multiples of ``s``).
        height, width: crop size in pixels, before the quarter turns / transpose.
        hflip, vflip: flips applied to the crop; rot90: counter-clockwise quarter turns ``k`` in [0, 3];
        transpose: a final transpose. Order: crop -> hflip -> vflip -> rot90 -> transpose
        (:func:`apply_flip_rot`).

    The crop box covers original pixels rows ``[top, top + height)`` and columns ``[left, left + width)``;
    pixels outside the image are padding (pad mode of the transform). Intensity jitter is not recorded.
    """

    top: int
    left: int
    height: int
    width: int
    hflip: bool = False
    vflip: bool = False
    rot90: int = 0
    transpose: bool = False

    def to_tensor(self) -> torch.Tensor:
        """``int64`` tensor of shape ``(8,)`` in :data:`GEOMETRY_FIELDS` order (collates to ``N x 8``)."""
        return torch.tensor([int(getattr(self, f)) for f in GEOMETRY_FIELDS], dtype=torch.int64)

    @classmethod
    def from_tensor(cls, t) -> "CropGeometry":
        """Inverse of :meth:`to_tensor` (accepts a tensor, array or sequence of 8 integers)."""
        v = [int(x) for x in (t.tolist() if hasattr(t, "tolist") else t)]
        if len(v) != len(GEOMETRY_FIELDS):
            raise ValueError(f"a crop geometry has {len(GEOMETRY_FIELDS)} values {GEOMETRY_FIELDS}, got {len(v)}")
        return cls(v[0], v[1], v[2], v[3], bool(v[4]), bool(v[5]), v[6] % 4, bool(v[7]))

    @property
    def output_size(self) -> tuple[int, int]:
        """``(H, W)`` of the transformed crop (quarter turns and transpose may swap the crop's sides)."""
        swap = (self.rot90 % 2 == 1) != self.transpose
        return (self.width, self.height) if swap else (self.height, self.width)

    def apply_ops(self, x):
        """The flips / quarter turns / transpose of this geometry on the last two dims of ``x``."""
        return apply_flip_rot(x, self.hflip, self.vflip, self.rot90, self.transpose)


@dataclass(frozen=True)
class IntensityJitter:
    """Random photometric change of the image only: ``clip(gain * x ** gamma + bias + noise, 0, 1)``.

    Attributes:
        p: probability of applying the jitter at all.
        gain, bias, gamma: ``(low, high)`` ranges sampled uniformly (gamma log-uniformly).
        noise_std: ``(low, high)`` range of the std of additive Gaussian noise (in [0, 1] units).
    """

    p: float = 0.5
    gain: tuple[float, float] = (0.8, 1.2)
    bias: tuple[float, float] = (-0.05, 0.05)
    gamma: tuple[float, float] = (0.8, 1.25)
    noise_std: tuple[float, float] = (0.0, 0.02)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``float32 H x W`` in [0, 1] -> same shape in [0, 1]."""
        if rng.random() >= self.p:
            return image
        gain = rng.uniform(*self.gain)
        bias = rng.uniform(*self.bias)
        gamma = float(np.exp(rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1]))))
        std = rng.uniform(*self.noise_std)
        out = gain * np.power(np.clip(image, 0.0, 1.0), gamma) + bias
        if std > 0:
            out = out + rng.normal(0.0, std, size=image.shape)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class TrainTransform:
    """The default training transform: crop -> flips/rotations -> intensity jitter.

    Call ``t(image, target, rng) -> (image, target)`` with ``image float32 H x W`` and ``target H x W`` (bool
    mask or float map in [0, 1], dtype kept); the output is ``crop_size x crop_size``. ``t.with_geometry(image, mask, rng)`` returns the same pair
    plus the :class:`CropGeometry` it applied.

    Attributes:
        crop_size: side of the square crop (256 in BasicIRSTD / DNANet protocols).
        pad_mode: ``"zero"`` or ``"reflect"`` for images smaller than the crop.
        target_prob: probability of a crop forced to contain a target (a pixel of ``target > 0.5``).
        hflip, vflip, transpose: probabilities; ``rot90`` enables random quarter turns.
        jitter: :class:`IntensityJitter` or ``None``.
        snap: crop origins in the original image are multiples of ``snap`` (use the feature stride of a
            cached foundation model, ``FeatureCache.alignment``); ``1`` = unsnapped, the historical crops.
            See :func:`snapped_origins` for the ranges (a snapped crop may overhang the far edge by fewer
            than ``snap`` pixels, padded with ``pad_mode``).
    """

    crop_size: int = 256
    pad_mode: str = "zero"
    target_prob: float = 0.5
    hflip: float = 0.5
    vflip: float = 0.5
    rot90: bool = True
    transpose: float = 0.5
    jitter: IntensityJitter | None = IntensityJitter()
    snap: int = 1

    def __post_init__(self) -> None:
        if self.pad_mode not in PAD_MODES:
            raise ConfigError(f"TrainTransform.pad_mode {self.pad_mode!r} is not one of {PAD_MODES}.")
        if self.crop_size < 1:
            raise ConfigError(f"TrainTransform.crop_size must be positive, got {self.crop_size}.")
        for name in ("target_prob", "hflip", "vflip", "transpose"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"TrainTransform.{name} must be a probability in [0, 1], got {v}.")
        if not 1 <= self.snap <= self.crop_size:
            raise ConfigError(
                f"TrainTransform.snap must lie in [1, crop_size={self.crop_size}], got {self.snap}; "
                "use 1, or the feature cache's alignment (its largest feature stride)."
            )

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, mask, _ = self.with_geometry(image, mask, rng)
        return image, mask

    def with_geometry(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, CropGeometry]:
        """``(image, mask, geometry)``: the output of ``t(image, mask, rng)`` and what was done to get it."""
        image, mask, (top, left) = _random_crop(
            image, mask, self.crop_size, rng, pad_mode=self.pad_mode, target_prob=self.target_prob, snap=self.snap
        )
        _check_pair(image, mask)
        ops = _draw_flip_rot(rng, hflip=self.hflip, vflip=self.vflip, rot90=self.rot90, transpose=self.transpose)
        image, mask = np.ascontiguousarray(apply_flip_rot(image, *ops)), np.ascontiguousarray(apply_flip_rot(mask, *ops))
        if self.jitter is not None:
            image = self.jitter(image, rng)
        geometry = CropGeometry(top, left, self.crop_size, self.crop_size, *ops)
        return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask), geometry
