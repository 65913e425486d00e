"""Benchmark: irfoundry.metrics against the naive per-threshold reference on real test splits.

Times (wall clock, ``time.perf_counter``, best of ``repeats``):

* ``single``: the standard metrics at threshold 0.5 (``IRSTDMetrics``: IoU, nIoU, Pd/Fa, target F1, hIoU)
  versus ``naive_evaluate(..., [0.5])``;
* ``curves19``: ``MultiThresholdCurves`` at 0.05..0.95 step 0.05 plus ``hse()`` versus the naive loop over
  the 19 thresholds plus ``naive_hse``;
* ``curves101``: the same at ``linspace(0, 1, 101)``.

Predictions are graded perturbations of the real masks (``tests/metrics/synth_preds.py``, seeded). The
naive reference lives with the tests (``tests/metrics/naive_irstd_metrics.py``) and is imported by adding
that folder to ``sys.path``; it is never part of the package. Because the naive sweep is slow, it runs on
the first ``naive_max_images`` images of each split (``None`` = all) and the ratio compares both engines
on exactly those images; the fast engine is also timed on the whole split. Every run checks that the
integer counts of both engines are identical.

Usage: ``python benchmarks/bench_metrics.py [--data-root ../shared/data] [--naive-max-images 40]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

_REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO / "tests" / "metrics"))

from naive_irstd_metrics import naive_evaluate, naive_hse  # noqa: E402
from synth_preds import load_masks, perturbed_prediction  # noqa: E402

from irfoundry.metrics import DEFAULT_HSE_THRESHOLDS, IRSTDMetrics, MultiThresholdCurves  # noqa: E402

_INT_KEYS = ("tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels")


def _best(fn, repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _fast_single(probs, gts):
    m = IRSTDMetrics(threshold=0.5)
    for p, g in zip(probs, gts):
        m.update(p, g)
    return m.compute()


def _fast_curves(probs, gts, thresholds):
    m = MultiThresholdCurves(thresholds=thresholds)
    for p, g in zip(probs, gts):
        m.update(p, g)
    curves = m.compute()
    curves["hse"] = m.hse()["hse"]
    return curves


def _check(fast: dict, ref: dict, what: str) -> None:
    for k in _INT_KEYS:
        if not np.array_equal(np.atleast_1d(fast[k]), ref[k]):
            raise AssertionError(f"{what}: counter {k} differs from the naive reference")


def run(
    data_root: str | Path,
    *,
    datasets: Sequence[str] = ("sirst", "nudt"),
    naive_max_images: int | None = 40,
    repeats: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Time fast vs naive metrics; returns ``{dataset: {case: {...seconds, ratio...}}, "machine": ...}``."""
    thresholds = {
        "curves19": np.asarray(DEFAULT_HSE_THRESHOLDS, dtype=np.float64),
        "curves101": np.linspace(0.0, 1.0, 101),
    }
    result: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": __import__("os").cpu_count()},
        "naive_max_images": naive_max_images,
        "repeats": repeats,
    }
    for ds in datasets:
        ids, gts = load_masks(Path(data_root), ds)
        rng = np.random.default_rng(seed)
        probs = [perturbed_prediction(g, rng) for g in gts]
        n_sub = len(gts) if naive_max_images is None else min(naive_max_images, len(gts))
        sub_p, sub_g = probs[:n_sub], gts[:n_sub]
        entry: dict[str, Any] = {"images": len(gts), "naive_images": n_sub,
                                 "pixels": int(sum(g.size for g in gts))}

        t_full, _ = _best(lambda: _fast_single(probs, gts), repeats)
        t_fast, fast = _best(lambda: _fast_single(sub_p, sub_g), repeats)
        t_naive, ref = _best(lambda: naive_evaluate(sub_p, sub_g, [0.5]), repeats)
        _check(fast, ref, f"{ds} single")
        entry["single"] = {"fast_s_full_split": t_full, "fast_s": t_fast, "naive_s": t_naive,
                           "ratio": t_naive / t_fast}

        for case, th in thresholds.items():
            t_full, full = _best(lambda: _fast_curves(probs, gts, th), repeats)
            t_fast, fast = _best(lambda: _fast_curves(sub_p, sub_g, th), repeats)

            def naive_case():
                out = naive_evaluate(sub_p, sub_g, th)
                out["hse"] = naive_hse(out, th)
                return out

            t_naive, ref = _best(naive_case, repeats)
            _check(fast, ref, f"{ds} {case}")
            entry[case] = {"thresholds": int(th.size), "fast_s_full_split": t_full, "fast_s": t_fast,
                           "naive_s": t_naive, "ratio": t_naive / t_fast, "hse_full_split": full["hse"],
                           "hse_fast_subset": fast["hse"], "hse_naive_subset": ref["hse"]}
        result[ds] = entry
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"machine: {result['machine']}")
    for ds, entry in result.items():
        if not isinstance(entry, dict) or "images" not in entry:
            continue
        print(f"{ds}: {entry['images']} images (naive on {entry['naive_images']})")
        for case in ("single", "curves19", "curves101"):
            e = entry[case]
            print(f"  {case:10s} fast {e['fast_s']:.3f}s  naive {e['naive_s']:.3f}s  ratio {e['ratio']:.1f}x"
                  f"  (fast on full split {e['fast_s_full_split']:.3f}s)")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(_REPO / ".." / "shared" / "data"))
    ap.add_argument("--datasets", nargs="+", default=["sirst", "nudt"])
    ap.add_argument("--naive-max-images", type=int, default=40, help="0 = all images")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", help="also write the result dict here")
    a = ap.parse_args(argv)
    res = run(a.data_root, datasets=a.datasets, naive_max_images=a.naive_max_images or None,
              repeats=a.repeats)
    _print(res)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
