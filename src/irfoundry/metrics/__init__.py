"""IRSTD evaluation: IoU, nIoU, Pd / Fa, target P/R/F1, hIoU, pixel ROC / PR, multi-threshold curves, HSE.

No models, no data loading, no Lightning: numpy / scipy functional core plus thin torchmetrics modules.
Definitions, binarisation boundary and matching rules: :mod:`irfoundry.metrics.functional`
(``DEFINITION = "irstd-metrics-v1"``); HSE reconstruction: :func:`hse` (``"hse-recon-v1"``).

API
---
Modules (state = summed counters, ``dist_reduce_fx="sum"``; ``update(preds, target)`` with
probabilities ``H x W`` / ``N x H x W`` / ``N x 1 x H x W`` or a list of differently sized maps)::

    from irfoundry.metrics import IRSTDMetrics, MultiThresholdCurves
    m = IRSTDMetrics(threshold=0.5)                  # matching="greedy", connectivity=8, distance=3.0,
    m.update(probs, masks)                           # legacy_area_match=False, empty_niou=0.0
    m.compute()  # {"iou", "niou", "pd", "fa" (fraction), "target_f1", "hiou", ..., "definition"}

    curves = MultiThresholdCurves()                  # thresholds 0.05..0.95 step 0.05 by default
    curves.update(probs, masks)
    c = curves.compute()                             # (T,) arrays: iou, niou, pd, fa, tpr, fpr, ...
    curves.hse()                                     # {"hse" (percent), "s_pix", "s_tgt", curves, ...}

Single-metric modules: :class:`IoU`, :class:`NIoU` (0-d tensors), :class:`PdFa`, :class:`TargetPRF`,
:class:`HIoU` (dicts). Matching options: ``"greedy"`` (DNANet, default), ``"hungarian"``, ``"overlap"``
(PyIRSTDMetrics OPDC; the default of :class:`HIoU`).

Functional (per image, numpy)::

    from irfoundry.metrics import image_counts, evaluate_images, summarize, hse, roc_pr, MetricSettings
    counts = image_counts(prob_hw, mask_hw, thresholds=[0.1, 0.5], settings=MetricSettings())
    total = evaluate_images(probs, masks, thresholds)        # Counters summed over images
    curves = summarize(total, thresholds)                    # same dict as MultiThresholdCurves.compute()
    hse(curves); roc_pr(curves)

Per-target view of one image (which GT targets were missed, which predictions are false alarms; same
labelling and matching as the counters)::

    from irfoundry.metrics import match_targets
    m = match_targets(prob_hw, mask_hw, 0.5)   # m.gt[i].hit, m.pred[j].false_alarm, m.fa_pixels

For 8-bit prediction maps divide by 255: ``p > 0.5`` then equals ``value >= 128``.
All user errors raise :class:`irfoundry.errors.ConfigError` (bad option) or
:class:`irfoundry.errors.DataError` (bad array: shape, dtype, values outside [0, 1]).
"""

from irfoundry.metrics.functional import (
    DEFAULT_HSE_THRESHOLDS,
    DEFINITION,
    HSE_DEFINITION,
    MATCHINGS,
    Counters,
    REPORTED,
    MetricSettings,
    binarize,
    evaluate_images,
    hse,
    image_counts,
    roc_pr,
    summarize,
)
from irfoundry.metrics.modules import HIoU, IoU, IRSTDMetrics, MultiThresholdCurves, NIoU, PdFa, TargetPRF
from irfoundry.metrics.targets import GTTarget, PredTarget, TargetMatch, match_targets

__all__ = [
    "REPORTED",
    "DEFAULT_HSE_THRESHOLDS",
    "DEFINITION",
    "HSE_DEFINITION",
    "MATCHINGS",
    "Counters",
    "MetricSettings",
    "binarize",
    "evaluate_images",
    "hse",
    "image_counts",
    "roc_pr",
    "summarize",
    "HIoU",
    "IoU",
    "IRSTDMetrics",
    "MultiThresholdCurves",
    "NIoU",
    "PdFa",
    "TargetPRF",
    "GTTarget",
    "PredTarget",
    "TargetMatch",
    "match_targets",
]
