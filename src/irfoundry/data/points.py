"""Point labels from masks (for point-supervised training and for Pd-style target counting).

``centroid_points(mask)`` gives one ``(y, x)`` pixel per 8-connected component, in ``scipy.ndimage.label``
order (raster order of each component's first pixel). The point is the centroid rounded to the nearest
pixel; when that pixel lies outside the component (crescents, rings, L shapes) it is replaced by the
component pixel nearest to the exact centroid (ties: first in raster order). With ``coarse_radius > 0``
the point is moved to a uniformly drawn component pixel within that Euclidean radius of the centroid
point ("coarse" point labels, as in LESPS); it always stays inside the target.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from irfoundry.errors import DataError

Point = tuple[int, int]
_EIGHT = np.ones((3, 3), dtype=bool)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components: ``(labels int32 H x W, count)``; background is 0."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise DataError(f"a mask must be H x W, got shape {mask.shape}.")
    labels, n = ndimage.label(mask, structure=_EIGHT)
    return labels, int(n)


def centroid_points(
    mask: np.ndarray, *, coarse_radius: float = 0.0, rng: np.random.Generator | None = None
) -> list[Point]:
    """One point per 8-connected target component.

    Args:
        mask: ``bool H x W`` (anything non-zero is target).
        coarse_radius: jitter radius in pixels (0 = exact centroid point).
        rng: generator for the jitter (required when ``coarse_radius > 0``).

    Returns:
        ``[(y, x), ...]`` integer pixel coordinates, each inside its component, in label order.
    """
    if coarse_radius < 0:
        raise DataError(f"coarse_radius must be >= 0, got {coarse_radius}.")
    if coarse_radius > 0 and rng is None:
        raise DataError("centroid_points(coarse_radius > 0) needs rng=numpy.random.default_rng(seed).")
    labels, n = label_components(mask)
    if n == 0:
        return []
    objects = ndimage.find_objects(labels)
    points: list[Point] = []
    for k, sl in enumerate(objects, start=1):
        sub = labels[sl] == k
        ys, xs = np.nonzero(sub)
        ys = ys + sl[0].start
        xs = xs + sl[1].start
        cy, cx = ys.mean(), xs.mean()
        py, px = int(np.floor(cy + 0.5)), int(np.floor(cx + 0.5))
        if labels[py, px] != k:
            d2 = (ys - cy) ** 2 + (xs - cx) ** 2
            j = int(np.argmin(d2))
            py, px = int(ys[j]), int(xs[j])
        if coarse_radius > 0:
            near = (ys - py) ** 2 + (xs - px) ** 2 <= coarse_radius**2
            cand = np.flatnonzero(near)
            j = int(cand[int(rng.integers(0, cand.size))])
            py, px = int(ys[j]), int(xs[j])
        points.append((py, px))
    return points


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
