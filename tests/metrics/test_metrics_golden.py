"""Hand-computed cases for irfoundry.metrics (values written as literals)."""

from __future__ import annotations

import numpy as np
import pytest

from irfoundry.errors import ConfigError, DataError
from irfoundry.metrics import (
    IRSTDMetrics,
    MetricSettings,
    MultiThresholdCurves,
    binarize,
    evaluate_images,
    hse,
    image_counts,
    roc_pr,
    summarize,
)


def _img(h, w, pixels, value=1.0):
    a = np.zeros((h, w))
    for r, c in pixels:
        a[r, c] = value
    return a


def _run(probs, gts, **kw):
    m = IRSTDMetrics(**kw)
    m.update(list(probs), list(gts))
    return m.compute()


def test_one_target_and_one_false_alarm():
    gt = _img(8, 8, [(2, 2), (2, 3), (3, 2), (3, 3)]) > 0
    prob = gt * 0.9 + _img(8, 8, [(6, 6)], 0.9)
    r = _run([prob], [gt])
    assert r["iou"] == pytest.approx(0.8)  # 4 / 5
    assert r["niou"] == pytest.approx(0.8)
    assert r["pd"] == 1.0
    assert r["fa"] == pytest.approx(1 / 64)
    assert r["fa_pixels"] == 1 and r["hits"] == 1 and r["n_pred"] == 2 and r["n_gt"] == 1
    assert r["target_precision"] == pytest.approx(0.5)
    assert r["target_f1"] == pytest.approx(2 / 3)
    assert r["seg_iou"] == pytest.approx(1.0)
    assert r["loc_iou"] == pytest.approx(0.5)  # 1 / (1 + 1 FP + 0 FN)
    assert r["hiou"] == pytest.approx(0.5)
    assert r["definition"] == "irstd-metrics-v1"


def test_binarisation_boundary_matches_8bit_rule():
    prob = np.array([[0.5, 128 / 255, 127 / 255, 0.5000001]])
    assert binarize(prob, 0.5).tolist() == [[False, True, False, True]]
    # float32 maps are compared in float64: float32(0.05) > 0.05 is foreground
    p32 = np.array([[np.float32(0.05)]], dtype=np.float32)
    assert binarize(p32, 0.05).tolist() == [[True]]


def test_distance_threshold_is_strict():
    gt = _img(5, 10, [(0, 0)]) > 0
    at_3 = _img(5, 10, [(0, 3)])
    at_2 = _img(5, 10, [(0, 2)])
    assert _run([at_3], [gt])["pd"] == 0.0
    assert _run([at_3], [gt])["fa_pixels"] == 1
    assert _run([at_2], [gt])["pd"] == 1.0
    assert _run([at_3], [gt], distance=3.5)["pd"] == 1.0


def test_greedy_order_versus_hungarian_and_overlap():
    # GT A=(5,2), B=(5,6); P1=(3,4) is within 2.83 px of both, P2=(7,2) is 2 px from A only.
    gt = _img(12, 20, [(5, 2), (5, 6)]) > 0
    prob = _img(12, 20, [(3, 4), (7, 2)])
    greedy = _run([prob], [gt])
    assert (greedy["hits"], greedy["fa_pixels"], greedy["pd"]) == (1, 1, 0.5)  # A takes P1 first
    hung = _run([prob], [gt], matching="hungarian")
    assert (hung["hits"], hung["fa_pixels"], hung["pd"]) == (2, 0, 1.0)
    over = _run([prob], [gt], matching="overlap")  # no overlap: distance compensation decides
    assert (over["hits"], over["fa_pixels"]) == (2, 0)


def test_connectivity_4_versus_8():
    gt = _img(6, 6, [(1, 1), (2, 2)]) > 0  # diagonal neighbours
    prob = gt.astype(float)
    assert _run([prob], [gt])["n_gt"] == 1
    r4 = _run([prob], [gt], connectivity=4)
    assert r4["n_gt"] == 2 and r4["hits"] == 2 and r4["n_pred"] == 2


def test_legacy_area_match_undercounts_fa():
    # Two 2x2 GT targets, both detected exactly; a 2x2 clutter blob has the same area (4) as the matches.
    gt = _img(20, 20, [(2, 2), (2, 3), (3, 2), (3, 3), (12, 12), (12, 13), (13, 12), (13, 13)]) > 0
    clutter = _img(20, 20, [(2, 15), (2, 16), (3, 15), (3, 16)])
    odd = _img(20, 20, [(17, 2), (17, 3), (17, 4)])  # area 3: counted by both rules
    prob = np.maximum(gt * 0.9, np.maximum(clutter, odd) * 0.8)
    right = _run([prob], [gt])
    legacy = _run([prob], [gt], legacy_area_match=True)
    assert right["fa_pixels"] == 7  # 4 + 3
    assert legacy["fa_pixels"] == 3  # the area-4 blob is dropped by the bug
    assert right["pd"] == legacy["pd"] == 1.0
    # the multi-threshold sweep applies the same rule at every threshold
    t = [0.1, 0.5, 0.85]
    c_right = evaluate_images([prob], [gt], t)
    c_legacy = evaluate_images([prob], [gt], t, settings=MetricSettings(legacy_area_match=True))
    assert c_right.fa_pixels.tolist() == [7, 7, 0]
    assert c_legacy.fa_pixels.tolist() == [3, 3, 0]


def test_niou_empty_policy():
    gt1 = _img(4, 4, [(1, 1)]) > 0
    empty = np.zeros((4, 4), dtype=bool)
    probs, gts = [gt1.astype(float), np.zeros((4, 4))], [gt1, empty]
    assert _run(probs, gts)["niou"] == pytest.approx(0.5)  # legacy: empty/empty scores 0
    assert _run(probs, gts, empty_niou=1.0)["niou"] == pytest.approx(1.0)
    assert _run(probs, gts)["iou"] == pytest.approx(1.0)


def test_empty_everything_gives_nan_not_invented_values():
    r = _run([np.zeros((4, 4))], [np.zeros((4, 4), dtype=bool)])
    assert np.isnan(r["pd"]) and np.isnan(r["iou"]) and r["fa"] == 0.0


def test_hse_hand_computed():
    curves = {
        "thresholds": np.array([0.1, 0.3]),
        "iou": np.array([1.0, 0.5]),
        "niou": np.array([1.0, 0.5]),
        "pd": np.array([1.0, 1.0]),
        "fa": np.array([0.0, 5e-5]),  # half of fa_ref at the second threshold
    }
    out = hse(curves)
    assert out["s_pix"] == pytest.approx(0.75)
    assert out["s_tgt"] == pytest.approx(0.75)
    assert out["hse"] == pytest.approx(75.0)
    assert out["definition"] == "hse-recon-v1"
    curves["fa"] = np.array([2e-4, 2e-4])  # above fa_ref: target part clipped to 0
    assert hse(curves)["s_tgt"] == 0.0


def test_curves_hand_computed_graded_target():
    # one 3-pixel target with graded confidence 0.9 / 0.6 / 0.3 (row 2, cols 2..4), GT = the 3 pixels
    gt = _img(6, 8, [(2, 2), (2, 3), (2, 4)]) > 0
    prob = _img(6, 8, [(2, 2)], 0.9) + _img(6, 8, [(2, 3)], 0.6) + _img(6, 8, [(2, 4)], 0.3)
    m = MultiThresholdCurves(thresholds=[0.2, 0.5, 0.8])
    m.update(prob, gt)
    c = m.compute()
    assert c["tp"].tolist() == [3, 2, 1]
    assert c["iou"] == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert c["hits"].tolist() == [1, 1, 1]  # centroids (2,3), (2,2.5), (2,2) all within 3 px of (2,3)
    out = m.hse()
    s_pix = ((1 + 2 / 3) / 2 * 0.3 + (2 / 3 + 1 / 3) / 2 * 0.3) / 0.6
    assert out["s_pix"] == pytest.approx(s_pix)
    assert out["s_tgt"] == pytest.approx(1.0)
    assert out["hse"] == pytest.approx(100 * (s_pix + 1.0) / 2)
    rp = roc_pr(c)
    assert rp["tpr"].tolist() == pytest.approx([1.0, 2 / 3, 1 / 3][::-1])
    assert rp["fpr"].tolist() == [0.0, 0.0, 0.0]


def test_single_threshold_path_equals_sweep_path():
    rng = np.random.default_rng(3)
    for _ in range(10):
        gt = rng.random((24, 24)) > 0.93
        prob = np.clip(gt * rng.uniform(0.3, 1.0, gt.shape) + (rng.random(gt.shape) > 0.95) * 0.7, 0, 1)
        for t in (0.25, 0.5):
            one = image_counts(prob, gt, t)
            many = image_counts(prob, gt, [0.1, t, 0.9])
            for k in ("tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels"):
                assert getattr(one, k)[0] == getattr(many, k)[1], k


@pytest.mark.parametrize(
    "kwargs",
    [
        {"matching": "nearest"},
        {"connectivity": 6},
        {"distance": 0},
        {"empty_niou": 0.5},
    ],
)
def test_bad_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        IRSTDMetrics(**kwargs)


def test_bad_thresholds_and_inputs():
    with pytest.raises(ConfigError, match="strictly increasing"):
        MultiThresholdCurves(thresholds=[0.5, 0.1])
    with pytest.raises(ConfigError, match="hse"):
        hse(summarize(evaluate_images([np.zeros((2, 2))], [np.zeros((2, 2))], 0.5), 0.5))
    m = IRSTDMetrics()
    with pytest.raises(DataError, match="sigmoid"):
        m.update(np.full((4, 4), 3.0), np.zeros((4, 4)))
    with pytest.raises(DataError, match="shape"):
        m.update(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(DataError, match="255"):
        m.update(np.zeros((4, 4), dtype=np.uint8), np.zeros((4, 4)))


def test_hiou_without_hits_is_zero():
    gt = _img(10, 10, [(1, 1)]) > 0
    r = _run([_img(10, 10, [(8, 8)])], [gt], matching="overlap")
    assert r["hits"] == 0 and r["hiou"] == 0.0 and np.isnan(r["seg_iou"])
