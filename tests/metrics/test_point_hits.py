"""Validation on clicks (irfoundry.metrics.points): counts on a worked example, summed like counters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irfoundry.metrics.points import PointHitMetrics, point_hits


def test_clicks_inside_predicted_targets_and_targets_with_a_click_are_counted():
    prob = np.zeros((10, 10), np.float32)
    prob[1:3, 1:3] = 0.9  # a target holding two clicks
    prob[6, 6] = prob[7, 7] = 0.8  # one 8-connected target, no click: a false one
    clicks = np.zeros((10, 10), np.float32)
    clicks[1, 1] = clicks[2, 2] = 1  # both inside the first target
    clicks[5, 0] = 1  # missed
    assert point_hits(prob, clicks) == (3, 2, 2, 1)
    m = PointHitMetrics()
    m.update([torch.from_numpy(prob), torch.zeros(4, 4)], [torch.from_numpy(clicks), torch.zeros(4, 4)])
    out = m.compute()
    assert out["point_recall"] == pytest.approx(2 / 3) and out["point_precision"] == pytest.approx(1 / 2)
    assert out["point_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)) and float(m.n_images) == 2
    empty = PointHitMetrics()
    empty.update([torch.zeros(3, 3)], [torch.zeros(3, 3)])
    assert empty.compute()["point_f1"] == 0.0
