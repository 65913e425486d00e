"""Validation on clicks: how well predicted targets meet the point labels of a point-labelled split.

Point supervision's honest selector (``data.val_labels: points``): the validation split carries one click
per target, as the training split does, and no masks are read. For each image, the predicted targets are the
8-connected components of ``probability > threshold``; a click and a predicted target *match* when the
target's centroid lies within ``distance`` (3 px) of the click, one to one, greedily: each click in raster
order takes the first unmatched predicted target (in label order) that is close enough. That is DNANet's Pd
rule (``PD_FA``: centroid distance < 3) with the click as the ground-truth centroid, so a centroid click scores
as Pd would with the mask, and a prediction that floods the image (one component holding every click, its
centroid far from them) matches nothing.

* ``point_recall`` = matched clicks / clicks;
* ``point_precision`` = matched predicted targets / predicted targets;
* ``point_f1`` = their harmonic mean (0 when both are 0); ``clicks``, ``predicted_targets`` and
  ``n_images`` are the counters (summed over processes under DDP).

An image without clicks counts its predicted targets as false ones. This ranks checkpoints by target-level
detection; it says nothing of the shape (no IoU exists without masks). Coarse clicks (off the centroid) match
less often than their targets deserve: a larger ``distance`` suits them.
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
#: DNANet's Pd distance (px): a predicted centroid closer than this to the click matches it
MATCH_DISTANCE = 3.0


def point_hits(prob: np.ndarray, clicks: np.ndarray, threshold: float = 0.5,
               distance: float = MATCH_DISTANCE) -> tuple[int, int, int]:
    """``(clicks, matched pairs, predicted targets)`` of one image (``prob`` and the click map ``clicks``, both
    ``h x w``; see the module docstring for the matching)."""
    labels, n = ndimage.label(np.asarray(prob) > threshold, structure=_EIGHT)
    centroids = np.asarray(ndimage.center_of_mass(np.ones_like(labels), labels, range(1, n + 1))).reshape(-1, 2)
    free = list(range(n))
    matched = 0
    ys, xs = np.nonzero(np.asarray(clicks) > 0.5)
    for y, x in zip(ys, xs):
        for j in free:
            if np.hypot(centroids[j, 0] - y, centroids[j, 1] - x) < distance:
                free.remove(j)
                matched += 1
                break
    return int(ys.size), matched, int(n)


class PointHitMetrics(Metric):
    """``update(probs, click_maps)`` with lists of ``h x w`` maps; ``compute()`` -> :data:`POINT_REPORTED` and
    the counters (see the module docstring)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, threshold: float = 0.5, distance: float = MATCH_DISTANCE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold, self.distance = float(threshold), float(distance)
        for name in ("clicks", "matched", "predicted", "n_images"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: Sequence[Tensor], clicks: Sequence[Tensor]) -> None:
        for p, c in zip(probs, clicks):
            a, b, m = point_hits(p.detach().cpu().numpy(), c.detach().cpu().numpy(), self.threshold, self.distance)
            self.clicks += a
            self.matched += b
            self.predicted += m
            self.n_images += 1

    def compute(self) -> dict[str, float]:
        recall = float(self.matched / self.clicks) if self.clicks > 0 else 0.0
        precision = float(self.matched / self.predicted) if self.predicted > 0 else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return {"point_f1": f1, "point_recall": recall, "point_precision": precision, "clicks": float(self.clicks),
                "predicted_targets": float(self.predicted)}
