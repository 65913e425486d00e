"""match_targets: per-component view that must agree with the metric core's counters.

Parity: on perturbed predictions (irfoundry.bench.reference.perturb), ``hits`` and ``fa_pixels`` equal ``image_counts`` at
that threshold (single-threshold path and one-pass sweep) for every matching rule, 4/8-connectivity and
both false-alarm rules. Component geometry is checked against scikit-image's ``regionprops``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irfoundry.bench.reference.perturb import (
    load_masks,
    perturbed_prediction,
    random_blobs,
)
from irfoundry.errors import ConfigError, DataError
from irfoundry.metrics import MetricSettings, TargetMatch, image_counts, match_targets

DATA_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

SWEEP = np.round(np.arange(1, 20) * 0.05, 2)


def _check_parity(prob, gt, settings):
    sweep = image_counts(prob, gt, SWEEP, settings=settings)
    for k in (1, 5, 9, 13):  # 0.10, 0.30, 0.50, 0.70
        t = float(SWEEP[k])
        m = match_targets(prob, gt, t, settings=settings)
        single = image_counts(prob, gt, t, settings=settings)
        ctx = f"t={t} {settings}"
        assert m.hits == single.hits[0] == sweep.hits[k], ctx
        assert m.fa_pixels == single.fa_pixels[0] == sweep.fa_pixels[k], ctx
        assert len(m.pred) == single.n_pred[0], ctx
        assert len(m.gt) == single.n_gt, ctx
        # internal consistency of the per-component flags
        assert m.hits == sum(p.matched for p in m.pred)
        assert m.fa_pixels == sum(p.area for p in m.pred if p.false_alarm)
        for i, g in enumerate(m.gt):
            if g.hit:
                assert m.pred[g.pred_index].gt_index == i
        if not settings.legacy_area_match:
            assert all(p.false_alarm == (not p.matched) for p in m.pred)


SETTINGS = [
    MetricSettings(),
    MetricSettings(matching="hungarian"),
    MetricSettings(matching="overlap"),
    MetricSettings(legacy_area_match=True),
    MetricSettings(matching="hungarian", connectivity=4, legacy_area_match=True),
    MetricSettings(matching="overlap", connectivity=4, distance=5.0),
]


@pytest.mark.parametrize(
    "settings", SETTINGS, ids=lambda s: f"{s.matching}-c{s.connectivity}-leg{int(s.legacy_area_match)}"
)
def test_parity_with_image_counts_synthetic(settings):
    rng = np.random.default_rng(7)
    n_checked = 0
    for i in range(40):
        gt = random_blobs(rng, 40, 48, int(rng.integers(0, 7)))
        prob = perturbed_prediction(gt, rng)
        _check_parity(prob, gt, settings)
        n_checked += 1
    # dense clutter: many touching, merging components
    prob = np.round(rng.random((40, 48)) ** 3 * 255) / 255
    _check_parity(prob, random_blobs(rng, 40, 48, 8), settings)
    assert n_checked == 40


@pytest.mark.realdata
def test_parity_with_image_counts_real_masks():
    if not (DATA_ROOT / "sirst").is_dir():
        pytest.skip(f"real data not found at {DATA_ROOT} (shared data is only on the dev machine)")
    _, masks = load_masks(DATA_ROOT, "sirst")
    rng = np.random.default_rng(5)
    for gt in masks[::6]:
        prob = perturbed_prediction(gt, rng)
        for s in (MetricSettings(), MetricSettings(matching="hungarian"), MetricSettings(matching="overlap"),
                  MetricSettings(legacy_area_match=True)):
            m = match_targets(prob, gt, 0.5, settings=s)
            c = image_counts(prob, gt, 0.5, settings=s)
            assert (m.hits, m.fa_pixels, len(m.pred)) == (c.hits[0], c.fa_pixels[0], c.n_pred[0])


def test_geometry_matches_regionprops():
    measure = pytest.importorskip("skimage.measure")
    rng = np.random.default_rng(3)
    gt = random_blobs(rng, 50, 60, 6)
    prob = perturbed_prediction(gt, rng, kind="mixed")
    m = match_targets(prob, gt, 0.5)
    for mask, comps in ((gt, m.gt), (prob > 0.5, m.pred)):
        props = measure.regionprops(measure.label(mask, connectivity=2))  # raster label order
        assert len(props) == len(comps)
        for r, c in zip(props, comps):
            assert c.area == r.area
            assert c.bbox == tuple(int(v) for v in r.bbox)
            np.testing.assert_allclose(c.centroid, r.centroid, rtol=0, atol=1e-12)
    for p in m.pred:
        y0, x0, y1, x1 = p.bbox
        assert p.peak == pytest.approx(float(prob[y0:y1, x0:x1][(prob > 0.5)[y0:y1, x0:x1]].max()))


def _square(img, y, x, r, value=True):
    img[y - r : y + r + 1, x - r : x + r + 1] = value


def test_known_miss_and_false_alarm():
    gt = np.zeros((32, 32), bool)
    _square(gt, 5, 5, 1)     # found
    _square(gt, 20, 25, 1)   # missed
    prob = np.zeros((32, 32), np.float32)
    _square(prob, 6, 5, 1, 0.9)      # centroid 1 px from GT 0: hit
    _square(prob, 25, 8, 2, 0.8)     # far from everything: false alarm (25 px)
    m = match_targets(prob, gt)
    assert isinstance(m, TargetMatch)
    assert [g.hit for g in m.gt] == [True, False]
    assert m.gt[0].pred_index == 0 and m.gt[1].pred_index is None
    assert [(p.matched, p.false_alarm, p.area) for p in m.pred] == [(True, False, 9), (False, True, 25)]
    assert (m.hits, m.missed, m.false_alarms, m.fa_pixels, m.n_pixels) == (1, 1, 1, 25, 1024)
    assert m.gt[1].bbox == (19, 24, 22, 27) and m.gt[1].centroid == (20.0, 25.0)
    assert m.pred[1].peak == pytest.approx(0.8)
    d = m.as_dict()
    assert d["gt"][1]["bbox"] == [19, 24, 22, 27] and d["settings"]["matching"] == "greedy"


def test_matching_rules_differ_and_stay_in_parity():
    # greedy vs assignment: P1 (raster-first) is near both GTs, P2 only near GT A
    gt = np.zeros((20, 20), bool)
    gt[10, 10] = gt[10, 14] = True
    prob = np.zeros((20, 20))
    prob[9, 12] = prob[12, 9] = 0.9
    # overlap-first: a long GT line and a shifted prediction (IoU 2/3, centroid distance 4 >= 3)
    gt2 = np.zeros((20, 30), bool)
    gt2[5, 0:20] = True
    prob2 = np.zeros((20, 30))
    prob2[5, 4:24] = 0.9
    expected = {"greedy": (1, 0), "hungarian": (2, 0), "overlap": (2, 1)}
    for matching, (hits1, hits2) in expected.items():
        s = MetricSettings(matching=matching)
        m1, m2 = match_targets(prob, gt, settings=s), match_targets(prob2, gt2, settings=s)
        assert (m1.hits, m2.hits) == (hits1, hits2), matching
        for p, g, m in ((prob, gt, m1), (prob2, gt2, m2)):
            c = image_counts(p, g, 0.5, settings=s)
            assert (m.hits, m.fa_pixels) == (c.hits[0], c.fa_pixels[0]), matching
    greedy = match_targets(prob, gt)
    assert [g.hit for g in greedy.gt] == [True, False] and greedy.gt[0].pred_index == 0
    assert [p.false_alarm for p in greedy.pred] == [False, True]


def test_legacy_area_rule_spares_equal_area_component():
    gt = np.zeros((32, 32), bool)
    _square(gt, 5, 5, 1)
    prob = np.zeros((32, 32))
    _square(prob, 5, 5, 1, 0.9)      # hit, area 9
    _square(prob, 25, 25, 1, 0.9)    # unmatched, also area 9
    correct = match_targets(prob, gt)
    legacy = match_targets(prob, gt, settings=MetricSettings(legacy_area_match=True))
    assert correct.fa_pixels == 9 and correct.pred[1].false_alarm
    assert legacy.fa_pixels == 0 and not legacy.pred[1].false_alarm and not legacy.pred[1].matched


def test_empty_inputs_and_errors():
    z = np.zeros((8, 9))
    m = match_targets(z, z > 0)
    assert (m.gt, m.pred, m.fa_pixels, m.n_pixels) == ((), (), 0, 72)
    only_pred = match_targets(np.eye(8), np.zeros((8, 8), bool))
    assert only_pred.false_alarms == 1 and only_pred.fa_pixels == 8
    with pytest.raises(DataError, match="shape"):
        match_targets(np.zeros((4, 4)), np.zeros((4, 5), bool))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        match_targets(np.full((4, 4), 2.0), np.zeros((4, 4), bool))
    with pytest.raises(ConfigError, match="one threshold"):
        match_targets(z, z > 0, [0.3, 0.5])
    with pytest.raises(ConfigError, match="thresholds"):
        match_targets(z, z > 0, 1.5)
