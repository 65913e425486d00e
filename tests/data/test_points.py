"""irfoundry.data.points: centroid points per 8-connected component, coarse jitter, drawing points."""

from __future__ import annotations

import numpy as np
import pytest

from irfoundry.data.points import centroid_points, label_components, points_to_mask
from irfoundry.errors import DataError


def test_one_point_per_8_connected_component():
    m = np.zeros((12, 12), bool)
    m[1:4, 1:4] = True  # 3x3 square, centroid (2, 2)
    m[6, 6] = m[7, 7] = True  # diagonal pair: ONE 8-connected component, centroid (6.5, 6.5)
    m[10, 1:5] = True  # bar, centroid (10, 2.5)
    assert label_components(m)[1] == 3
    pts = centroid_points(m)
    assert pts[0] == (2, 2)
    assert pts[1] in {(7, 7), (6, 6)} and m[pts[1]]
    assert pts[2] in {(10, 2), (10, 3)}
    assert centroid_points(np.zeros((5, 5), bool)) == []


def test_centroid_outside_component_moves_inside():
    m = np.zeros((15, 15), bool)
    m[2:13, 2:13] = True
    m[4:11, 4:11] = False  # a ring: centroid (7, 7) is a hole
    (p,) = centroid_points(m)
    assert m[p]
    # nearest ring pixels to (7, 7) are the inner-edge midpoints at distance 4, e.g. (3, 7)
    assert (p[0] - 7) ** 2 + (p[1] - 7) ** 2 == 16
    crescent = np.zeros((9, 9), bool)
    crescent[1:8, 1] = True
    crescent[1, 1:8] = True  # an L: centroid (2.7, 2.7) lies off the L
    (q,) = centroid_points(crescent)
    assert crescent[q]


def test_coarse_points_stay_inside_and_within_radius():
    m = np.zeros((30, 30), bool)
    m[5:20, 8:16] = True
    exact = centroid_points(m)[0]
    seen = set()
    for seed in range(40):
        (p,) = centroid_points(m, coarse_radius=3, rng=np.random.default_rng(seed))
        assert m[p] and (p[0] - exact[0]) ** 2 + (p[1] - exact[1]) ** 2 <= 9
        seen.add(p)
    assert len(seen) > 5
    assert centroid_points(m, coarse_radius=3, rng=np.random.default_rng(1)) == centroid_points(
        m, coarse_radius=3, rng=np.random.default_rng(1)
    )
    with pytest.raises(DataError, match="rng"):
        centroid_points(m, coarse_radius=2)


def test_points_to_mask():
    out = points_to_mask([(1, 2), (4, 4)], (5, 6))
    assert out.dtype == bool and out.sum() == 2 and out[1, 2] and out[4, 4]
    disc = points_to_mask([(0, 0)], (5, 5), radius=1)
    assert disc.sum() == 3  # clipped at the corner
    assert points_to_mask([], (3, 3)).sum() == 0
    with pytest.raises(DataError, match=r"\(5, 0\)"):
        points_to_mask([(5, 0)], (5, 5))
    m = np.zeros((20, 20), bool)
    m[2:5, 2:5] = m[10:12, 14:18] = True
    assert np.array_equal(points_to_mask(centroid_points(m), m.shape) & m, points_to_mask(centroid_points(m), m.shape))
