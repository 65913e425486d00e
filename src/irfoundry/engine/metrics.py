"""The metric the engine validates and evaluates with: :class:`irfoundry.metrics.IRSTDMetrics` fed from
padded logits.

``update_padded(logits, masks, sizes)`` applies the sigmoid and crops each image of a padded batch back
to its native size before counting, so padding never enters a metric. State is the summed counters of
the functional core, so DDP validation equals single-process validation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from irfoundry.metrics.functional import DEFINITION
from irfoundry.metrics.modules import IRSTDMetrics

#: the scalars logged during validation and written by ``irfoundry eval``
REPORTED = ("iou", "niou", "pd", "fa", "target_precision", "target_f1")


class EvalMetrics(IRSTDMetrics):
    """IoU, nIoU, Pd, Fa (+ target precision / F1) at one threshold from padded logits."""

    definition = DEFINITION

    def update_padded(self, logits: Tensor, masks: Tensor, sizes: Sequence[tuple[int, int]]) -> None:
        """``logits``, ``masks``: ``B x 1 x H x W`` (padded); ``sizes``: native ``(h, w)`` per image."""
        probs = torch.sigmoid(logits.detach().float())
        preds = [probs[i, 0, : int(h), : int(w)] for i, (h, w) in enumerate(sizes)]
        targets = [masks[i, 0, : int(h), : int(w)] > 0.5 for i, (h, w) in enumerate(sizes)]
        self.update(preds, targets)

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        full = super().compute()
        return {k: float(full[k]) for k in REPORTED}


def build_eval_metrics(threshold: float = 0.5) -> EvalMetrics:
    return EvalMetrics(threshold=threshold)
