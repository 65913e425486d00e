"""torchmetrics modules: thin wrappers whose state is the summed counters of the functional core.

Every state is registered with ``dist_reduce_fx="sum"``: memory is constant in the number of images
and multi-process evaluation (DDP) gives the single-process numbers. ``update(preds, target)`` takes

* ``preds``: probabilities in [0, 1] (apply sigmoid to logits first), a tensor or array of shape
  ``H x W``, ``N x H x W`` or ``N x 1 x H x W``, or a list of ``H_i x W_i`` maps of different sizes;
* ``target``: masks of the same shape(s) (bool, 0/1 or 0/255).

Binarisation is ``p > threshold`` in float64 (see :mod:`irfoundry.metrics.functional`).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torchmetrics import Metric

from irfoundry.errors import DataError
from irfoundry.metrics.functional import (
    DEFAULT_HSE_THRESHOLDS,
    Counters,
    MetricSettings,
    _as_thresholds,
    hse,
    image_counts,
    summarize,
)

__all__ = [
    "IRSTDMetrics",
    "IoU",
    "NIoU",
    "PdFa",
    "TargetPRF",
    "HIoU",
    "MultiThresholdCurves",
]

_INT_CURVES = ("tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels")
_FLOAT_CURVES = ("niou_sum", "pair_iou_sum")
_SCALARS = ("n_gt", "n_pixels", "n_images")


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _as_stack(x: Any, name: str) -> list[np.ndarray]:
    if isinstance(x, (list, tuple)):
        out = []
        for i, item in enumerate(x):
            a = _to_numpy(item)
            a = a.reshape(a.shape[-2:]) if a.ndim > 2 and int(np.prod(a.shape[:-2])) == 1 else a
            if a.ndim != 2:
                raise DataError(f"{name}[{i}] has shape {a.shape}; each list item must be one H x W map.")
            out.append(a)
        return out
    a = _to_numpy(x)
    if a.ndim == 2:
        return [a]
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise DataError(
            f"{name} has shape {a.shape}; expected H x W, N x H x W or N x 1 x H x W (or a list of H x W maps)."
        )
    return list(a)


def _pairs(preds: Any, target: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    p = _as_stack(preds, "preds")
    t = _as_stack(target, "target")
    if len(p) != len(t):
        raise DataError(f"preds holds {len(p)} images but target holds {len(t)}; pass one mask per map.")
    return zip(p, t)


class _CountersMetric(Metric):
    """Base: accumulates :class:`~irfoundry.metrics.functional.Counters` at ``T`` thresholds."""

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        thresholds: float | Sequence[float],
        *,
        connectivity: int = 8,
        distance: float = 3.0,
        matching: str = "greedy",
        legacy_area_match: bool = False,
        overlap_threshold: float = 0.5,
        empty_niou: float = 0.0,
        targets: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = MetricSettings(
            connectivity=connectivity,
            distance=float(distance),
            matching=matching,
            legacy_area_match=bool(legacy_area_match),
            overlap_threshold=float(overlap_threshold),
            empty_niou=float(empty_niou),
        )
        self.thresholds = _as_thresholds(thresholds)
        self._targets = targets
        n_t = self.thresholds.size
        for name in _INT_CURVES:
            self.add_state(name, default=torch.zeros(n_t, dtype=torch.int64), dist_reduce_fx="sum")
        for name in _FLOAT_CURVES:
            self.add_state(name, default=torch.zeros(n_t, dtype=torch.float64), dist_reduce_fx="sum")
        for name in _SCALARS:
            self.add_state(name, default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Any, target: Any) -> None:  # type: ignore[override]
        """Add a batch: ``preds`` probabilities, ``target`` masks (shapes in the module docstring)."""
        acc = Counters.zeros(self.thresholds.size)
        for p, g in _pairs(preds, target):
            c = image_counts(p, g, self.thresholds, settings=self.settings, targets=self._targets)
            acc.add_image(c, empty_niou=self.settings.empty_niou)
        for name in _INT_CURVES + _FLOAT_CURVES:
            state = getattr(self, name)
            state += torch.from_numpy(getattr(acc, name)).to(device=state.device, dtype=state.dtype)
        for name in _SCALARS:
            state = getattr(self, name)
            state += int(getattr(acc, name))

    def counters(self) -> Counters:
        """The accumulated (already synchronised inside ``compute``) counters as numpy arrays."""
        kw = {n: getattr(self, n).detach().cpu().numpy().copy() for n in _INT_CURVES + _FLOAT_CURVES}
        kw.update({n: int(getattr(self, n)) for n in _SCALARS})
        return Counters(**kw)

    def _summary(self) -> dict[str, Any]:
        return summarize(self.counters(), self.thresholds, settings=self.settings)


def _scalar(summary: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "definition": summary["definition"],
        "settings": summary["settings"],
        "threshold": float(summary["thresholds"][0]),
    }
    for k in keys:
        v = summary[k]
        out[k] = float(v[0]) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else (
            int(v[0]) if isinstance(v, np.ndarray) else v
        )
    return out


_ALL_KEYS = (
    "iou", "niou", "pd", "fa", "target_precision", "target_recall", "target_f1", "hiou", "seg_iou",
    "loc_iou", "pixel_precision", "pixel_recall", "pixel_f1", "tp", "fp", "fn", "tn", "hits", "n_pred",
    "fa_pixels", "n_gt", "n_pixels", "n_images",
)


class IRSTDMetrics(_CountersMetric):
    """All standard IRSTD metrics at one threshold (default 0.5).

    ``compute()`` returns a dict of Python numbers: ``iou``, ``niou``, ``pd``, ``fa`` (fraction; x1e6
    for the usual print), ``target_precision``, ``target_recall``, ``target_f1``, ``hiou``,
    ``seg_iou``, ``loc_iou``, ``pixel_precision``, ``pixel_recall``, ``pixel_f1``, the integer
    counters, ``threshold``, ``settings`` and ``definition``.
    """

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__([float(threshold)], **kwargs)

    def compute(self) -> dict[str, Any]:
        return _scalar(self._summary(), _ALL_KEYS)


class IoU(_CountersMetric):
    """Set-level IoU (sum of intersections / sum of unions) at one threshold. ``compute()`` -> 0-d tensor."""

    higher_is_better = True

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__([float(threshold)], targets=False, **kwargs)

    def compute(self) -> torch.Tensor:
        return torch.tensor(float(self._summary()["iou"][0]), dtype=torch.float64)


class NIoU(_CountersMetric):
    """Mean per-image IoU; ``empty_niou`` (0 legacy, or 1) scores images with empty GT and prediction.
    ``compute()`` -> 0-d tensor."""

    higher_is_better = True

    def __init__(self, threshold: float = 0.5, *, empty_niou: float = 0.0, **kwargs: Any) -> None:
        super().__init__([float(threshold)], targets=False, empty_niou=empty_niou, **kwargs)

    def compute(self) -> torch.Tensor:
        return torch.tensor(float(self._summary()["niou"][0]), dtype=torch.float64)


class PdFa(_CountersMetric):
    """Probability of detection and false-alarm rate (DNANet rule by default).

    ``compute()`` -> ``{"pd", "fa", "hits", "n_gt", "fa_pixels", "n_pixels", "threshold", "settings",
    "definition"}``; ``fa`` is a fraction.
    """

    def compute(self) -> dict[str, Any]:
        return _scalar(self._summary(), ("pd", "fa", "hits", "n_gt", "fa_pixels", "n_pixels"))

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__([float(threshold)], **kwargs)


class TargetPRF(_CountersMetric):
    """Target-level precision (hits / predicted components), recall (= Pd) and F1."""

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__([float(threshold)], **kwargs)

    def compute(self) -> dict[str, Any]:
        return _scalar(
            self._summary(), ("target_precision", "target_recall", "target_f1", "hits", "n_pred", "n_gt")
        )


class HIoU(_CountersMetric):
    """Hierarchical IoU of PyIRSTDMetrics: ``seg_iou * loc_iou``; overlap-first matching by default."""

    def __init__(self, threshold: float = 0.5, *, matching: str = "overlap", **kwargs: Any) -> None:
        super().__init__([float(threshold)], matching=matching, **kwargs)

    def compute(self) -> dict[str, Any]:
        return _scalar(self._summary(), ("hiou", "seg_iou", "loc_iou", "hits", "n_pred", "n_gt"))


class MultiThresholdCurves(_CountersMetric):
    """Exact curves at ``T`` thresholds from one pass per image (no per-threshold labelling).

    Args:
        thresholds: strictly increasing values in [0, 1]; default 0.05, 0.10, ..., 0.95 (HSE).
        connectivity, distance, matching, legacy_area_match, overlap_threshold, empty_niou: as in
            :class:`~irfoundry.metrics.functional.MetricSettings`.

    ``compute()`` returns :func:`~irfoundry.metrics.functional.summarize`'s dict: ``(T,)`` float64 arrays
    ``iou``, ``niou``, ``pd``, ``fa``, ``target_precision``, ``target_f1``, ``hiou``, ``tpr``, ``fpr``,
    ``pixel_precision`` (pixel ROC / PR points), the integer counters and ``definition``.
    :meth:`hse` computes the HSE reconstruction from the same state.
    """

    def __init__(self, thresholds: Sequence[float] = DEFAULT_HSE_THRESHOLDS, **kwargs: Any) -> None:
        super().__init__(thresholds, **kwargs)

    def compute(self) -> dict[str, Any]:
        return self._summary()

    def hse(self, *, fa_ref: float = 1e-4) -> dict[str, Any]:
        """HSE (``hse-recon-v1``) from the current curves; see :func:`irfoundry.metrics.functional.hse`."""
        return hse(self.compute(), fa_ref=fa_ref)
