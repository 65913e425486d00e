"""``irfoundry eval-maps``: saved PNG / NPY maps scored like ``eval``; every bad folder names the id."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from conftest import tiny_config
from PIL import Image


from irfoundry.bench.reference.perturb import perturbed_prediction  # noqa: E402

from irfoundry.cli import main  # noqa: E402
from irfoundry.data import DatasetSpec, IRSTDDataset  # noqa: E402
from irfoundry.engine import evaluate, evaluate_maps, from_dict, predict, train  # noqa: E402
from irfoundry.engine.datamodule import eval_loader  # noqa: E402
from irfoundry.engine.runs import load_checkpoint  # noqa: E402
from irfoundry.errors import DataError  # noqa: E402
from irfoundry.metrics import DEFAULT_HSE_THRESHOLDS, evaluate_images, hse, summarize  # noqa: E402

KEYS = ("iou", "niou", "pd", "fa", "target_precision", "target_f1")


@pytest.fixture(scope="module")
def split(tiny_synth):
    """``(ids, gt masks, probability maps)`` of the tiny test split; maps are perturbed GT, float64."""
    ds = IRSTDDataset(DatasetSpec(tiny_synth, "test").resolve())
    ids = [s.id for s in ds.samples]
    gts = [ds.load(i)[1] > 0.5 for i in range(len(ds))]
    rng = np.random.default_rng(7)
    probs = [perturbed_prediction(g, rng, kind=k) for g, k in zip(gts, ("mixed", "clutter", "dilate", "shift", "miss"))]
    return ids, gts, probs


def _expected(probs, gts, threshold=0.5):
    """Metrics of the functional core: scalars at ``threshold`` and HSE on the default grid."""
    point = summarize(evaluate_images(probs, gts, threshold), threshold)
    curves = summarize(evaluate_images(probs, gts, DEFAULT_HSE_THRESHOLDS), DEFAULT_HSE_THRESHOLDS)
    return {**{k: float(point[k][0]) for k in KEYS}, "hse": hse(curves)["hse"]}


def _assert_metrics(m, expected):
    for k, v in expected.items():
        assert m[k] == v or (math.isnan(m[k]) and math.isnan(v)), (k, m[k], v)


def _to_u8(p):
    return np.round(np.asarray(p) * 255).astype(np.uint8)


def _write_pngs(folder, ids, probs, mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in zip(ids, probs):
        u8 = _to_u8(p)
        img = Image.fromarray(u8)
        if mode != "L":
            img = img.convert(mode)
        img.save(folder / f"{i}.png")
    return folder


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA"])
def test_png_maps_equal_functional_core_on_value_over_255(split, tiny_synth, tmp_path, mode):
    ids, gts, probs = split
    pred = _write_pngs(tmp_path / "pred", ids, probs, mode)
    m = evaluate_maps(pred, tiny_synth, split="test", out=tmp_path / "e")
    _assert_metrics(m, _expected([_to_u8(p) / 255.0 for p in probs], gts))
    assert json.loads((tmp_path / "e" / "metrics.json").read_text()) == m
    assert m["pred_files"] == {"png": 5} and m["pred_suffix"] == "" and m["n_images"] == 5
    assert m["thresholds"] == list(DEFAULT_HSE_THRESHOLDS) and m["hse_definition"] == "hse-recon-v1"


def test_npy_maps_equal_functional_core(split, tiny_synth, tmp_path):
    ids, gts, probs = split
    pred = tmp_path / "pred"
    pred.mkdir()
    for k, (i, p) in enumerate(zip(ids, probs)):  # float32, float64 and a 1 x H x W map
        arr = p.astype(np.float32) if k % 2 else p[None] if k == 2 else p
        np.save(pred / f"{i}.npy", arr)
    stored = [p.astype(np.float32) if k % 2 else p for k, p in enumerate(probs)]
    m = evaluate_maps(pred, f"{tiny_synth}:test", split=None, thresholds="0.1:0.9:0.1")
    expected = _expected(stored, gts)
    grid = [round(0.1 * k, 1) for k in range(1, 10)]
    expected["hse"] = hse(summarize(evaluate_images(stored, gts, grid), grid))["hse"]
    _assert_metrics(m, expected)
    assert m["pred_files"] == {"npy": 5} and m["thresholds"] == grid


def test_png_value_128_is_foreground_and_127_is_not(split, tiny_synth, tmp_path):
    ids, gts, _ = split
    for value, fg in ((128, True), (127, False)):
        pred = tmp_path / str(value)
        pred.mkdir()
        for i, g in zip(ids, gts):
            Image.fromarray((g * value).astype(np.uint8)).save(pred / f"{i}.png")
        m = evaluate_maps(pred, tiny_synth)
        assert m["iou"] == (1.0 if fg else 0.0) and m["pd"] == (1.0 if fg else 0.0) and m["fa"] == 0.0


def test_eval_maps_on_predict_output_reproduces_eval(tiny_synth, tmp_path):
    run = train(from_dict(tiny_config(tiny_synth, tmp_path, "run")))
    samples = DatasetSpec(tiny_synth, "test").resolve()
    pred = tmp_path / "pred"
    predict(run["run_dir"], [str(s.image) for s in samples], pred)
    m = evaluate_maps(pred, tiny_synth, split="test")
    assert m["pred_suffix"] == "_prob"  # predict's ID_prob.png, its masks / overlays / targets.json ignored
    # the same maps as eval scores, quantised to 8 bits the way predict saves them
    model, meta = load_checkpoint(run["run_dir"])
    probs, gts = [], []
    with torch.no_grad():
        for batch in eval_loader(DatasetSpec(tiny_synth, "test"), meta["norm"]):
            (h, w), = batch["size"]
            # float64 before quantising, as predict does (round(255 p) in float32 can differ at .5 ties)
            probs.append(torch.sigmoid(model.eval()(batch["image"]))[0, 0, :h, :w].numpy().astype(np.float64))
            gts.append(batch["mask"][0, 0, :h, :w].numpy() > 0.5)
    _assert_metrics(m, _expected([_to_u8(p) / 255.0 for p in probs], gts))
    e = evaluate(run["run_dir"], tiny_synth, split="test")
    # at 0.5 the 8-bit rule is eval's rule (p > 0.5 iff round(255 p) >= 128, unless p == 0.5 exactly);
    # HSE integrates other thresholds too, where quantisation may move a pixel, so it is not compared
    _assert_metrics(m, {k: e[k] for k in KEYS})
    assert set(m) - {"pred_dir", "pred_suffix", "pred_files"} == set(e) - {"checkpoint", "model", "padding", "torch_threads"}
    # maps of every image (train / val too) need --ignore-extra; the scores do not change
    everything = tmp_path / "all"
    predict(run["run_dir"], [str(tiny_synth / "images")], everything)
    with pytest.raises(DataError, match=r"19 map\(s\) in .* belong to no image of split 'test'.*--ignore-extra"):
        evaluate_maps(everything, tiny_synth)
    again = evaluate_maps(everything, tiny_synth, ignore_extra=True)
    _assert_metrics(again, {k: m[k] for k in (*KEYS, "hse")})


def test_report_and_plots_for_maps(split, tiny_synth, tmp_path):
    try:
        from irfoundry.report import ImageRecord, write_report  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"irfoundry.report not importable: {exc}")
    ids, _, probs = split
    pred = _write_pngs(tmp_path / "pred", ids, probs)
    out = tmp_path / "e"
    assert main(["eval-maps", "--pred", str(pred), "--data", str(tiny_synth), "--out", str(out),
                 "--thresholds", "0.1:0.9:0.1", "--report"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"metrics.json", "curves.csv", "report.html", "iou_niou_vs_threshold.png", "pd_vs_fa.png",
            "roc.png"} <= names
    assert len((out / "curves.csv").read_text().splitlines()) == 1 + 9
    page = (out / "report.html").read_text()
    assert all(i in page for i in ids)


# ---------------------------------------------------------------- errors name the id


def _bad_missing(pred, ids, gts):
    (pred / f"{ids[3]}.png").unlink()
    return [rf"1 of 5 image\(s\) of split 'test' have no map <id>.png / <id>.npy in .*: {ids[3]}"]


def _bad_extra(pred, ids, gts):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(pred / "Misc_999.png")
    return [r"1 map\(s\) in .* belong to no image of split 'test'", "Misc_999.png", "--ignore-extra"]


def _bad_size(pred, ids, gts):
    h, w = gts[1].shape
    Image.fromarray(np.zeros((h + 1, w), np.uint8)).save(pred / f"{ids[1]}.png")
    return [rf"prediction for '{ids[1]}' .* is {w}x{h + 1} \(WxH\) but its mask is {w}x{h}"]


def _bad_16bit(pred, ids, gts):
    Image.fromarray(np.zeros(gts[2].shape, np.uint16)).save(pred / f"{ids[2]}.png")
    return [rf"prediction for '{ids[2]}' .* is a I;16 \(16/32-bit\) PNG; save 8-bit maps .* or float .npy"]


def _bad_both(pred, ids, gts):
    np.save(pred / f"{ids[0]}.npy", np.zeros(gts[0].shape))
    return [rf"1 id\(s\) have both a .png and a .npy map in .*: {ids[0]}; keep one per id"]


def _bad_nan(pred, ids, gts):
    (pred / f"{ids[4]}.png").unlink()
    arr = np.zeros(gts[4].shape)
    arr[0, 0] = np.nan
    arr[1, 1] = 1.5
    np.save(pred / f"{ids[4]}.npy", arr)
    return [rf"prediction for '{ids[4]}' .* holds 2 value\(s\) outside \[0, 1\] \(1 NaN"]


def _bad_colour(pred, ids, gts):
    rgb = np.zeros((*gts[0].shape, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(pred / f"{ids[0]}.png")
    return [rf"prediction for '{ids[0]}' .* colour PNG with unequal channels"]


@pytest.mark.parametrize("make_bad", [_bad_missing, _bad_extra, _bad_size, _bad_16bit, _bad_both, _bad_nan,
                                      _bad_colour])
def test_bad_prediction_folder_exits_1_naming_the_id(split, tiny_synth, tmp_path, capsys, make_bad):
    ids, gts, probs = split
    pred = _write_pngs(tmp_path / "pred", ids, probs)
    patterns = make_bad(pred, ids, gts)
    assert main(["eval-maps", "--pred", str(pred), "--data", str(tiny_synth), "--out", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    for pattern in patterns:
        assert re.search(pattern, err), (pattern, err)
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_missing_list_is_capped_and_counted(tiny_synth, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"14 of 14 image\(s\) of split 'train' .*, \.\.\. \(4 more\) \(only .png / "
                       r"\.npy are read; the folder also holds \.txt files\)"):
        evaluate_maps(empty, tiny_synth, split="train")
    with pytest.raises(DataError, match="prediction folder .* does not exist"):
        evaluate_maps(tmp_path / "nope", tiny_synth)
