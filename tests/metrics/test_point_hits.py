"""Validation on clicks (irfoundry.metrics.points): counts on a worked example, summed like counters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irfoundry.metrics.points import PointHitMetrics, point_hits


def test_clicks_match_predicted_centroids_within_three_pixels_one_to_one():
    prob = np.zeros((20, 20), np.float32)
    prob[1:4, 1:4] = 0.9  # centroid (2, 2): matches the click at (2, 2) only (one to one)
    prob[10, 10] = prob[11, 11] = 0.8  # one 8-connected target, centroid (10.5, 10.5), no click near: a false one
    prob[15:17, 3:5] = 0.7  # centroid (15.5, 3.5): 2.92 px from the click at (18, 2): a match
    clicks = np.zeros((20, 20), np.float32)
    clicks[2, 2] = clicks[3, 3] = 1  # two clicks on the first target: the second finds no free target
    clicks[18, 2] = 1
    clicks[5, 15] = 1  # missed
    assert point_hits(prob, clicks) == (4, 2, 3)
    assert point_hits(prob, clicks, distance=2.9) == (4, 1, 3)
    m = PointHitMetrics()
    m.update([torch.from_numpy(prob), torch.zeros(4, 4)], [torch.from_numpy(clicks), torch.zeros(4, 4)])
    out = m.compute()
    assert out["point_recall"] == pytest.approx(2 / 4) and out["point_precision"] == pytest.approx(2 / 3)
    assert out["point_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)) and float(m.n_images) == 2
    empty = PointHitMetrics()
    empty.update([torch.zeros(3, 3)], [torch.zeros(3, 3)])
    assert empty.compute()["point_f1"] == 0.0


def test_a_prediction_that_floods_the_image_matches_no_click():
    clicks = np.zeros((40, 40), np.float32)
    clicks[5, 5] = clicks[30, 8] = 1
    flood = np.ones((40, 40), np.float32)  # one component holding both clicks, centroid (19.5, 19.5)
    m = PointHitMetrics()
    m.update([torch.from_numpy(flood)], [torch.from_numpy(clicks)])
    assert m.compute()["point_f1"] == 0.0
