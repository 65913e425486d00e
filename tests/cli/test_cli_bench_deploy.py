"""``irfoundry bench speed | tiling | predict``: they run on tiny inputs, print their tables and write JSON
with the fields the docs quote. No timing assertions (the machine is shared)."""

from __future__ import annotations

import json

import pytest

from irfoundry.cli import main

pytest.importorskip("onnxruntime")


def test_bench_speed_rows_for_both_backends_and_their_ratio(tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert main(["bench", "speed", "--models", "unet_tiny", "--sizes", "64,96x64", "--batches", "1,2", "--repeats", "1",
                 "--json", str(out)]) == 0
    assert "onnx/torch" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    rows = doc["results"]
    assert len(rows) == 2 * 2 * 2 and {r["backend"] for r in rows} == {"torch", "onnx"}
    assert {(r["width"], r["height"]) for r in rows} == {(64, 64), (96, 64)}
    assert all(r["latency_s"] > 0 and r["repeats"] == 1 and r["params"] > 0 for r in rows)
    assert len(doc["onnx_over_torch"]) == 4 and doc["machine"]["onnxruntime"]
    assert main(["bench", "speed", "--models", "unet_tiny", "--sizes", "100"]) == 1
    assert "multiples of 32" in capsys.readouterr().err


def test_bench_tiling_reports_overhead_and_difference(tmp_path, capsys):
    out = tmp_path / "tiling.json"
    assert main(["bench", "tiling", "--models", "unet_tiny", "--frame", "320x256", "--tile", "128", "--overlap", "32",
                 "--repeats", "1", "--json", str(out), "--markdown"]) == 0
    assert "| host |" in capsys.readouterr().out
    (r,) = json.loads(out.read_text())["results"]
    assert r["tiles"] == 9 and r["tiled_over_tiles_batch"] > 0 and r["max_abs_diff"] >= 0
    assert r["weights"] == "seeded random"


def test_bench_predict_compares_the_pipeline_with_the_network(tmp_path, capsys):
    out = tmp_path / "predict.json"
    assert main(["bench", "predict", "--model", "unet_tiny", "--frames", "12", "--frame-size", "64x64", "--batch", "4",
                 "--json", str(out)]) == 0
    assert "predict / network" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["model_frames_per_s"] > 0 and doc["predict_over_model"] > 0 and doc["settings"]["frames"] == 12
