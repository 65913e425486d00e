"""Exact parity of the one-pass engine with the naive per-threshold reference (irfoundry.bench.reference.naive_metrics).

Integer counts (TP/FP/FN/TN pixels, hits, GT and predicted components, false-alarm pixels) must be
equal; float sums (per-image IoU, matched-pair IoU) equal to rounding. Real masks come from
``<repo>/../shared/data`` (SIRST idx_427 test, NUDT-SIRST 50_50 test) with perturbed predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irfoundry.bench.reference.naive_metrics import naive_evaluate, naive_hse
from irfoundry.bench.reference.perturb import (
    load_masks,
    perturbed_prediction,
    random_blobs,
)
from irfoundry.metrics import MetricSettings, evaluate_images, hse, summarize

DATA_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

INT_KEYS = ("tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels")


def _assert_parity(probs, gts, thresholds, **kw):
    empty_niou = kw.pop("empty_niou", 0.0)
    s = MetricSettings(empty_niou=empty_niou, **kw)
    fast = evaluate_images(probs, gts, thresholds, settings=s)
    ref = naive_evaluate(probs, gts, thresholds, empty_niou=empty_niou, **kw)
    for k in INT_KEYS:
        np.testing.assert_array_equal(getattr(fast, k), ref[k], err_msg=f"{k} differs ({kw})")
    assert fast.n_gt == ref["n_gt"]
    assert fast.n_pixels == ref["n_pixels"]
    np.testing.assert_allclose(fast.niou_sum, ref["niou_sum"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast.pair_iou_sum, ref["pair_iou"], rtol=1e-12, atol=1e-12)
    curves = summarize(fast, thresholds, settings=s)
    if len(np.atleast_1d(thresholds)) >= 2:
        assert hse(curves)["hse"] == pytest.approx(naive_hse(ref, thresholds), abs=1e-9)
    return curves


@pytest.mark.parametrize("matching", ["greedy", "hungarian", "overlap"])
@pytest.mark.parametrize("connectivity", [8, 4])
@pytest.mark.parametrize("legacy", [False, True])
def test_synthetic_parity(matching, connectivity, legacy):
    rng = np.random.default_rng(11)
    gts = [random_blobs(rng, 40, 48, int(rng.integers(0, 6))) for _ in range(10)]
    probs = [perturbed_prediction(g, rng) for g in gts]
    # dense clutter: many touching components that merge as the threshold falls
    probs.append(np.round(rng.random((40, 48)) ** 3 * 255) / 255)
    gts.append(random_blobs(rng, 40, 48, 8))
    thresholds = np.linspace(0.0, 1.0, 11)  # includes p > 0 and p > 1
    _assert_parity(probs, gts, thresholds, matching=matching, connectivity=connectivity,
                   legacy_area_match=legacy)


def _real(dataset, limit=None, step=1, seed=0):
    if not DATA_ROOT.is_dir():
        pytest.skip(f"real data not found at {DATA_ROOT} (shared data is only on the dev machine)")
    ids, masks = load_masks(DATA_ROOT, dataset, limit=limit)
    masks = masks[::step]
    rng = np.random.default_rng(seed)
    probs = [perturbed_prediction(m, rng) for m in masks]
    return probs, masks


@pytest.mark.realdata
@pytest.mark.slow
def test_sirst_test_split_parity_default_and_legacy():
    probs, gts = _real("sirst")
    assert len(gts) == 86
    thresholds = np.round(np.arange(1, 20) * 0.05, 2)[::2]  # 10 of the HSE thresholds
    curves = _assert_parity(probs, gts, thresholds)
    assert np.nanmax(curves["pd"]) > 0.3  # the perturbed predictions still find targets
    _assert_parity(probs, gts, [0.5], legacy_area_match=True)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize(
    "kw", [{"matching": "hungarian"}, {"matching": "overlap"}, {"connectivity": 4, "empty_niou": 1.0}]
)
def test_sirst_test_split_parity_options(kw):
    probs, gts = _real("sirst", step=3, seed=1)
    _assert_parity(probs, gts, [0.1, 0.3, 0.5, 0.7], **kw)


@pytest.mark.realdata
@pytest.mark.slow
def test_nudt_test_split_parity():
    probs, gts = _real("nudt", step=8, seed=2)
    assert len(gts) == 83
    _assert_parity(probs, gts, np.linspace(0.0, 1.0, 11))
    _assert_parity(probs, gts, [0.2, 0.5], legacy_area_match=True)


@pytest.mark.realdata
@pytest.mark.slow
def test_nudt_full_test_split_single_threshold():
    probs, gts = _real("nudt", seed=3)
    assert len(gts) == 664
    _assert_parity(probs, gts, [0.5])
