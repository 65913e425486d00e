"""train -> eval -> predict on a tiny synthetic dataset, resume equality, run-folder safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config
from PIL import Image
from safetensors.torch import load_file

from irfoundry.cli import main
from irfoundry.engine import evaluate, from_dict, predict, train
from irfoundry.errors import ConfigError


@pytest.fixture(scope="module")
def trained(tiny_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train(from_dict(tiny_config(tiny_synth, out))), tiny_synth


def test_run_folder_contents(trained):
    result, _ = trained
    run = Path(result["run_dir"])
    for name in ("config.yaml", "norm.json", "data.json", "best.safetensors", "best.json", "last.safetensors",
                 "last.json", "train_result.json"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "best.json").read_text())
    assert meta["model_name"] == "unet_tiny" and meta["role"] == "best"
    assert set(meta["norm"]) == {"mean", "std"} and "val/iou" in meta["metrics"]
    assert meta["config"]["model"]["kwargs"] == {"base": 4} and meta["git_revision"]
    # validation came from the dataset's own val split, never from test
    assert meta["data"]["val_source"].startswith("split") and meta["data"]["n_val"] == 5
    assert (run / "logs" / "metrics.csv").is_file()


def test_eval_writes_metrics_json(trained, tmp_path):
    result, data = trained
    m = evaluate(result["run_dir"], data, split="test", out=tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == m
    for k in ("iou", "niou", "pd", "fa"):
        assert 0.0 <= m[k] <= 1.0 or m[k] != m[k]  # NaN allowed only for undefined ratios
    assert m["split"] == "test" and m["n_images"] == 5 and m["threshold"] == 0.5


def test_predict_writes_maps_masks_overlays_targets(trained, tmp_path):
    result, data = trained
    images = sorted((data / "images").glob("*.png"))[:2]
    r = predict(result["run_dir"], [str(p) for p in images], tmp_path)
    assert r["frames"] == 2 and r["skipped"] == []
    lines = [json.loads(line) for line in (tmp_path / "targets.jsonl").read_text().splitlines()]
    doc = {"images": {rec["name"]: rec for rec in lines}}
    assert [rec["frame"] for rec in lines] == [0, 1] and all(rec["position"] is None for rec in lines)
    for p in images:
        prob = Image.open(tmp_path / f"{p.stem}_prob.png")
        assert prob.mode == "L" and prob.size == Image.open(p).size
        assert Image.open(tmp_path / f"{p.stem}_overlay.png").mode == "RGB"
        for t in doc["images"][p.stem]["targets"]:
            assert set(t) == {"centroid", "area", "bbox", "peak_score"} and t["peak_score"] > 0.5


def test_cli_eval_and_predict(trained, tmp_path, capsys):
    result, data = trained
    assert main(["eval", "--checkpoint", result["run_dir"], "--data", str(data), "--out", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["split"] == "test"
    assert main(["predict", "--checkpoint", result["best"], str(data / "images" / "Misc_1.png"),
                 "--out", str(tmp_path / "p")]) == 0
    assert main(["eval", "--checkpoint", result["run_dir"], "--data", str(data), "--split", "nope"]) == 1
    assert "unknown split 'nope'" in capsys.readouterr().err


def test_non_empty_run_folder_is_never_overwritten(trained, tiny_synth):
    result, _ = trained
    run = Path(result["run_dir"])
    before = (run / "best.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already exists and is not empty.*--resume"):
        train(from_dict(tiny_config(tiny_synth, run.parent, run.name)))
    assert (run / "best.safetensors").read_bytes() == before


def test_resume_reproduces_uninterrupted_run(tiny_synth, tmp_path):
    full = train(from_dict(tiny_config(tiny_synth, tmp_path, "full", max_epochs=3)))
    part = train(from_dict(tiny_config(tiny_synth, tmp_path, "part", max_epochs=1)))
    # simulate an interruption after epoch 1 of a 3-epoch run: the run's saved config says 3 epochs
    cfg_file = Path(part["run_dir"]) / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["trainer"]["max_epochs"] = 3
    cfg_file.write_text(yaml.safe_dump(cfg))
    resumed = train(None, resume=part["run_dir"])
    a = load_file(Path(full["run_dir"]) / "last.safetensors")
    b = load_file(Path(resumed["run_dir"]) / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full["best_epoch"] == resumed["best_epoch"]
    # the epoch log holds the epochs before and after the interruption, like the uninterrupted run's
    logged = [_logged_epochs(Path(r["run_dir"])) for r in (full, resumed)]
    assert logged[0] == logged[1] == {"0", "1", "2"}
    assert not (Path(resumed["run_dir"]) / "logs" / "metrics.before_resume.csv").exists()


def _logged_epochs(run_dir: Path) -> set[str]:
    from irfoundry.engine.logs import METRICS_LOG, read_rows

    return {r["epoch"] for r in read_rows(run_dir / METRICS_LOG) if r.get("train/epoch_seconds")}


def test_nan_loss_stops_with_step_and_ids_and_keeps_last_good_checkpoint(tiny_synth, tmp_path):
    from irfoundry.engine.module import TrainingDiverged
    from irfoundry.methods import register_method
    from irfoundry.methods.supervised import Supervised

    @register_method("nan_after_first_epoch_test")
    class NaNMethod(Supervised):
        calls = 0

        def training_loss(self, batch):
            loss, logs = super().training_loss(batch)
            NaNMethod.calls += 1
            return (loss * float("nan") if NaNMethod.calls > 3 else loss), logs

    cfg = tiny_config(tiny_synth, tmp_path, "nan", max_epochs=3)
    cfg["method"]["name"] = "nan_after_first_epoch_test"
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, global step 3 .*images: Misc_"):
        train(from_dict(cfg))
    run = tmp_path / "nan"
    assert (run / "last.safetensors").is_file(), "the checkpoint of the last good epoch must survive"
    assert json.loads((run / "last.json").read_text())["epoch"] == 0


def test_val_split_none_trains_on_all_images_and_keeps_only_last(tiny_synth, tmp_path):
    """BasicIRSTD protocol: no validation, the whole training split trains, ``last`` is the result."""
    cfg = tiny_config(tiny_synth, tmp_path, "noval", max_epochs=2)
    cfg["data"]["val_split"] = "none"
    result = train(cfg)
    assert result["data"]["n_val"] == 0 and result["data"]["val_source"] == "none"
    assert result["data"]["n_train"] == 14  # the whole train split, nothing carved off
    assert result["best"] is None and result["last"] is not None
    meta = json.loads((Path(result["run_dir"]) / "last.json").read_text())
    assert meta["epoch"] == 1 and meta["role"] == "last" and meta["metrics"] == {}
