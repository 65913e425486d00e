"""Per-target view of one image's Pd / Fa matching: which GT targets were missed, which predictions are
false alarms (for galleries and error analysis).

:func:`match_targets` labels the thresholded prediction and the GT with the metric core's connectivity
structure, computes centroids and the GT x prediction distance and pixel-IoU matrices with the same
arithmetic as :mod:`irfoundry.metrics._sweep`, and calls its matcher ``_match`` (greedy / hungarian /
overlap). Its counts therefore equal :func:`~irfoundry.metrics.functional.image_counts` at that threshold:
``hits == image_counts(...).hits[0]`` and ``fa_pixels == image_counts(...).fa_pixels[0]``
(``tests/metrics/test_targets.py`` checks this on perturbed predictions for every matching rule and both
false-alarm rules).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from irfoundry.errors import ConfigError
from irfoundry.metrics._sweep import _match, _structure
from irfoundry.metrics.functional import MetricSettings, _as_mask, _as_prob, _as_thresholds

__all__ = ["GTTarget", "PredTarget", "TargetMatch", "match_targets"]


@dataclass(frozen=True)
class GTTarget:
    """One ground-truth component.

    ``centroid``: ``(y, x)`` mean pixel coordinates; ``bbox``: ``(y0, x0, y1, x1)`` inclusive-exclusive
    (as in ``predict``'s ``targets.json``); ``area``: pixels; ``hit``: matched by a predicted component;
    ``pred_index``: index of that component in :attr:`TargetMatch.pred` (``None`` when missed).
    """

    centroid: tuple[float, float]
    bbox: tuple[int, int, int, int]
    area: int
    hit: bool
    pred_index: int | None


@dataclass(frozen=True)
class PredTarget:
    """One predicted component of ``prob > threshold``.

    ``centroid``, ``bbox``, ``area``: as in :class:`GTTarget`; ``peak``: maximum probability inside it;
    ``matched``: paired with a GT component; ``gt_index``: index in :attr:`TargetMatch.gt` or ``None``;
    ``false_alarm``: its pixels count in ``fa_pixels``. With the default rule ``false_alarm == not
    matched``; with ``legacy_area_match=True`` (the DNANet bug) an unmatched component whose area equals
    a matched component's area is *not* a false alarm, exactly as the legacy Fa counts it.
    """

    centroid: tuple[float, float]
    bbox: tuple[int, int, int, int]
    area: int
    peak: float
    matched: bool
    gt_index: int | None
    false_alarm: bool


@dataclass(frozen=True)
class TargetMatch:
    """Result of :func:`match_targets` for one ``H x W`` image.

    ``gt`` and ``pred`` are in label order (raster order of each component's first pixel), the order the
    greedy rule walks. ``fa_pixels``: pixels of false-alarm components (the Fa numerator of this image);
    ``n_pixels``: ``H * W``.
    """

    threshold: float
    settings: MetricSettings
    gt: tuple[GTTarget, ...]
    pred: tuple[PredTarget, ...]
    fa_pixels: int
    n_pixels: int

    @property
    def hits(self) -> int:
        """Matched (GT, prediction) pairs; Pd numerator."""
        return sum(g.hit for g in self.gt)

    @property
    def missed(self) -> int:
        """GT components without a match."""
        return sum(not g.hit for g in self.gt)

    @property
    def false_alarms(self) -> int:
        """Predicted components counted as false alarms."""
        return sum(p.false_alarm for p in self.pred)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists instead of tuples, settings as a dict)."""
        return {
            "threshold": self.threshold,
            "settings": self.settings.as_dict(),
            "gt": [_listify(asdict(g)) for g in self.gt],
            "pred": [_listify(asdict(p)) for p in self.pred],
            "hits": self.hits,
            "missed": self.missed,
            "false_alarms": self.false_alarms,
            "fa_pixels": self.fa_pixels,
            "n_pixels": self.n_pixels,
        }


def _listify(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _components(
    mask: np.ndarray, struct: np.ndarray
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, list[tuple[slice, slice]]]:
    """Label ``mask``; returns (labels, n, counts (n,) int64, row sums (n,) int64, col sums (n,) int64,
    bounding slices). Label numbers follow raster order of the first pixel, as in the metric core."""
    lab, n = ndimage.label(mask, structure=struct)
    rr, cc = np.nonzero(lab)
    ll = lab[rr, cc]
    cnt = np.bincount(ll, minlength=n + 1)[1:].astype(np.int64)
    sy = np.bincount(ll, weights=rr, minlength=n + 1)[1:].astype(np.int64)
    sx = np.bincount(ll, weights=cc, minlength=n + 1)[1:].astype(np.int64)
    return lab, int(n), cnt, sy, sx, ndimage.find_objects(lab) if n else []


def _bbox(sl: tuple[slice, slice]) -> tuple[int, int, int, int]:
    return (int(sl[0].start), int(sl[1].start), int(sl[0].stop), int(sl[1].stop))


def match_targets(
    prob: Any,
    gt: Any,
    threshold: float = 0.5,
    *,
    settings: MetricSettings | None = None,
) -> TargetMatch:
    """Match the components of ``prob > threshold`` to the GT components of one image.

    Args:
        prob: ``H x W`` probabilities in [0, 1] (float; divide 8-bit maps by 255).
        gt: ``H x W`` mask (bool, 0/1 or 0/255).
        threshold: binarisation threshold; foreground is ``p > threshold`` in float64.
        settings: connectivity, centroid distance, matching rule and false-alarm rule
            (default :class:`~irfoundry.metrics.functional.MetricSettings`).

    Returns:
        :class:`TargetMatch` whose ``hits`` and ``fa_pixels`` equal ``image_counts(prob, gt, threshold,
        settings=settings)``'s ``hits[0]`` and ``fa_pixels[0]``.

    Raises:
        DataError: bad shapes, dtype or values outside [0, 1]; ConfigError: bad threshold or settings.
    """
    s = settings or MetricSettings()
    if np.ndim(threshold) != 0:
        raise ConfigError(f"match_targets() takes one threshold, got {threshold!r}; call it once per threshold.")
    t = float(_as_thresholds(threshold)[0])
    p = _as_prob(prob)
    g = _as_mask(gt, p.shape)
    fg = p > t
    struct = _structure(s.connectivity)

    glab, n_gt, g_cnt_i, g_sy, g_sx, g_sl = _components(g, struct)
    plab, n_pred, cnt, sy, sx, p_sl = _components(fg, struct)

    gt_hit = np.zeros(n_gt, dtype=bool)
    gt_to_pred = np.full(n_gt, -1, dtype=np.int64)
    pred_to_gt = np.full(n_pred, -1, dtype=np.int64)
    pred_fa = np.ones(n_pred, dtype=bool)
    if n_gt and n_pred:
        # same arithmetic as _sweep._evaluate / sweep_image: float64 sum / count, sqrt(dy^2 + dx^2)
        g_cnt = g_cnt_i.astype(np.float64)
        g_cy = g_sy.astype(np.float64) / g_cnt
        g_cx = g_sx.astype(np.float64) / g_cnt
        pc = cnt.astype(np.float64)
        dy = g_cy[:, None] - (sy / pc)[None, :]
        dx = g_cx[:, None] - (sx / pc)[None, :]
        dist = np.sqrt(dy * dy + dx * dx)
        both = (glab > 0) & (plab > 0)
        inter_gp = np.zeros((n_gt, n_pred), dtype=np.float64)
        np.add.at(inter_gp, (glab[both] - 1, plab[both] - 1), 1.0)
        pair_iou = inter_gp / (g_cnt[:, None] + pc[None, :] - inter_gp)
        gi, pj = _match(
            dist,
            pair_iou,
            matching=s.matching,
            distance=float(s.distance),
            overlap_threshold=float(s.overlap_threshold),
        )
        gt_hit[gi] = True
        gt_to_pred[gi] = pj
        pred_to_gt[pj] = gi
        if s.legacy_area_match:
            pred_fa = ~np.isin(cnt, cnt[pj])
        else:
            pred_fa = pred_to_gt < 0
    fa_pixels = int(cnt[pred_fa].sum()) if n_pred else 0

    gts = tuple(
        GTTarget(
            centroid=(float(g_sy[i] / g_cnt_i[i]), float(g_sx[i] / g_cnt_i[i])),
            bbox=_bbox(g_sl[i]),
            area=int(g_cnt_i[i]),
            hit=bool(gt_hit[i]),
            pred_index=int(gt_to_pred[i]) if gt_hit[i] else None,
        )
        for i in range(n_gt)
    )
    peaks = ndimage.maximum(p, plab, np.arange(1, n_pred + 1)) if n_pred else []
    preds = tuple(
        PredTarget(
            centroid=(float(sy[j] / cnt[j]), float(sx[j] / cnt[j])),
            bbox=_bbox(p_sl[j]),
            area=int(cnt[j]),
            peak=float(peaks[j]),
            matched=bool(pred_to_gt[j] >= 0),
            gt_index=int(pred_to_gt[j]) if pred_to_gt[j] >= 0 else None,
            false_alarm=bool(pred_fa[j]),
        )
        for j in range(n_pred)
    )
    return TargetMatch(
        threshold=t, settings=s, gt=gts, pred=preds, fa_pixels=fa_pixels, n_pixels=int(p.size)
    )
