"""Undefined metrics are null with a reason, never NaN, and every JSON file a run and an evaluation write
parses with a parser that rejects NaN / Infinity: here on a test split without any target (SIRST v2's
background-only images: false alarms on empty scenes)."""

from __future__ import annotations

import json
import shutil

import numpy as np
from conftest import tiny_config
from PIL import Image

from irfoundry.cli import main
from irfoundry.engine import evaluate, from_dict, train


def _strict(path):
    def refuse(name):
        raise ValueError(f"{path}: {name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _without_targets(tiny_synth, root):
    shutil.copytree(tiny_synth, root)
    for sid in (root / "idx_427" / "test.txt").read_text().split():
        mask = root / "masks" / f"{sid}_pixels0.png"
        Image.fromarray(np.zeros_like(np.asarray(Image.open(mask)))).save(mask)
    return root


def test_a_split_without_targets_reports_false_alarms_and_null_pd_with_a_reason(tiny_synth, tmp_path, capsys):
    data = _without_targets(tiny_synth, tmp_path / "empty")
    cfg = tiny_config(data, tmp_path / "runs", "r", max_epochs=1)
    cfg["optim"]["lr"] = 1e-4  # outputs near p = 0.5: false alarms on the empty scenes
    result = train(from_dict(cfg))
    m = evaluate(result["run_dir"], data, split="test", out=tmp_path / "eval")
    assert m["n_targets"] == 0 and m["pd"] is None and m["hse"] is None
    assert "no ground-truth target in the 5 images" in m["undefined"]["pd"] and "hse" in m["undefined"]
    assert m["fa"] > 0 and m["images_with_false_alarm"] == 5 and m["false_alarm_image_share"] == 1.0
    assert m["niou_empty"] == 0.0 and m["hse_detail"]["s_pix"] is not None
    rows = (tmp_path / "eval" / "per_image.csv").read_text().splitlines()
    assert rows[0] == "id,n_targets,hits,predicted_targets,false_alarm_pixels,iou" and len(rows) == 6
    for folder in (tmp_path / "eval", tmp_path / "runs" / "r"):
        for path in folder.glob("*.json"):
            _strict(path)  # metrics.json, train_result.json, data.json, best/last.json: no NaN anywhere
    assert main(["eval", "--checkpoint", result["run_dir"], "--data", str(data), "--split", "test",
                 "--empty-niou", "1"]) == 0
    out = capsys.readouterr().out
    assert "Pd n/a" in out and "pd undefined: no ground-truth target" in out and " x1e-6" in out
