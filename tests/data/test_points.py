"""irfoundry.data.points: LESPS centroid and coarse points per 8-connected target, drawing points."""

from __future__ import annotations

import numpy as np
import pytest

from irfoundry.data.points import (
    centroid_points,
    coarse_points,
    derive_points,
    label_components,
    points_outside,
    points_to_mask,
)
from irfoundry.errors import DataError


def test_centroid_points_are_the_floor_of_each_8_connected_centroid_as_in_lesps():
    m = np.zeros((12, 12), bool)
    m[1:4, 1:4] = True  # 3x3 square, centroid (2, 2)
    m[6, 6] = m[7, 7] = True  # diagonal pair: ONE 8-connected component, centroid (6.5, 6.5)
    m[10, 1:5] = True  # bar, centroid (10, 2.5)
    assert label_components(m)[1] == 3
    # centroid_anno.m: floor(Centroid) in MATLAB's 1-based pixels, i.e. floor of the 0-based centroid
    assert centroid_points(m) == [(2, 2), (6, 6), (10, 2)]
    assert centroid_points(np.zeros((5, 5), bool)) == []


def test_a_centroid_off_the_target_stays_where_lesps_puts_it():
    ring = np.zeros((15, 15), np.uint8)
    ring[2:13, 2:13] = 255
    ring[4:11, 4:11] = 0  # centroid (7, 7) is in the hole
    assert centroid_points(ring) == [(7, 7)]
    assert points_outside(ring, [(7, 7)]) == 1 and points_outside(ring, [(2, 2)]) == 0


def test_coarse_points_follow_lesps_gaussian_rule_and_land_on_a_target():
    m = np.zeros((40, 40), bool)
    m[5:21, 8:16] = True  # box 16 x 8, centroid (12.5, 11.5)
    draws = [coarse_points(m, np.random.default_rng(seed))[0] for seed in range(300)]
    assert all(m[p] for p in draws)
    # the first draw of seed 0, worked out: x = floor(11.5 + 8/2 * g_x), y = floor(12.5 + 16/2 * g_y)
    g_x, g_y = np.random.default_rng(0).normal(0.0, 0.25, size=2)
    first = (int(np.floor(12.5 + 8 * g_y)), int(np.floor(11.5 + 4 * g_x)))
    if m[first]:
        assert draws[0] == first
    ys, xs = np.array(draws).T
    # spread: standard deviation 1/4 of half the box (2 rows, 1 column), the floor adds about 0.29
    assert 1.5 < ys.std() < 2.6 and 0.7 < xs.std() < 1.4
    assert coarse_points(m, np.random.default_rng(1)) == coarse_points(m, np.random.default_rng(1))
    assert derive_points(m, "centroid") == centroid_points(m)
    with pytest.raises(DataError, match="rng"):
        derive_points(m, "coarse")
    with pytest.raises(DataError, match="unknown point kind"):
        derive_points(m, "center")


def test_coarse_points_of_one_pixel_targets_are_the_pixel():
    m = np.zeros((9, 9), bool)
    m[4, 4] = m[0, 8] = True
    assert coarse_points(m, np.random.default_rng(3)) == [(0, 8), (4, 4)]


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
