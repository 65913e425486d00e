"""Paired image/mask transforms (numpy, seeded) and native-resolution padding for evaluation.

Training: :class:`TrainTransform` = random crop (padding small images) -> flips / rot90 / transpose ->
intensity jitter (image only). Every random choice comes from the ``numpy.random.Generator`` passed in,
so a seeded generator reproduces the exact crop. Arrays are ``image float32 H x W in [0, 1]`` and
``mask bool H x W``.

Evaluation: networks run at native resolution; ``pad_to_multiple(x, 32)`` pads bottom/right and
``crop_to(y, (h, w))`` removes the padding from the output. Nothing is resized.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from irfoundry.errors import ConfigError

PAD_MODES = ("zero", "reflect")
_EIGHT = np.ones((3, 3), dtype=bool)


def _check_pair(image: np.ndarray, mask: np.ndarray) -> None:
    if image.ndim != 2 or image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must both be H x W of the same size")


def pad_pair(
    image: np.ndarray, mask: np.ndarray, size: tuple[int, int], rng: np.random.Generator, *, mode: str = "zero"
) -> tuple[np.ndarray, np.ndarray]:
    """Pad image and mask to at least ``size = (h, w)``, splitting the padding randomly before/after.

    ``mode="zero"`` pads the image with 0 and the mask with False; ``"reflect"`` mirrors both (mirrored
    targets stay labelled, so image and mask agree).
    """
    if mode not in PAD_MODES:
        raise ConfigError(f"pad mode {mode!r} is not one of {PAD_MODES}.")
    h, w = image.shape
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph == 0 and pw == 0:
        return image, mask
    top = int(rng.integers(0, ph + 1))
    left = int(rng.integers(0, pw + 1))
    widths = ((top, ph - top), (left, pw - left))
    if mode == "zero":
        return np.pad(image, widths), np.pad(mask, widths)
    return np.pad(image, widths, mode="reflect" if min(h, w) > 1 else "edge"), np.pad(
        mask, widths, mode="reflect" if min(h, w) > 1 else "edge"
    )


def random_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: int | tuple[int, int],
    rng: np.random.Generator,
    *,
    pad_mode: str = "zero",
    target_prob: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Random ``size`` crop of an image and its mask (padding first when the image is smaller).

    Args:
        size: crop ``(h, w)`` or one int for a square.
        target_prob: probability that the crop is forced to contain a target: a connected component is
            picked uniformly, then one of its pixels, then a window containing that pixel. Images without
            targets get a uniform crop.

    Returns:
        ``(image, mask)`` of shape ``size``.
    """
    _check_pair(image, mask)
    ch, cw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    image, mask = pad_pair(image, mask, (ch, cw), rng, mode=pad_mode)
    h, w = image.shape
    force = target_prob > 0 and rng.random() < target_prob and mask.any()
    if force:
        labels, n = ndimage.label(mask, structure=_EIGHT)
        comp = int(rng.integers(1, n + 1))
        ys, xs = np.nonzero(labels == comp)
        k = int(rng.integers(0, ys.size))
        py, px = int(ys[k]), int(xs[k])
        y0 = int(rng.integers(max(0, py - ch + 1), min(py, h - ch) + 1))
        x0 = int(rng.integers(max(0, px - cw + 1), min(px, w - cw) + 1))
    else:
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
    return image[y0 : y0 + ch, x0 : x0 + cw], mask[y0 : y0 + ch, x0 : x0 + cw]


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
    if rng.random() < hflip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < vflip:
        image, mask = image[::-1], mask[::-1]
    if rot90:
        k = int(rng.integers(0, 4))
        image, mask = np.rot90(image, k), np.rot90(mask, k)
    if rng.random() < transpose:
        image, mask = image.T, mask.T
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


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

    Call ``t(image, mask, rng) -> (image, mask)`` with ``image float32 H x W``, ``mask bool H x W``;
    the output is ``crop_size x crop_size``.

    Attributes:
        crop_size: side of the square crop (256 in BasicIRSTD / DNANet protocols).
        pad_mode: ``"zero"`` or ``"reflect"`` for images smaller than the crop.
        target_prob: probability of a crop forced to contain a target.
        hflip, vflip, transpose: probabilities; ``rot90`` enables random quarter turns.
        jitter: :class:`IntensityJitter` or ``None``.
    """

    crop_size: int = 256
    pad_mode: str = "zero"
    target_prob: float = 0.5
    hflip: float = 0.5
    vflip: float = 0.5
    rot90: bool = True
    transpose: float = 0.5
    jitter: IntensityJitter | None = IntensityJitter()

    def __post_init__(self) -> None:
        if self.pad_mode not in PAD_MODES:
            raise ConfigError(f"TrainTransform.pad_mode {self.pad_mode!r} is not one of {PAD_MODES}.")
        if self.crop_size < 1:
            raise ConfigError(f"TrainTransform.crop_size must be positive, got {self.crop_size}.")
        for name in ("target_prob", "hflip", "vflip", "transpose"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"TrainTransform.{name} must be a probability in [0, 1], got {v}.")

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, mask = random_crop(
            image, mask, self.crop_size, rng, pad_mode=self.pad_mode, target_prob=self.target_prob
        )
        image, mask = random_flip_rot(
            image, mask, rng, hflip=self.hflip, vflip=self.vflip, rot90=self.rot90, transpose=self.transpose
        )
        if self.jitter is not None:
            image = self.jitter(image, rng)
        return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask, dtype=bool)


def pad_to_multiple(x, multiple: int = 32, *, mode: str = "zero", value: float = 0.0):
    """Pad the last two dims (H, W) at the bottom/right up to multiples of ``multiple``.

    Args:
        x: numpy array or torch tensor ``... x H x W``.
        mode: ``"zero"`` (constant ``value``) or ``"reflect"``.

    Returns:
        ``(padded, (h, w))``: same type, ``... x H' x W'``, and the original size for :func:`crop_to`.
    """
    if mode not in PAD_MODES:
        raise ConfigError(f"pad mode {mode!r} is not one of {PAD_MODES}.")
    if multiple < 1:
        raise ConfigError(f"pad multiple must be positive, got {multiple}.")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    if isinstance(x, torch.Tensor):
        if mode == "zero":
            return F.pad(x, (0, pw, 0, ph), value=value), (h, w)
        shape = x.shape
        flat = x.reshape(-1, 1, h, w)
        if ph >= h or pw >= w:  # torch reflect needs pad < size: fall back to repeated numpy reflect
            out = torch.from_numpy(np.pad(flat.cpu().numpy(), ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect"))
            out = out.to(x.device)
        else:
            out = F.pad(flat, (0, pw, 0, ph), mode="reflect")
        return out.reshape(*shape[:-2], h + ph, w + pw), (h, w)
    widths = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    if mode == "zero":
        return np.pad(x, widths, constant_values=value), (h, w)
    return np.pad(x, widths, mode="reflect"), (h, w)


def crop_to(y, size: tuple[int, int]):
    """Crop the last two dims of an array or tensor to ``size = (h, w)`` (top-left), undoing
    :func:`pad_to_multiple`."""
    h, w = int(size[0]), int(size[1])
    if y.shape[-2] < h or y.shape[-1] < w:
        raise ValueError(f"cannot crop a {tuple(y.shape[-2:])} map to {h}x{w}: it is smaller")
    return y[..., :h, :w]
