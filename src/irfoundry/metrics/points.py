"""Validation on clicks: how well predicted targets meet the point labels of a point-labelled split.

Point supervision's honest selector (``data.val_labels: points``): the validation split carries one click
per target, as the training split does, and no masks are read. For each image, the predicted targets are the
8-connected components of ``probability > threshold``:

* ``point_recall`` = clicks that lie inside a predicted target / clicks;
* ``point_precision`` = predicted targets that contain at least one click / predicted targets;
* ``point_f1`` = their harmonic mean (0 when both are 0); ``clicks``, ``predicted_targets`` and
  ``n_images`` are the counters (summed over processes under DDP).

An image without clicks counts its predicted targets as false ones. This ranks checkpoints by target-level
detection; it says nothing of the shape (no IoU exists without masks).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor
from torchmetrics import Metric

POINT_REPORTED = ("point_f1", "point_recall", "point_precision")
_EIGHT = np.ones((3, 3), dtype=bool)


def point_hits(prob: np.ndarray, clicks: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int, int]:
    """``(clicks, clicks inside a predicted target, predicted targets, predicted targets with a click)`` of one
    image (``prob`` and the click map ``clicks``, both ``h x w``)."""
    labels, n = ndimage.label(np.asarray(prob) > threshold, structure=_EIGHT)
    ys, xs = np.nonzero(np.asarray(clicks) > 0.5)
    hit_labels = labels[ys, xs]
    return int(ys.size), int((hit_labels > 0).sum()), int(n), int(np.unique(hit_labels[hit_labels > 0]).size)


class PointHitMetrics(Metric):
    """``update(probs, click_maps)`` with lists of ``h x w`` maps; ``compute()`` -> :data:`POINT_REPORTED` and
    the counters (see the module docstring)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = float(threshold)
        for name in ("clicks", "clicks_hit", "predicted", "predicted_hit", "n_images"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: Sequence[Tensor], clicks: Sequence[Tensor]) -> None:
        for p, c in zip(probs, clicks):
            a, b, m, d = point_hits(p.detach().cpu().numpy(), c.detach().cpu().numpy(), self.threshold)
            self.clicks += a
            self.clicks_hit += b
            self.predicted += m
            self.predicted_hit += d
            self.n_images += 1

    def compute(self) -> dict[str, float]:
        recall = float(self.clicks_hit / self.clicks) if self.clicks > 0 else 0.0
        precision = float(self.predicted_hit / self.predicted) if self.predicted > 0 else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return {"point_f1": f1, "point_recall": recall, "point_precision": precision, "clicks": float(self.clicks),
                "predicted_targets": float(self.predicted)}
