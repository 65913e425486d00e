"""Point labels from masks, as LESPS derives them (CVPR 2023, XinyiYing/LESPS ``centroid_anno.m`` and
``coarse_anno.m``), and points drawn back into masks.

Targets are the 8-connected components of the mask (MATLAB ``bwlabel``'s default). With ``(cy, cx)`` a
component's centroid in 0-based pixel coordinates (MATLAB's 1-based centroid minus one):

* **centroid**: the pixel ``(floor(cy), floor(cx))``. As in LESPS it is not moved when it falls outside the
  target (rings, crescents, L shapes; rare for targets of a few pixels): :func:`points_outside` counts them.
* **coarse**: ``(floor(cy + bh / 2 * g_y), floor(cx + bw / 2 * g_x))`` with ``g ~ N(0, 1/4)`` (standard
  deviation 1/4) and ``bh x bw`` the component's bounding box, clamped to the image and redrawn until it
  falls on a target pixel (of any target, as the script tests against the whole mask).

Components are taken in ``scipy.ndimage.label`` order (raster order of each component's first pixel;
MATLAB scans column-major, which only changes which random draw goes to which target). The random numbers
come from the ``numpy.random.Generator`` given, so a seed reproduces a coarse label set exactly; MATLAB's
own stream is not reproduced.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from irfoundry.errors import DataError

Point = tuple[int, int]
PointKind = Literal["centroid", "coarse"]
POINT_KINDS: tuple[str, ...] = ("centroid", "coarse")
_EIGHT = np.ones((3, 3), dtype=bool)
#: coarse draws per target before giving up (LESPS loops without a bound; a draw lands inside with
#: probability > 1 % even for one-pixel targets, so this is never reached on real masks)
MAX_COARSE_DRAWS = 100_000


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components: ``(labels int32 H x W, count)``; background is 0."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise DataError(f"a mask must be H x W, got shape {mask.shape}.")
    labels, n = ndimage.label(mask, structure=_EIGHT)
    return labels, int(n)


def _components(mask: np.ndarray):
    """``(labels, [(cy, cx, box_h, box_w), ...])`` of the 8-connected components."""
    labels, n = label_components(mask)
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        ys, xs = np.nonzero(labels[sl] == k)
        out.append((ys.mean() + sl[0].start, xs.mean() + sl[1].start, sl[0].stop - sl[0].start, sl[1].stop - sl[1].start))
    return labels, out


def centroid_points(mask: np.ndarray) -> list[Point]:
    """LESPS centroid points: one ``(y, x) = floor(centroid)`` per 8-connected target, in label order.

    Args:
        mask: ``H x W`` (anything non-zero is target).
    """
    _, comps = _components(mask)
    return [(int(np.floor(cy)), int(np.floor(cx))) for cy, cx, _, _ in comps]


def coarse_points(mask: np.ndarray, rng: np.random.Generator) -> list[Point]:
    """LESPS coarse points: one jittered ``(y, x)`` per target (see the module docstring), on a target pixel.

    Args:
        mask: ``H x W`` (anything non-zero is target).
        rng: the generator of the draws (``numpy.random.default_rng(seed)``).
    """
    fg = np.asarray(mask) != 0
    h, w = fg.shape[:2]
    _, comps = _components(fg)
    points: list[Point] = []
    for cy, cx, bh, bw in comps:
        for _ in range(MAX_COARSE_DRAWS):
            gx, gy = rng.normal(0.0, 0.25, size=2)  # the script draws x's number first
            x = min(max(int(np.floor(cx + bw / 2 * gx)), 0), w - 1)
            y = min(max(int(np.floor(cy + bh / 2 * gy)), 0), h - 1)
            if fg[y, x]:
                break
        else:  # pragma: no cover - see MAX_COARSE_DRAWS
            raise DataError(f"no coarse point found on the target at ({cy:.1f}, {cx:.1f}) in {MAX_COARSE_DRAWS} draws")
        points.append((y, x))
    return points


def derive_points(mask: np.ndarray, kind: PointKind, rng: np.random.Generator | None = None) -> list[Point]:
    """:func:`centroid_points` or :func:`coarse_points` by name (``rng`` needed for ``coarse``)."""
    if kind == "centroid":
        return centroid_points(mask)
    if kind == "coarse":
        if rng is None:
            raise DataError("coarse points need rng=numpy.random.default_rng(seed)")
        return coarse_points(mask, rng)
    raise DataError(f"unknown point kind {kind!r}; choose one of {', '.join(POINT_KINDS)}")


def points_outside(mask: np.ndarray, points: list[Point]) -> int:
    """How many of ``points`` are not on a target pixel of ``mask``."""
    fg = np.asarray(mask) != 0
    return sum(1 for y, x in points if not fg[y, x])


def points_to_mask(points, shape: tuple[int, int], *, radius: int = 0) -> np.ndarray:
    """Draw points into an empty mask.

    Args:
        points: iterable of ``(y, x)`` integer pixels.
        shape: ``(H, W)`` of the output.
        radius: 0 marks single pixels; ``r > 0`` marks discs of that Euclidean radius (clipped at borders).

    Returns:
        ``bool H x W``.

    Raises:
        DataError: a point outside the image.
    """
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), dtype=bool)
    r = int(radius)
    for y, x in points:
        y, x = int(y), int(x)
        if not (0 <= y < h and 0 <= x < w):
            raise DataError(f"point ({y}, {x}) lies outside an image of size {h}x{w} (HxW).")
        if r == 0:
            out[y, x] = True
            continue
        y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, h), max(x - r, 0), min(x + r + 1, w)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        out[y0:y1, x0:x1] |= (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    return out
