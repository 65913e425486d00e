"""``irfoundry bench metrics``: irfoundry.metrics against the naive per-threshold reference on real test splits.

Times (wall clock, ``time.perf_counter``, best of ``repeats``):

* ``single``: the standard metrics at threshold 0.5 (``IRSTDMetrics``: IoU, nIoU, Pd/Fa, target F1, hIoU)
  versus ``naive_evaluate(..., [0.5])``;
* ``curves19``: ``MultiThresholdCurves`` at 0.05..0.95 step 0.05 plus ``hse()`` versus the naive loop over
  the 19 thresholds plus ``naive_hse``;
* ``curves101``: the same at ``linspace(0, 1, 101)``.

Predictions are graded perturbations of the real test masks of SIRST v1 (``idx_427``) and NUDT-SIRST
(``50_50``) (:mod:`irfoundry.bench.reference.perturb`, seeded), scored by the naive reference
(:mod:`irfoundry.bench.reference.naive_metrics`, which needs scikit-image: the ``test`` extra). Because the naive sweep is slow,
it runs on the first ``naive_max_images`` images of each split (``None`` / 0 = all) and the ratio
compares both engines on exactly those images; the fast engine is also timed on the whole split. Every
case checks that the integer counts of both engines are identical (``counts_equal``; ``ok`` is False
otherwise).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from irfoundry.jsonio import write_json
from irfoundry.errors import ConfigError, DataError, IRFoundryError

#: the real data next to a source checkout (``<checkout>/../shared/data``); pass --data-root elsewhere
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[3].parent / "shared" / "data"
DATASETS = ("sirst", "nudt")
_INT_KEYS = ("tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels")

EPILOG = """examples:
  irfoundry bench metrics                                  # SIRST + NUDT test splits, naive on 40 images each
  irfoundry bench metrics --data-root ../shared/data --naive-max-images 0 --json bench_metrics.json
  irfoundry bench metrics --datasets sirst --max-images 20 --naive-max-images 5
"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``irfoundry bench metrics`` (also used by ``benchmarks/bench_metrics.py``)."""
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT),
                        help="folder holding sirst/ and nudt_sirst/ (default: <checkout>/../shared/data)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS,
                        help="test splits to use (default: both)")
    parser.add_argument("--naive-max-images", type=int, default=40,
                        help="images per split for the naive reference (0 = all; default 40)")
    parser.add_argument("--max-images", type=int, default=0,
                        help="load only the first N test masks per split (0 = all; default all)")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many timings (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbed predictions")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the result dict here")
    return parser


def load_reference() -> tuple[ModuleType, ModuleType]:
    """The naive reference and the prediction synthesiser (:mod:`irfoundry.bench.reference`)."""
    try:
        from irfoundry.bench.reference import naive_metrics, perturb
    except ImportError as exc:
        raise IRFoundryError(
            f"bench metrics: the naive reference needs scikit-image, part of the test extra ({exc}); "
            "pip install 'irfoundry[test]'"
        ) from exc
    return naive_metrics, perturb


def _best(fn, repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _fast_single(probs, gts):
    from irfoundry.metrics import IRSTDMetrics

    m = IRSTDMetrics(threshold=0.5)
    for p, g in zip(probs, gts):
        m.update(p, g)
    return m.compute()


def _fast_curves(probs, gts, thresholds):
    from irfoundry.metrics import MultiThresholdCurves

    m = MultiThresholdCurves(thresholds=thresholds)
    for p, g in zip(probs, gts):
        m.update(p, g)
    curves = m.compute()
    curves["hse"] = m.hse()["hse"]
    return curves


def _differing(fast: dict, ref: dict) -> list[str]:
    import numpy as np

    return [k for k in _INT_KEYS if not np.array_equal(np.atleast_1d(fast[k]), ref[k])]


def run(args: dict) -> dict[str, Any]:
    """Time fast vs naive metrics; returns ``{dataset: {case: {...seconds, ratio, counts_equal}}, "machine",
    "ok", ...}``. Options as :func:`add_arguments` defines them (a dict, e.g. ``vars(namespace)``)."""
    import numpy as np

    from irfoundry.metrics import DEFAULT_HSE_THRESHOLDS

    a = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
    unknown = sorted(set(args) - set(a))
    if unknown:
        raise ConfigError(f"bench metrics got unknown options {unknown}; known: {sorted(a)}")
    a.update(args)
    naive_mod, synth_mod = load_reference()
    data_root = Path(a["data_root"])
    folders = {"sirst": data_root / "sirst", "nudt": data_root / "nudt_sirst"}
    for ds in a["datasets"]:
        if ds not in folders:
            raise ConfigError(f"unknown dataset {ds!r}; choose from {', '.join(DATASETS)}")
        if not folders[ds].is_dir():
            raise DataError(f"{folders[ds]} does not exist; pass --data-root FOLDER holding sirst/ and nudt_sirst/")
    thresholds = {
        "curves19": np.asarray(DEFAULT_HSE_THRESHOLDS, dtype=np.float64),
        "curves101": np.linspace(0.0, 1.0, 101),
    }
    naive_max = a["naive_max_images"] or None
    result: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "naive_max_images": naive_max,
        "repeats": a["repeats"],
        "ok": True,
    }
    for ds in a["datasets"]:
        _, gts = synth_mod.load_masks(data_root, ds, limit=a["max_images"] or None)
        rng = np.random.default_rng(a["seed"])
        probs = [synth_mod.perturbed_prediction(g, rng) for g in gts]
        n_sub = len(gts) if naive_max is None else min(naive_max, len(gts))
        sub_p, sub_g = probs[:n_sub], gts[:n_sub]
        entry: dict[str, Any] = {"images": len(gts), "naive_images": n_sub, "pixels": int(sum(g.size for g in gts))}

        t_full, _ = _best(lambda: _fast_single(probs, gts), a["repeats"])
        t_fast, fast = _best(lambda: _fast_single(sub_p, sub_g), a["repeats"])
        t_naive, ref = _best(lambda: naive_mod.naive_evaluate(sub_p, sub_g, [0.5]), a["repeats"])
        diff = _differing(fast, ref)
        entry["single"] = {"fast_s_full_split": t_full, "fast_s": t_fast, "naive_s": t_naive,
                           "ratio": t_naive / t_fast, "counts_equal": not diff, "differing_counters": diff}

        for case, th in thresholds.items():
            t_full, full = _best(lambda: _fast_curves(probs, gts, th), a["repeats"])
            t_fast, fast = _best(lambda: _fast_curves(sub_p, sub_g, th), a["repeats"])

            def naive_case():
                out = naive_mod.naive_evaluate(sub_p, sub_g, th)
                out["hse"] = naive_mod.naive_hse(out, th)
                return out

            t_naive, ref = _best(naive_case, a["repeats"])
            diff = _differing(fast, ref)
            entry[case] = {"thresholds": int(th.size), "fast_s_full_split": t_full, "fast_s": t_fast,
                           "naive_s": t_naive, "ratio": t_naive / t_fast, "counts_equal": not diff,
                           "differing_counters": diff, "hse_full_split": float(full["hse"]),
                           "hse_fast_subset": float(fast["hse"]), "hse_naive_subset": float(ref["hse"])}
        result["ok"] = result["ok"] and all(entry[c]["counts_equal"] for c in ("single", *thresholds))
        result[ds] = entry
    if a["json"]:
        result["json"] = str(write_json(result, a["json"]))
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [f"machine: {result['machine']}"]
    for ds, entry in result.items():
        if not isinstance(entry, dict) or "images" not in entry:
            continue
        lines.append(f"{ds}: {entry['images']} images (naive on {entry['naive_images']})")
        for case in ("single", "curves19", "curves101"):
            e = entry[case]
            check = "counts equal" if e["counts_equal"] else f"COUNTS DIFFER: {', '.join(e['differing_counters'])}"
            lines.append(f"  {case:10s} fast {e['fast_s']:.3f}s  naive {e['naive_s']:.3f}s  ratio {e['ratio']:.1f}x"
                         f"  (fast on full split {e['fast_s_full_split']:.3f}s)  {check}")
    if result.get("json"):
        lines.append(f"results: {result['json']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="irfoundry bench metrics", description=__doc__.split("\n")[0]))
    result = run(vars(parser.parse_args(argv)))
    print(format_table(result))
    return 0 if result["ok"] else 1
