"""Seed statistics of a study: mean +/- sample std, and paired differences with a Student-t interval.

A comparison of two arms pairs their runs by seed (same data order, same crops, same initial host
weights up to what the arms change), so the per-seed difference removes most of the seed-to-seed
spread. :func:`paired_difference` reports its mean, sample std, the two-sided ``confidence`` interval of the
mean (``t.ppf(0.5 + confidence / 2, n - 1) * std / sqrt(n)``), the wins and the verdict ``beyond_spread``:
the whole interval lies above zero (a paired t-test at ``1 - confidence``). With fewer than two seeds
there is no spread to beat, so it is ``False``. NaN values (a metric a run could not define) are dropped,
never averaged.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

__all__ = ["mean_std", "paired_difference"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, sample std)`` of the finite values; ``(nan, nan)`` without any, std 0 for one value."""
    values = [float(v) for v in values if v is not None and v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_difference(diffs: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Per-seed differences ``arm - reference``: ``{"n", "mean", "std", "ci", "confidence", "wins",
    "beyond_spread", "diffs"}`` (see the module docstring)."""
    diffs = [float(d) for d in diffs if d is not None and d == d]
    n = len(diffs)
    mean, std = mean_std(diffs)
    lo = hi = float("nan")
    if n > 1:
        from scipy.stats import t

        half = float(t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
        lo, hi = mean - half, mean + half
    return {"n": n, "mean": mean, "std": std, "ci": (lo, hi), "confidence": confidence,
            "wins": sum(d > 0 for d in diffs), "beyond_spread": bool(n > 1 and lo > 0), "diffs": diffs}
