"""``eval --thresholds``: threshold parsing, one-pass scoring (scalars + curves + HSE), curves.csv against
the naive per-threshold reference, plots and report wiring, CLI errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config


from irfoundry.bench.reference.naive_metrics import naive_evaluate  # noqa: E402
from irfoundry.bench.reference.perturb import perturbed_prediction  # noqa: E402

from irfoundry.cli import main  # noqa: E402
from irfoundry.data import DatasetSpec  # noqa: E402
from irfoundry.engine import evaluate, from_dict, parse_thresholds, score_maps, train  # noqa: E402
from irfoundry.engine.datamodule import eval_loader  # noqa: E402
from irfoundry.engine.metrics import build_eval_metrics  # noqa: E402
from irfoundry.engine.runs import load_checkpoint  # noqa: E402
from irfoundry.engine.scoring import CURVE_COLUMNS, REPORTED, write_curves_csv  # noqa: E402
from irfoundry.errors import ConfigError, DataError  # noqa: E402
from irfoundry.metrics import DEFAULT_HSE_THRESHOLDS, IRSTDMetrics, MultiThresholdCurves  # noqa: E402

INT_COLUMNS = ("tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels")


@pytest.fixture(scope="module")
def trained(tiny_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs_thr")
    return train(from_dict(tiny_config(tiny_synth, out))), tiny_synth


@pytest.fixture(scope="module")
def model_maps(trained):
    """The trained model's float32 maps on the test split, computed like ``evaluate`` (old path too)."""
    result, data = trained
    model, meta = load_checkpoint(result["run_dir"])
    loader = eval_loader(DatasetSpec(data, "test"), meta["norm"])
    old = build_eval_metrics(0.5)  # the metric eval used before scoring was shared with eval-maps
    items = []
    with torch.no_grad():
        for batch in loader:
            logits = model.eval()(batch["image"])
            (h, w), = batch["size"]
            prob = torch.sigmoid(logits.float())[0, 0, :h, :w]
            gt = batch["mask"][0, 0, :h, :w] > 0.5
            old.update([prob], [gt])
            items.append((batch["id"][0], prob.numpy(), gt.numpy()))
    return items, old.compute()


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _need_report() -> None:
    """Skip when helper module irfoundry.report (plots + HTML report) is not importable."""
    try:
        from irfoundry.report import ImageRecord, write_report  # noqa: F401
        from irfoundry.report.plots import save_curve_plots  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"irfoundry.report (plots and report) not importable: {exc}")


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# ---------------------------------------------------------------- parsing


def test_parse_thresholds_range_and_list():
    assert parse_thresholds("0.05:0.95:0.05") == DEFAULT_HSE_THRESHOLDS  # 19 values, no float drift
    assert parse_thresholds("0:1:0.1") == tuple(round(0.1 * i, 1) for i in range(11))
    assert parse_thresholds("0.05:0.9:0.1")[-1] == 0.85  # STOP off the grid is not added
    assert parse_thresholds("0.1, 0.5,0.9") == (0.1, 0.5, 0.9)
    assert parse_thresholds([0.2, 0.4]) == (0.2, 0.4)


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "empty"),
        ("0.5", "at least 2"),
        ("a:b:c", "'a' is not a number"),
        ("0.9:0.1:0.1", "STOP must be greater"),
        ("0:1:0", "STEP must be positive"),
        ("0:1", "exactly three parts"),
        ("0.1,0.1", "strictly increasing"),
        ("0.5,0.2", "strictly increasing"),
        ("0,1.5", r"lie in \[0, 1\]"),
        ("0:1:0.0001", "at most 1000"),
    ],
)
def test_parse_thresholds_rejects_with_flag_name(text, why):
    with pytest.raises(ConfigError, match=rf"--thresholds .*{why}.*START:STOP:STEP"):
        parse_thresholds(text)


# ---------------------------------------------------------------- scoring


def _synthetic_items(n=6, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        h, w = int(rng.integers(40, 70)), int(rng.integers(40, 70))
        gt = np.zeros((h, w), dtype=bool)
        for _ in range(int(rng.integers(0, 4))):
            y, x = int(rng.integers(2, h - 3)), int(rng.integers(2, w - 3))
            gt[y - 1 : y + 2, x - 1 : x + 1] = True
        items.append((f"img_{i}", perturbed_prediction(gt, rng), gt))
    return items


@pytest.mark.parametrize("threshold", [0.5, 0.42])  # on and off the curve grid
def test_score_maps_equals_torchmetrics_modules(threshold):
    items = _synthetic_items()
    grid = "0.1:0.9:0.2"
    scores = score_maps(iter(items), threshold=threshold, thresholds=grid)
    point = IRSTDMetrics(threshold=threshold)
    curves = MultiThresholdCurves(parse_thresholds(grid))
    for _, p, g in items:
        point.update([p], [g])
        curves.update([p], [g])
    ref = point.compute()
    for k in REPORTED:
        assert _same(scores.metrics[k], ref[k]), k
    ref_curves = curves.compute()
    for k in ("thresholds", "iou", "niou", "pd", "fa", "tpr", "fpr", "hiou", *INT_COLUMNS):
        np.testing.assert_array_equal(scores.curves[k], ref_curves[k], err_msg=k)
    assert scores.metrics["hse"] == curves.hse()["hse"]
    assert scores.requested and scores.metrics["thresholds"] == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert scores.ids == [i for i, _, _ in items] and scores.metrics["n_images"] == len(items)


def test_score_maps_without_thresholds_still_reports_default_hse():
    items = _synthetic_items(seed=1)
    scores = score_maps(iter(items))
    curves = MultiThresholdCurves()
    for _, p, g in items:
        curves.update([p], [g])
    h = curves.hse()
    m = scores.metrics
    assert not scores.requested and m["thresholds"] == list(DEFAULT_HSE_THRESHOLDS)
    assert m["hse"] == h["hse"] and m["hse_definition"] == "hse-recon-v1"
    assert m["hse_detail"]["s_pix"] == h["s_pix"] and m["hse_detail"]["pd"] == h["pd"].tolist()
    json.dumps(m)  # JSON-ready


def test_score_maps_names_the_image_of_a_bad_map():
    empty = np.zeros((8, 8), bool)
    items = [("good", np.zeros((8, 8)), empty), ("bad_one", np.full((8, 8), 2.0), empty)]
    with pytest.raises(DataError, match=r"image 'bad_one': prob must hold probabilities in \[0, 1\]"):
        score_maps(iter(items))


# ---------------------------------------------------------------- checkpoint evaluation


def test_curves_csv_equals_naive_per_threshold_loop(model_maps, tmp_path):
    items, _ = model_maps
    grid = parse_thresholds("0.05:0.95:0.05")
    scores = score_maps(iter(items), thresholds="0.05:0.95:0.05")
    rows = _read_csv(write_curves_csv(scores.curves, tmp_path / "curves.csv"))
    assert len(rows) == len(grid) and tuple(rows[0]) == CURVE_COLUMNS
    assert [float(r["threshold"]) for r in rows] == list(grid)
    probs, gts = [p for _, p, _ in items], [g for _, _, g in items]
    for k in (1, 9, 17):  # 0.10, 0.50, 0.90
        ref = naive_evaluate(probs, gts, [grid[k]])
        row = rows[k]
        for col in INT_COLUMNS:
            assert int(row[col]) == int(ref[col][0]), (grid[k], col)
        assert int(row["n_gt"]) == ref["n_gt"] and int(row["n_pixels"]) == ref["n_pixels"]
        for col in ("iou", "niou", "pd", "fa"):
            assert float(row[col]) == pytest.approx(float(ref[col][0]), rel=1e-12, nan_ok=True), (grid[k], col)


def test_eval_without_thresholds_keeps_old_numbers_and_adds_default_hse(trained, model_maps, tmp_path):
    result, data = trained
    _, old = model_maps
    m = evaluate(result["run_dir"], data, split="test", out=tmp_path)
    for k, v in old.items():  # identical to the pre-sharing metric path
        assert _same(m[k], v), k
    assert m["thresholds"] == list(DEFAULT_HSE_THRESHOLDS) and math.isfinite(m["hse"])
    assert json.loads((tmp_path / "metrics.json").read_text()) == m
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "per_image.csv"]  # no curves.csv / plots


def test_cli_eval_thresholds_writes_curves_plots_and_report(trained, model_maps, tmp_path):
    _need_report()
    result, data = trained
    items, _ = model_maps
    out = tmp_path / "e"
    argv = ["eval", "--checkpoint", result["run_dir"], "--data", str(data), "--out", str(out),
            "--thresholds", "0.05:0.95:0.05", "--report"]
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    scores = score_maps(iter(items), thresholds="0.05:0.95:0.05")
    assert m["hse"] == scores.metrics["hse"] and m["thresholds"] == list(DEFAULT_HSE_THRESHOLDS)
    expected = _read_csv(write_curves_csv(scores.curves, tmp_path / "expected.csv"))
    assert _read_csv(out / "curves.csv") == expected and len(expected) == 19
    for name in ("iou_niou_vs_threshold.png", "pd_vs_fa.png", "roc.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (out / "report.html").read_text()
    assert all(i in page for i, _, _ in items)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "spool / temp files left behind"


def test_cli_eval_bad_thresholds_and_report_without_out(trained, capsys):
    result, data = trained
    base = ["eval", "--checkpoint", result["run_dir"], "--data", str(data)]
    assert main(base + ["--thresholds", "0.9:0.1:0.05"]) == 1
    assert "--thresholds '0.9:0.1:0.05': STOP must be greater than START" in capsys.readouterr().err
    assert main(base + ["--thresholds", "0.05:0.95"]) == 1
    assert "START:STOP:STEP" in capsys.readouterr().err
    assert main(base + ["--report"]) == 1
    assert "--report writes OUT/report.html; give an output folder with --out" in capsys.readouterr().err
    assert main(base + ["--threshold", "1.5"]) == 1
    assert "--threshold must lie in [0, 1]" in capsys.readouterr().err
