"""LESPS: the label-evolution rule on a hand-worked example, and point-supervised training that evolves its
labels, snapshots them in the run folder and resumes exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from irfoundry.data.dataset import DatasetSpec
from irfoundry.data.point_files import derive_point_table, write_points
from irfoundry.data.store import PerImageStore
from irfoundry.engine import from_dict, train
from irfoundry.losses import lesps_focal_loss
from irfoundry.methods.label_evolution import lesps_update

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("engine_run_config_lesps", HERE.parent / "engine" / "conftest.py")
_engine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_engine)


def test_the_update_rule_on_a_hand_worked_example():
    label = np.zeros((40, 40), np.float32)
    label[4, 4], label[4, 5] = 1.0, 0.6  # one region (> 0.5): area 2, centroid (4, 4.5) -> pixel (4, 4)
    pred = np.zeros((40, 40), np.float32)
    pred[4, 4], pred[4, 5], pred[5, 4], pred[5, 5] = 0.9, 0.8, 0.7, 0.2
    pred[20, 20] = 0.95  # inside the 33 x 33 neighbourhood (|20 - 4| = 16), far from the 3 x 3 core
    pred[30, 30] = 0.99  # outside the neighbourhood: never a candidate, not in the maximum
    # M = 0.95, tau = 0.475 + 0.5 * (0.95 - 0.475) * 2 / (40 * 40 * 0.0015) = 0.672917
    # candidates 0.9, 0.8, 0.7 (touch the core) and 0.95 at (20, 20): a second component off the core, dropped
    new = lesps_update(pred, label)
    expect = label.copy()
    expect[4, 4] = 1.0  # (1 + 0.9) / 2 = 0.95, then the click is 1 again
    expect[4, 5] = (0.6 + 0.8) / 2
    expect[5, 4] = (0.0 + 0.7) / 2
    np.testing.assert_allclose(new, expect, rtol=0, atol=1e-7)
    # a single candidate component is kept even off the core (the reference's "if label_image.max() > 1")
    lone = np.zeros((40, 40), np.float32)
    lone[4, 4] = 1.0
    far = np.zeros((40, 40), np.float32)
    far[12, 12] = 0.9
    assert lesps_update(far, lone)[12, 12] == pytest.approx(0.45)


def test_lesps_focal_loss_is_normalised_by_the_positive_pixels():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])
    target = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    p = torch.sigmoid(logits)
    pos = -torch.log(p) * (1 - p) ** 2 * target
    neg = -torch.log(1 - p) * p**2 * (1 - target) ** 4
    assert torch.allclose(lesps_focal_loss(logits, target), (pos + neg).sum() / 2)


def _config(root, points, out, name, **trainer):
    cfg = _engine.tiny_config(root, out, name, **trainer)
    cfg["data"].update(labels="points", points=str(points))
    cfg["method"] = {"name": "lesps", "options": {"t_epoch": 0, "update_every": 1}}
    return cfg


def _labels(run_dir: Path) -> tuple[str, dict[str, np.ndarray]]:
    (folder,) = [d for d in sorted((run_dir / "labels").iterdir()) if d.is_dir()][-1:]
    store = PerImageStore.open_saved(folder)
    return folder.name, {i: store.full(i)[0][0].numpy() for i in store.ids}


@pytest.mark.slow
def test_lesps_evolves_point_labels_snapshots_them_and_resumes_exactly(tiny_synth, tmp_path):
    table, _ = derive_point_table(DatasetSpec.parse(str(tiny_synth)).resolve(), "centroid")  # train and val clicks
    points = write_points(table, tmp_path / "points.json")
    full = train(from_dict(_config(tiny_synth, points, tmp_path / "a", "full", max_epochs=3)))
    run = Path(full["run_dir"])
    # selected on the val split's clicks (no mask read): the honest default of a point-supervised run
    assert full["monitor"] == "val/point_f1" and "val/point_recall" in full["val_metrics"]
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["monitor"] == "val/point_f1"
    state = torch.load(run / "state" / "resume.ckpt", weights_only=True)
    # after epoch 1: the first update and, 1 % 1 == 0, the periodic one (as the reference); then one per epoch
    assert state["irfoundry_method_state"] == {"started": True, "updates": 4}
    version, labels = _labels(run)
    assert version == state["irfoundry_labels_version"]["version"]
    assert len([d for d in (run / "labels").iterdir() if d.is_dir()]) == 1
    assert sorted(labels) == sorted(s.id for s in DatasetSpec.parse(f"{tiny_synth}:train").resolve())
    clicks = {i: np.zeros_like(m) for i, m in labels.items()}
    for i in labels:
        for y, x in table[i]:
            clicks[i][y, x] = 1.0
    assert all((labels[i][clicks[i] == 1] == 1).all() for i in labels)  # the clicks stay 1
    assert sum(float(((labels[i] > 0) & (clicks[i] == 0)).sum()) for i in labels) > 0  # the labels grew

    part = train(from_dict(_config(tiny_synth, points, tmp_path / "b", "part", max_epochs=2)))
    cfg_file = Path(part["run_dir"]) / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["trainer"]["max_epochs"] = 3
    cfg_file.write_text(yaml.safe_dump(cfg))
    resumed = Path(train(None, resume=part["run_dir"])["run_dir"])
    a, b = load_file(run / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    _, again = _labels(resumed)
    assert all(np.array_equal(labels[i], again[i]) for i in labels)

    from irfoundry.cli import main

    assert main(["labels", "show", str(run), "--out", str(tmp_path / "png"), "--limit", "3"]) == 0
    first = next(iter(labels))
    png = np.asarray(Image.open(tmp_path / "png" / f"{first}_label.png"))
    assert png.shape == labels[first].shape and np.array_equal(png, np.round(labels[first] * 255).astype(np.uint8))
    assert (tmp_path / "png" / f"{first}_overlay.png").is_file()


@pytest.mark.slow
def test_a_two_process_label_update_equals_one_process_on_the_saved_weights(tiny_synth, tmp_path):
    from ddp_run import train_two_processes

    from irfoundry.data.io import read_image
    from irfoundry.data.points import points_to_mask
    from irfoundry.engine.inference import Predictor

    samples = DatasetSpec.parse(f"{tiny_synth}:train").resolve()
    table, _ = derive_point_table(DatasetSpec.parse(str(tiny_synth)).resolve(), "centroid")
    points = write_points(table, tmp_path / "points.json")
    cfg = _config(tiny_synth, points, tmp_path / "runs", "ddp", max_epochs=1, batch_size=2)
    cfg["method"]["options"]["update_every"] = 2  # one update, after epoch 1
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    proc = train_two_processes(tmp_path / "ddp.yaml", tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = tmp_path / "runs" / "ddp"
    _, labels = _labels(run)
    assert sorted(labels) == sorted(s.id for s in samples)  # both shards' images, in one snapshot
    predictor, _ = Predictor.from_checkpoint(run / "last.safetensors")
    for s in samples:
        image = read_image(s.image)
        clicks = points_to_mask(table[s.id], image.shape).astype(np.float32)
        expect = lesps_update(predictor.predict(image), clicks)
        np.testing.assert_allclose(labels[s.id], expect, rtol=0, atol=1e-6)


def test_the_first_update_waits_for_the_epoch_mean_loss_below_t_loss_or_for_t_epoch():
    from types import SimpleNamespace

    from irfoundry.methods.context import LocalStepContext
    from irfoundry.methods.lesps import LESPS, LESPSOptions
    from irfoundry.models import create_model

    host = create_model("unet_tiny", base=4)
    method = LESPS(host, SimpleNamespace(options=LESPSOptions(), loss="softiou", aux_weight=1.0))
    ctx = LocalStepContext(method)
    assert not method._first_update_due(ctx, 1)  # nothing logged yet
    for value in (12.0, 9.0):
        ctx.log_dict({"loss": torch.tensor(value)})
    assert ctx.epoch_mean("train/loss_epoch") == 10.5 and not method._first_update_due(ctx, 1)
    ctx.new_epoch()
    ctx.log_dict({"loss": torch.tensor(9.5)})
    assert method._first_update_due(ctx, 2)  # 9.5 < t_loss = 10
    method.opts = LESPSOptions(t_epoch=50)
    assert not method._first_update_due(ctx, 50) and method._first_update_due(ctx, 51)
    method.opts = LESPSOptions(t_epoch_fraction=0.125)  # the published 50 of 400, at another budget
    ctx.max_epochs = 40
    assert not method._first_update_due(ctx, 5) and method._first_update_due(ctx, 6)


def test_a_loss_trigger_met_after_the_first_epoch_is_reported(caplog):
    from types import SimpleNamespace

    from irfoundry.methods.context import LocalStepContext
    from irfoundry.methods.lesps import LESPS, LESPSOptions
    from irfoundry.models import create_model

    method = LESPS(create_model("unet_tiny", base=4), SimpleNamespace(options=LESPSOptions(), loss=None))
    ctx = LocalStepContext(method)
    ctx.log_dict({"loss": torch.tensor(4.5)})  # what a host started at p = 0.01 gives: below t_loss at once
    with caplog.at_level("WARNING"):
        assert method._first_update_due(ctx, 1)
    assert "untrained network" in caplog.text and "t_epoch_fraction" in caplog.text
    with pytest.raises(Exception, match="not both"):
        LESPSOptions(t_epoch=5, t_epoch_fraction=0.1)
