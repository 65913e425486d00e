"""Realistic perturbed predictions from real GT masks, plus mask loading (benchmark and tests).

``perturbed_prediction(gt, rng)`` turns a mask into a graded probability map the way a trained network
errs: targets dilated, eroded, shifted or missed, extra clutter blobs, soft edges, sparse background
noise, optionally quantised to 8 bits (value / 255). Deterministic given ``rng``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage


def load_masks(data_root: Path, dataset: str, limit: int | None = None):
    """Real test-split masks as ``H x W`` bool arrays: ``dataset`` is ``"sirst"`` (idx_427 test) or
    ``"nudt"`` (50_50 test). SIRST Misc_111's 592x400 mask is resized (nearest) to its 325x220 image."""
    root = Path(data_root)
    if dataset == "sirst":
        ids = (root / "sirst" / "idx_427" / "test.txt").read_text().split()
        paths = [root / "sirst" / "masks" / f"{i}_pixels0.png" for i in ids]
        images = [root / "sirst" / "images" / f"{i}.png" for i in ids]
    elif dataset == "nudt":
        ids = (root / "nudt_sirst" / "50_50" / "test.txt").read_text().split()
        paths = [root / "nudt_sirst" / "masks" / f"{i}.png" for i in ids]
        images = [None] * len(ids)
    else:
        raise ValueError(dataset)
    if limit is not None:
        paths, images, ids = paths[:limit], images[:limit], ids[:limit]
    masks = []
    for p, ip in zip(paths, images):
        m = Image.open(p)
        if ip is not None:
            size = Image.open(ip).size
            if m.size != size:
                m = m.resize(size, Image.NEAREST)
        a = np.array(m)
        if a.ndim == 3:
            a = a[..., 0]
        masks.append(a > 0)
    return ids, masks


def perturbed_prediction(gt: np.ndarray, rng: np.random.Generator, *, kind: str | None = None) -> np.ndarray:
    """Graded ``H x W`` float64 probability map in [0, 1] derived from ``gt``."""
    kinds = ("dilate", "erode", "shift", "miss", "clutter", "mixed", "empty", "exact")
    kind = kind or kinds[rng.integers(len(kinds))]
    h, w = gt.shape
    base = gt.copy()
    if kind == "empty":
        return np.zeros((h, w))
    lab, n = ndimage.label(gt, structure=np.ones((3, 3)))
    if kind in ("dilate", "mixed"):
        base = ndimage.binary_dilation(base, iterations=int(rng.integers(1, 3)))
    if kind == "erode":
        base = ndimage.binary_erosion(base)
    if kind in ("shift", "mixed"):
        base = np.roll(base, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
    if kind in ("miss", "mixed") and n:
        drop = rng.random(n) < 0.5
        base &= ~np.isin(lab, np.flatnonzero(drop) + 1)
    if kind in ("clutter", "mixed", "miss"):
        for _ in range(int(rng.integers(1, 6))):
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            r = int(rng.integers(0, 4))
            base[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1] = True
    if kind == "exact":
        return base.astype(np.float64)
    # graded: soft edges, per-image confidence, a few noisy pixels
    prob = ndimage.gaussian_filter(base.astype(np.float64), sigma=float(rng.uniform(0.6, 1.5)))
    prob = np.clip(prob * rng.uniform(0.8, 1.6), 0.0, 1.0)
    noise = rng.random((h, w)) < 0.002
    prob[noise] = np.maximum(prob[noise], rng.uniform(0.0, 0.7, int(noise.sum())))
    if rng.random() < 0.5:  # 8-bit maps, as eval-maps reads them
        prob = np.round(prob * 255.0) / 255.0
    return prob


def random_blobs(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    """``h x w`` bool mask with ``n`` random rectangles of side 1-5 px (possibly touching or clipped)."""
    m = np.zeros((h, w), dtype=bool)
    for _ in range(n):
        r, c = rng.integers(h), rng.integers(w)
        rh, rw = rng.integers(0, 3, size=2)
        m[max(r - rh, 0) : r + rh + 1, max(c - rw, 0) : c + rw + 1] = True
    return m
