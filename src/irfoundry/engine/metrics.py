"""The metric the engine validates with: :class:`irfoundry.metrics.IRSTDMetrics` reporting
:data:`irfoundry.metrics.REPORTED`.

Fed the probability maps of the inference path (:func:`irfoundry.engine.inference.probabilities`,
already cropped back to each image's native size), so padding never enters a metric. State is the summed
counters of the functional core, so DDP validation equals single-process validation.
"""

from __future__ import annotations

from irfoundry.metrics import REPORTED
from irfoundry.metrics.functional import DEFINITION
from irfoundry.metrics.modules import IRSTDMetrics


class EvalMetrics(IRSTDMetrics):
    """IoU, nIoU, Pd, Fa (+ target precision / F1) at one threshold; ``update(probs, masks)`` with lists of
    ``h x w`` maps of any sizes."""

    definition = DEFINITION

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        full = super().compute()
        return {k: float(full[k]) for k in REPORTED}


def build_eval_metrics(threshold: float = 0.5, empty_niou: float = 0.0) -> EvalMetrics:
    return EvalMetrics(threshold=threshold, empty_niou=empty_niou)
