"""Functional core of the IRSTD metrics (numpy / scipy only).

Inputs are per-image arrays: ``prob`` is an ``H x W`` probability map in [0, 1] (float; an 8-bit map
must be divided by 255 first), ``gt`` an ``H x W`` mask (bool, or 0/1, or 0/255). Everything reduces to
summed integer counters (:class:`Counters`), so a data set is evaluated by adding the counters of its
images and calling :func:`summarize` once; the torchmetrics modules in :mod:`irfoundry.metrics.modules`
hold exactly these counters as their state.

Binarisation
    A pixel is foreground at threshold ``t`` iff ``p > t``, compared in float64 (float32 maps are
    converted first, so ``p == t`` is always background). At the default ``t = 0.5`` this agrees with the
    8-bit rule ``value >= 128`` of ``eval-maps``: ``128 / 255 = 0.50196 > 0.5`` and ``127 / 255 < 0.5``.

Definitions (version ``DEFINITION``)
    * IoU: sum over images of ``|P & G|`` divided by the sum of ``|P | G|``.
    * nIoU: mean over images of the per-image IoU; an image whose GT and prediction are both empty
      scores ``empty_niou`` (legacy default 0, option 1).
    * Pd / Fa: components (8-connectivity by default, 4 optional) of the prediction and of the GT; GT
      component ``g`` and predicted component ``j`` can match when their centroids lie at Euclidean
      distance ``< distance`` (3 px, strict). Matching rules:

      - ``"greedy"`` (default, DNANet / BasicIRSTD): for each GT component in label order, the first
        still-unmatched predicted component in label order (raster order of first pixel) is a hit.
      - ``"hungarian"``: ``scipy.optimize.linear_sum_assignment`` on the GT x prediction distance
        matrix where pairs at distance ``>= distance`` cost ``1e12``; assigned pairs closer than
        ``distance`` are hits (maximises the number of hits, then minimises total distance).
      - ``"overlap"``: overlap-first then distance compensation (OPDC of PyIRSTDMetrics, NeurIPS 2025
        D&B): assignment on distances, kept where the pair's pixel IoU ``>= overlap_threshold``; then
        an assignment among the still-unmatched GT and predictions, kept where distance ``< distance``.

      Pd = hits / GT components. Fa = pixels of predicted components that matched nothing / all pixels
      of all images, as a fraction (multiply by 1e6 for the usual "x 1e-6" print).
      ``legacy_area_match=True`` reproduces the DNANet / SCTransNet / MSHNet bug: a predicted component
      counts as a false alarm only if its *area value* differs from every matched component's area, so
      Fa is undercounted. Default is the correct rule (BasicIRSTD issue 12).
    * Target precision = hits / predicted components, target recall = Pd, F1 their harmonic mean.
    * hIoU (PyIRSTDMetrics): ``seg_iou * loc_iou`` with ``seg_iou`` = mean pixel IoU of the matched
      (GT component, predicted component) pairs and ``loc_iou = hits / (hits + FP targets + FN targets)``.
      PyIRSTDMetrics uses the ``"overlap"`` matching for it; here it follows the chosen matching.
      With no hit, ``seg_iou`` is NaN and ``hiou`` equals ``loc_iou`` (0 when anything was predicted or
      expected), as in PyIRSTDMetrics.
    * Pixel ROC / PR: TPR = TP / (TP + FN), FPR = FP / (FP + TN), precision = TP / (TP + FP) per
      threshold, summed over the set.
    * HSE: see :func:`hse` (``HSE_DEFINITION``).

Divisions by zero give NaN (for example Pd on a set without targets) rather than an invented value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np

from irfoundry.errors import ConfigError, DataError
from irfoundry.metrics._sweep import ImageCounts, sweep_image

__all__ = [
    "DEFINITION",
    "HSE_DEFINITION",
    "DEFAULT_HSE_THRESHOLDS",
    "MATCHINGS",
    "Counters",
    "MetricSettings",
    "binarize",
    "image_counts",
    "evaluate_images",
    "summarize",
    "hse",
    "roc_pr",
    "REPORTED",
]

DEFINITION = "irstd-metrics-v1"

#: the scalar metrics every irfoundry output reports at the evaluation threshold (validation logs
#: ``val/<key>``, ``metrics.json`` of ``eval`` / ``eval-maps``, benchmark rows), in this order
REPORTED = ("iou", "niou", "pd", "fa", "target_precision", "target_f1")

HSE_DEFINITION = "hse-recon-v1"
MATCHINGS = ("greedy", "hungarian", "overlap")
#: 0.05, 0.10, ..., 0.95 (19 thresholds), the HSE default.
DEFAULT_HSE_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass(frozen=True)
class MetricSettings:
    """Every choice that changes a number; validated on construction (raises ``ConfigError``)."""

    connectivity: int = 8
    distance: float = 3.0
    matching: str = "greedy"
    legacy_area_match: bool = False
    overlap_threshold: float = 0.5
    empty_niou: float = 0.0

    def __post_init__(self) -> None:
        if self.connectivity not in (4, 8):
            raise ConfigError(f"metrics.connectivity must be 4 or 8, got {self.connectivity!r}.")
        if not (np.isfinite(self.distance) and self.distance > 0):
            raise ConfigError(f"metrics.distance must be a positive number of pixels, got {self.distance!r}.")
        if self.matching not in MATCHINGS:
            raise ConfigError(f"metrics.matching must be one of {MATCHINGS}, got {self.matching!r}.")
        if not 0.0 <= self.overlap_threshold <= 1.0:
            raise ConfigError(
                f"metrics.overlap_threshold must lie in [0, 1], got {self.overlap_threshold!r}."
            )
        if self.empty_niou not in (0.0, 1.0):
            raise ConfigError(
                f"metrics.empty_niou must be 0 (legacy) or 1, got {self.empty_niou!r}."
            )

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Counters:
    """Counters summed over images, arrays of shape ``(T,)`` unless noted.

    ``tp, fp, fn, tn``: pixel confusion counts; ``niou_sum``: sum of per-image IoU (float64);
    ``hits``: matched target pairs; ``n_pred``: predicted components; ``fa_pixels``: pixels of
    unmatched predicted components; ``pair_iou_sum``: sum of matched pairs' IoU (float64);
    scalars ``n_gt`` (GT components), ``n_pixels`` (all pixels), ``n_images``.
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    niou_sum: np.ndarray
    hits: np.ndarray
    n_pred: np.ndarray
    fa_pixels: np.ndarray
    pair_iou_sum: np.ndarray
    n_gt: int = 0
    n_pixels: int = 0
    n_images: int = 0

    @classmethod
    def zeros(cls, n_thresholds: int) -> "Counters":
        zi = np.zeros(n_thresholds, dtype=np.int64)
        zf = np.zeros(n_thresholds, dtype=np.float64)
        return cls(zi.copy(), zi.copy(), zi.copy(), zi.copy(), zf.copy(), zi.copy(), zi.copy(), zi.copy(), zf.copy())

    def add_image(self, c: ImageCounts, *, empty_niou: float) -> None:
        """Add one image's counts (in place)."""
        for name in ("tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels", "pair_iou_sum"):
            getattr(self, name).__iadd__(getattr(c, name))
        union = c.tp + c.fp + c.fn
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, c.tp / np.maximum(union, 1), empty_niou)
        self.niou_sum += iou
        self.n_gt += c.n_gt
        self.n_pixels += c.n_pixels
        self.n_images += 1


def _as_thresholds(thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray:
    t = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if t.ndim != 1 or t.size == 0:
        raise ConfigError(f"metrics.thresholds must be a non-empty 1-D list of numbers, got {thresholds!r}.")
    if not np.all(np.isfinite(t)) or t.min() < 0.0 or t.max() > 1.0:
        raise ConfigError(f"metrics.thresholds must lie in [0, 1], got {t.tolist()}.")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ConfigError(
            f"metrics.thresholds must be strictly increasing, got {t.tolist()}; sort them and drop repeats."
        )
    return t


def _as_prob(prob: Any, name: str = "prob") -> np.ndarray:
    p = np.asarray(prob)
    if p.ndim != 2:
        raise DataError(f"{name} must be one H x W map, got shape {p.shape}; squeeze channel/batch axes.")
    if p.dtype == bool:
        return p.astype(np.float64)
    if not np.issubdtype(p.dtype, np.floating):
        raise DataError(
            f"{name} has dtype {p.dtype}; pass probabilities as float in [0, 1] (divide 8-bit maps by 255)."
        )
    p = p.astype(np.float64, copy=False)
    if p.size and not (p.min() >= 0.0 and p.max() <= 1.0):  # also false for NaN
        raise DataError(
            f"{name} must hold probabilities in [0, 1] (got min {p.min():.4g}, max {p.max():.4g}; NaN "
            "means NaN values); apply a sigmoid to logits first."
        )
    return p


def _as_mask(gt: Any, shape: tuple[int, ...], name: str = "gt") -> np.ndarray:
    g = np.asarray(gt)
    if g.shape != shape:
        raise DataError(f"{name} has shape {g.shape} but the prediction has {shape}; they must match.")
    return g > 0 if g.dtype != bool else g


def binarize(prob: Any, threshold: float = 0.5) -> np.ndarray:
    """``H x W`` bool foreground mask ``prob > threshold`` (float64 comparison)."""
    return _as_prob(prob) > float(threshold)


def image_counts(
    prob: Any,
    gt: Any,
    thresholds: float | Sequence[float] = 0.5,
    *,
    settings: MetricSettings | None = None,
    targets: bool = True,
) -> ImageCounts:
    """Counters of one image at every threshold in one pass.

    Args:
        prob: ``H x W`` probabilities in [0, 1].
        gt: ``H x W`` ground-truth mask.
        thresholds: a number or a strictly increasing sequence of ``T`` numbers in [0, 1].
        settings: matching choices (defaults: 8-connectivity, distance 3, greedy, correct Fa).
        targets: ``False`` skips component matching (pixel counters only, target counters 0).

    Returns:
        :class:`~irfoundry.metrics._sweep.ImageCounts` with ``(T,)`` arrays; integer counts equal those
        of labelling every thresholded map separately.
    """
    s = settings or MetricSettings()
    t = _as_thresholds(thresholds)
    p = _as_prob(prob)
    g = _as_mask(gt, p.shape)
    return sweep_image(
        p,
        g,
        t,
        connectivity=s.connectivity,
        distance=float(s.distance),
        matching=s.matching,
        legacy_area_match=bool(s.legacy_area_match),
        overlap_threshold=float(s.overlap_threshold),
        targets=targets,
    )


def evaluate_images(
    probs: Sequence[Any],
    gts: Sequence[Any],
    thresholds: float | Sequence[float] = 0.5,
    *,
    settings: MetricSettings | None = None,
    targets: bool = True,
) -> Counters:
    """Counters summed over pairs of (``H_i x W_i`` prob, mask); images may differ in size."""
    s = settings or MetricSettings()
    t = _as_thresholds(thresholds)
    if len(probs) != len(gts):
        raise DataError(f"got {len(probs)} predictions but {len(gts)} masks; pass one mask per prediction.")
    total = Counters.zeros(t.size)
    for p, g in zip(probs, gts):
        total.add_image(image_counts(p, g, t, settings=s, targets=targets), empty_niou=s.empty_niou)
    return total


def _div(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def summarize(
    counters: Counters,
    thresholds: float | Sequence[float],
    *,
    settings: MetricSettings | None = None,
) -> dict[str, Any]:
    """Metrics from summed counters. Every value is a ``(T,)`` float64 array (``T`` thresholds).

    Keys: ``thresholds``, ``iou``, ``niou``, ``pd``, ``fa`` (fraction), ``target_precision``,
    ``target_recall`` (= pd), ``target_f1``, ``hiou``, ``seg_iou``, ``loc_iou``, ``tpr``, ``fpr``,
    ``pixel_precision``, ``pixel_recall`` (= tpr), ``pixel_f1``, the raw integer counters (``tp``, ``fp``,
    ``fn``, ``tn``, ``hits``, ``n_pred``, ``fa_pixels`` arrays; ``n_gt``, ``n_pixels``, ``n_images``),
    ``settings`` and ``definition``.
    """
    s = settings or MetricSettings()
    t = _as_thresholds(thresholds)
    c = counters
    hits = c.hits.astype(np.float64)
    fp_t = c.n_pred - c.hits
    fn_t = c.n_gt - c.hits
    iou = _div(c.tp, c.tp + c.fp + c.fn)
    pd = _div(hits, c.n_gt)
    prec_t = _div(hits, c.n_pred)
    f1_t = _div(2 * hits, c.n_pred + c.n_gt)
    seg_iou = _div(c.pair_iou_sum, hits)
    loc_iou = _div(hits, c.hits + fp_t + fn_t)
    return {
        "definition": DEFINITION,
        "settings": s.as_dict(),
        "thresholds": t,
        "iou": iou,
        "niou": _div(c.niou_sum, c.n_images),
        "pd": pd,
        "fa": _div(c.fa_pixels, c.n_pixels),
        "target_precision": prec_t,
        "target_recall": pd,
        "target_f1": f1_t,
        "seg_iou": seg_iou,
        "loc_iou": loc_iou,
        # no hit: seg_iou is undefined but hIoU = loc_iou = 0 (PyIRSTDMetrics divides 0/0 as 0)
        "hiou": np.where(c.hits > 0, seg_iou * loc_iou, loc_iou),
        "tpr": _div(c.tp, c.tp + c.fn),
        "fpr": _div(c.fp, c.fp + c.tn),
        "pixel_precision": _div(c.tp, c.tp + c.fp),
        "pixel_recall": _div(c.tp, c.tp + c.fn),
        "pixel_f1": _div(2 * c.tp, 2 * c.tp + c.fp + c.fn),
        "tp": c.tp.copy(),
        "fp": c.fp.copy(),
        "fn": c.fn.copy(),
        "tn": c.tn.copy(),
        "hits": c.hits.copy(),
        "n_pred": c.n_pred.copy(),
        "fa_pixels": c.fa_pixels.copy(),
        "n_gt": int(c.n_gt),
        "n_pixels": int(c.n_pixels),
        "n_images": int(c.n_images),
    }


def hse(curves: Mapping[str, Any], *, fa_ref: float = 1e-4) -> dict[str, Any]:
    """Holistic SIRST Evaluation, reconstruction ``HSE_DEFINITION`` (FDEP's formula is unpublished).

    With thresholds ``t_1 < ... < t_T`` (T >= 2) and the curves of :func:`summarize`:

    * ``S_pix = trapz((IoU(t) + nIoU(t)) / 2, t) / (t_T - t_1)``
    * ``S_tgt = trapz(Pd(t) * (1 - min(Fa(t) / fa_ref, 1)), t) / (t_T - t_1)``, ``fa_ref = 1e-4``
      (Fa as a fraction, i.e. 100 x 1e-6)
    * ``HSE = 100 * (S_pix + S_tgt) / 2`` (percent)

    Args:
        curves: a mapping with ``thresholds``, ``iou``, ``niou``, ``pd``, ``fa`` (``(T,)`` arrays), for
            example the output of :func:`summarize` or ``MultiThresholdCurves.compute()``.
        fa_ref: false-alarm fraction at which the target part reaches zero.

    Returns:
        ``{"hse", "s_pix", "s_tgt"}`` (floats; ``hse`` in percent, the parts in [0, 1]) plus
        ``fa_ref``, ``definition`` (``"hse-recon-v1"``), ``metrics_definition`` and the five curves, so the
        number can be re-derived if the published formula differs.
    """
    missing = [k for k in ("thresholds", "iou", "niou", "pd", "fa") if k not in curves]
    if missing:
        raise ConfigError(f"hse() needs the curves {missing}; pass the output of summarize() or MultiThresholdCurves.")
    t = np.asarray(curves["thresholds"], dtype=np.float64)
    if t.size < 2:
        raise ConfigError("hse() needs at least 2 thresholds; use the default 0.05..0.95 step 0.05.")
    if not fa_ref > 0:
        raise ConfigError(f"hse fa_ref must be positive, got {fa_ref!r}.")
    iou = np.asarray(curves["iou"], dtype=np.float64)
    niou = np.asarray(curves["niou"], dtype=np.float64)
    pd = np.asarray(curves["pd"], dtype=np.float64)
    fa = np.asarray(curves["fa"], dtype=np.float64)
    span = float(t[-1] - t[0])
    pix = (iou + niou) / 2.0
    tgt = pd * (1.0 - np.minimum(fa / fa_ref, 1.0))
    s_pix = float(np.trapezoid(pix, t) / span)
    s_tgt = float(np.trapezoid(tgt, t) / span)
    return {
        "definition": HSE_DEFINITION,
        "metrics_definition": curves.get("definition", DEFINITION),
        "hse": 100.0 * (s_pix + s_tgt) / 2.0,
        "s_pix": s_pix,
        "s_tgt": s_tgt,
        "fa_ref": float(fa_ref),
        "thresholds": t,
        "iou": iou,
        "niou": niou,
        "pd": pd,
        "fa": fa,
    }


def roc_pr(curves: Mapping[str, Any]) -> dict[str, Any]:
    """Pixel ROC and PR curves from a threshold sweep (the output of :func:`summarize`).

    Points are ordered by increasing FPR (= decreasing threshold). ``roc_auc`` integrates TPR over
    FPR with the trapezoid rule after adding the end points (0, 0) and (1, 1) (all-background and
    all-foreground); it is therefore exact only as the sweep gets dense (DNANet / SimIR use 11 thresholds).
    ``pr_auc`` integrates precision over recall on the sweep points alone (thresholds where nothing is
    predicted, precision NaN, are skipped).
    """
    t = np.asarray(curves["thresholds"], dtype=np.float64)
    order = np.argsort(-t, kind="stable")
    fpr = np.asarray(curves["fpr"], dtype=np.float64)[order]
    tpr = np.asarray(curves["tpr"], dtype=np.float64)[order]
    prec = np.asarray(curves["pixel_precision"], dtype=np.float64)[order]
    rec = np.asarray(curves["pixel_recall"], dtype=np.float64)[order]
    x = np.concatenate([[0.0], fpr, [1.0]])
    y = np.concatenate([[0.0], tpr, [1.0]])
    ok = np.isfinite(prec) & np.isfinite(rec)
    pr_auc = float(np.trapezoid(prec[ok], rec[ok])) if ok.sum() >= 2 else float("nan")
    return {
        "definition": curves.get("definition", DEFINITION),
        "thresholds": t[order],
        "fpr": fpr,
        "tpr": tpr,
        "precision": prec,
        "recall": rec,
        "roc_auc": float(np.trapezoid(y, x)) if np.all(np.isfinite(y)) else float("nan"),
        "pr_auc": pr_auc,
    }
