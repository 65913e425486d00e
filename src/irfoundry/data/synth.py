"""A deterministic synthetic IRSTD dataset in SIRST v1 layout (the project's embedded default data).

``write_synthetic_dataset(out, n=200, size=256, seed=0)`` writes::

    out/images/Misc_<i>.png            8-bit grey, sizes between 0.625 * size and 1.25 * size per side
    out/masks/Misc_<i>_pixels0.png     8-bit 0/255
    out/idx_427/{train,val,test,trainval}.txt   60 / 20 / 20 % (trainval = train + val)
    out/synth.json                     the generator's parameters and version

Scenes: one of three cluttered backgrounds (sky with fractal clouds, sea with horizon and sun-glint
streaks, ground texture), then 0-4 targets (about 10 % of the images are background only), then sensor
effects (Gaussian noise, fixed-pattern column/row stripes, vignetting). A target is an anisotropic
Gaussian point-spread profile (elongation 1-3, random orientation) added to the background; its mask is
the area above half its peak (1-80 px). The same ``(n, size, seed)`` gives byte-identical files on the
same platform (every image draws from ``numpy.random.default_rng([seed, index])``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from irfoundry.errors import DataError

SYNTH_VERSION = 1
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class SynthTarget:
    """Ground-truth parameters of one synthetic target (centre in pixels, sigmas along/across its axis)."""

    y: float
    x: float
    sigma_major: float
    sigma_minor: float
    angle: float
    contrast: float
    area: int


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float, stretch: float = 1.0) -> np.ndarray:
    """Zero-mean, unit-std ``1/f**beta`` power-spectrum noise (``float64 H x W``).

    ``stretch > 1`` compresses vertical frequencies' weight so structures become horizontal streaks.
    """
    h, w = shape
    white = rng.standard_normal((h, w))
    spec = np.fft.rfft2(white)
    fy = np.fft.fftfreq(h)[:, None] * stretch
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    f[0, 0] = np.inf
    field = np.fft.irfft2(spec / f ** (beta / 2.0), s=(h, w))
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _background(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    kind = int(rng.integers(0, 3))
    yy = np.linspace(0.0, 1.0, h)[:, None]
    if kind == 0:  # sky with clouds
        base = rng.uniform(0.2, 0.5) + rng.uniform(-0.12, 0.12) * yy
        clouds = fractal_noise(rng, shape, beta=rng.uniform(2.6, 3.4))
        cover = rng.uniform(-0.5, 1.0)
        bg = base + rng.uniform(0.05, 0.2) * np.maximum(clouds - cover, 0.0)
    elif kind == 1:  # sea with horizon and glint streaks
        horizon = int(rng.integers(0, max(h // 2, 1)))
        sky = rng.uniform(0.25, 0.5) + 0.03 * fractal_noise(rng, shape, beta=3.0)
        sea = rng.uniform(0.15, 0.45) + 0.04 * fractal_noise(rng, shape, beta=2.2, stretch=rng.uniform(3, 8))
        glint_field = fractal_noise(rng, shape, beta=1.2, stretch=rng.uniform(4, 10))
        thr = rng.uniform(1.8, 2.6)
        sea = sea + rng.uniform(0.1, 0.35) * np.clip(glint_field - thr, 0.0, 1.0)
        bg = np.where(np.arange(h)[:, None] < horizon, sky, sea)
    else:  # ground texture
        bg = rng.uniform(0.25, 0.55) + rng.uniform(0.06, 0.15) * fractal_noise(rng, shape, beta=rng.uniform(1.6, 2.4))
        edges = fractal_noise(rng, shape, beta=3.5)
        bg = bg + rng.uniform(0.0, 0.1) * (edges > rng.uniform(-0.5, 0.5))
    return bg


def _add_targets(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, count: int
) -> list[SynthTarget]:
    h, w = image.shape
    targets: list[SynthTarget] = []
    taken: list[tuple[float, float, float]] = []
    for _ in range(count):
        area = float(np.exp(rng.uniform(0.0, math.log(80.0))))
        elong = 1.0 if rng.random() < 0.5 else rng.uniform(1.0, 3.0)
        prod = area / (2.0 * math.pi * _LN2)
        s_major, s_minor = math.sqrt(prod * elong), math.sqrt(prod / elong)
        reach = 3.0 * s_major + 1.0
        margin = reach + 1.0
        if h <= 2 * margin or w <= 2 * margin:
            continue
        for _attempt in range(20):
            cy, cx = rng.uniform(margin, h - margin), rng.uniform(margin, w - margin)
            if all((cy - y) ** 2 + (cx - x) ** 2 > (reach + r + 3.0) ** 2 for y, x, r in taken):
                break
        else:
            continue
        theta = rng.uniform(0.0, math.pi)
        contrast = rng.uniform(0.12, 0.6)
        r = int(math.ceil(reach))
        y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 2, h)
        x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 2, w)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        ca, sa = math.cos(theta), math.sin(theta)
        u, v = dx * ca + dy * sa, -dx * sa + dy * ca
        profile = np.exp(-0.5 * (u * u / s_major**2 + v * v / s_minor**2))
        image[y0:y1, x0:x1] += contrast * profile
        blob = profile > 0.5
        if blob.sum() > 80:
            blob = profile >= np.sort(profile, axis=None)[-80]
        if not blob.any():
            blob = profile >= profile.max()
        mask[y0:y1, x0:x1] |= blob
        taken.append((cy, cx, reach))
        targets.append(SynthTarget(cy, cx, s_major, s_minor, theta, contrast, int(blob.sum())))
    return targets


def _sensor(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    image = image + rng.normal(0.0, rng.uniform(0.004, 0.02), size=(h, w))
    image = image + rng.normal(0.0, rng.uniform(0.0, 0.01), size=(1, w))  # column fixed pattern
    if rng.random() < 0.5:
        image = image + rng.normal(0.0, rng.uniform(0.0, 0.006), size=(h, 1))  # row stripes
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2
    image = image * (1.0 - rng.uniform(0.0, 0.3) * r2 / 2.0)
    return image


def synth_sample(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray, list[SynthTarget]]:
    """One synthetic scene.

    Returns:
        ``(image uint8 H x W, mask bool H x W, targets)``; H and W lie in ``[0.625 size, 1.25 size]``.
    """
    lo, hi = max(int(round(0.625 * size)), 16), max(int(round(1.25 * size)), 16)
    shape = (int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)))
    image = _background(rng, shape)
    mask = np.zeros(shape, dtype=bool)
    count = 0 if rng.random() < 0.1 else int(rng.integers(1, 5))
    targets = _add_targets(rng, image, mask, count)
    image = _sensor(rng, image)
    img8 = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return img8, mask, targets


def write_synthetic_dataset(out: str | Path, *, n: int = 200, size: int = 256, seed: int = 0) -> Path:
    """Write ``n`` synthetic samples in SIRST v1 layout to the folder ``out`` (see module docstring).

    Args:
        out: destination folder; must be absent or empty.
        n: number of images (>= 3 so that train, val and test are non-empty).
        size: nominal image side; actual sides vary in ``[0.625, 1.25] * size``.
        seed: the same seed gives byte-identical files.

    Returns:
        ``out`` as a Path.

    Raises:
        DataError: ``out`` is a non-empty folder or a file, or ``n`` / ``size`` is out of range.
    """
    out = Path(out)
    if n < 3:
        raise DataError(f"synthetic dataset needs n >= 3 images (train/val/test non-empty), got n={n}.")
    if size < 32:
        raise DataError(f"synthetic image size must be >= 32, got {size}.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder {out} exists and is not empty; choose a new or empty folder.")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    (out / "idx_427").mkdir(exist_ok=True)
    ids = [f"Misc_{i}" for i in range(1, n + 1)]
    for i, sid in enumerate(ids, start=1):
        rng = np.random.default_rng([seed, i])
        img, mask, _ = synth_sample(rng, size)
        Image.fromarray(img).save(out / "images" / f"{sid}.png", optimize=False)
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"{sid}_pixels0.png", optimize=False)
    n_val = max(1, int(round(n * SPLIT_FRACTIONS[1])))
    n_test = max(1, int(round(n * SPLIT_FRACTIONS[2])))
    perm = np.random.default_rng([seed, 0]).permutation(n)
    test_idx = sorted(perm[:n_test])
    val_idx = sorted(perm[n_test : n_test + n_val])
    train_idx = sorted(perm[n_test + n_val :])
    splits = {
        "train": train_idx,
        "val": val_idx,
        "test": test_idx,
        "trainval": sorted(train_idx + val_idx),
    }
    for name, idx in splits.items():
        (out / "idx_427" / f"{name}.txt").write_text("".join(ids[k] + "\n" for k in idx), encoding="utf-8")
    meta = {"generator": "irfoundry.data.synth", "version": SYNTH_VERSION, "n": n, "size": size, "seed": seed}
    (out / "synth.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out
