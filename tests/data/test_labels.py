"""Label sources and point-label files: float targets in [0, 1], points without masks, no ground truth in
point-supervised items, target-forced crops that aim at the trained label, per-image attributes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from helpers_data import tiny_sample, write_png

from irfoundry.data import (
    DatasetSpec,
    IRSTDDataset,
    MaskLabels,
    PerImageStore,
    PointLabels,
    StoreLabels,
    TrainTransform,
    centroid_points,
    collate,
    read_points,
    write_points,
)
from irfoundry.data.layouts import Sample
from irfoundry.errors import DataError


def _samples(tmp_path, n=3, shape=(20, 24), masks=True):
    out = []
    for i in range(n):
        img, m = tiny_sample(i, shape)
        out.append(Sample(f"s{i}", write_png(tmp_path / f"images/s{i}.png", img),
                          write_png(tmp_path / f"masks/s{i}.png", m) if masks else None))
    return out


def test_point_files_round_trip_and_name_bad_rows(tmp_path):
    points = {"a": [(3, 4), (10, 2)], "b": []}
    assert read_points(write_points(points, tmp_path / "p.json")) == points
    assert read_points(write_points(points, tmp_path / "p.csv")) == {"a": points["a"]}  # CSV cannot list []
    (tmp_path / "p.csv").write_text("id,x,y\n# a comment\na,4,3\n\nb,1.5,2\n")
    with pytest.raises(DataError, match=r"p.csv line 5: x = '1.5' must be a non-negative integer"):
        read_points(tmp_path / "p.csv")
    (tmp_path / "p.csv").write_text("id,y,x\na,4,3\n")
    with pytest.raises(DataError, match="line 1: the header must be 'id,x,y'"):
        read_points(tmp_path / "p.csv")
    (tmp_path / "p.csv").write_text("id,x,y\na,4\n")
    with pytest.raises(DataError, match="line 2: expected 3 values"):
        read_points(tmp_path / "p.csv")
    with pytest.raises(DataError, match="must end in .csv or .json"):
        read_points(write_points(points, tmp_path / "p.json").rename(tmp_path / "p.txt"))


def test_point_labels_draw_the_clicks_and_carry_no_ground_truth(tmp_path):
    samples = _samples(tmp_path)
    truth = {s.id: centroid_points(MaskLabels().load(s, (20, 24)) > 0.5) for s in samples}
    ds = IRSTDDataset(samples, labels=PointLabels(truth))
    item = ds[0]
    assert "mask" not in item and item["target"].dtype == torch.float32
    (y, x), = truth["s0"]
    assert item["target"].sum() == 1 and item["target"][0, y, x] == 1
    gt = IRSTDDataset(samples)[0]
    assert torch.equal(gt["mask"], gt["target"]) and set(torch.unique(gt["target"]).tolist()) == {0.0, 1.0}
    with pytest.raises(DataError, match=r"have no entry in points .*s2"):
        PointLabels({"s0": [], "s1": []}).check(samples)
    with pytest.raises(DataError, match=r"image 's0'.*outside an image of size 20x24"):
        IRSTDDataset(samples, labels=PointLabels({"s0": [(30, 1)]}))[0]


def test_images_without_masks_load_for_point_supervision_only(tmp_path):
    samples = _samples(tmp_path, masks=False)
    points = {s.id: [(5, 5)] for s in samples}
    assert len(IRSTDDataset(samples, labels=PointLabels(points))) == 3
    with pytest.raises(DataError, match="has no mask"):
        IRSTDDataset(samples)[0]
    (tmp_path / "split.txt").write_text("s0\ns1\ns2\n")
    with pytest.raises(DataError, match="no mask file"):  # a spec string resolves masks when the labels need them
        IRSTDDataset(f"{tmp_path}:{tmp_path / 'split.txt'}")
    ds = IRSTDDataset(f"{tmp_path}:{tmp_path / 'split.txt'}", labels=PointLabels(points))
    assert ds.samples[0].mask is None


def test_forced_crops_aim_at_the_trained_label_not_the_hidden_ground_truth(tmp_path):
    samples = _samples(tmp_path, n=1, shape=(64, 64))
    gt = MaskLabels().load(samples[0], (64, 64))
    elsewhere = np.zeros_like(gt)
    ys, xs = np.nonzero(gt)
    far = (63 - int(ys.mean()), 63 - int(xs.mean()))
    elsewhere[far] = 1.0
    store = PerImageStore(["s0"], [(64, 64)], [(1, 1)], dtype="float32").allocate()
    store.write("s0", [elsewhere[None]])
    t = TrainTransform(crop_size=16, target_prob=1.0, jitter=None, hflip=0, vflip=0, rot90=False, transpose=0)
    ds = IRSTDDataset(samples, transform=t, labels=StoreLabels(store), seed=0)
    for epoch in range(5):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["target"].sum() == 1 and "mask" not in item  # the store's target is in every crop


def test_binary_float_targets_crop_exactly_like_bool_masks(tmp_path):
    samples = _samples(tmp_path, n=2, shape=(40, 52))
    t = TrainTransform(crop_size=32, target_prob=0.7)
    for i, s in enumerate(samples):
        image = IRSTDDataset(samples).load(i)[0]
        mask = MaskLabels().load(s, image.shape)
        a = t(image, mask > 0.5, np.random.default_rng([0, 0, i]))
        b = t(image, mask, np.random.default_rng([0, 0, i]))
        assert a[1].dtype == bool and b[1].dtype == np.float32
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1].astype(np.float32), b[1])


def test_attributes_reach_the_batch_and_missing_ones_are_named(tmp_path):
    samples = _samples(tmp_path)
    ds = IRSTDDataset(samples, attributes={"cluster": {"s0": 3, "s1": 1, "s2": 0}, "dataset": {s.id: "x" for s in samples}})
    batch = collate([ds[i] for i in range(3)])
    assert torch.equal(batch["cluster"], torch.tensor([3, 1, 0])) and batch["dataset"] == ["x", "x", "x"]
    assert batch["id"] == ["s0", "s1", "s2"] and batch["size"] == [(20, 24)] * 3
    with pytest.raises(DataError, match=r"attribute 'cluster' has no value for 1 image"):
        IRSTDDataset(samples, attributes={"cluster": {"s0": 1, "s1": 2}})
    with pytest.raises(DataError, match=r"batch key 'image': items have different shapes"):
        collate([ds[0], IRSTDDataset(_samples(tmp_path / "big", n=1, shape=(30, 30)))[0] | {"cluster": 0, "dataset": "x"}])


def test_a_points_only_dataset_trains(tiny_synth, tmp_path):
    """images/ + a points file, no masks/ folder: trains end to end (validation off: it needs masks). JSON, as
    some synthetic images have no target (an empty list; a CSV cannot list them)."""
    import importlib.util
    from pathlib import Path

    from irfoundry.engine import from_dict, train

    spec = importlib.util.spec_from_file_location("engine_conftest", Path(__file__).parents[1] / "engine" / "conftest.py")
    engine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(engine)
    root = tmp_path / "points_only"
    shutil.copytree(tiny_synth / "images", root / "images")
    shutil.copytree(tiny_synth / "idx_427", root / "idx_427")
    labelled = IRSTDDataset(DatasetSpec(tiny_synth, "train").resolve())
    clicks = {s.id: centroid_points(labelled.load(i)[1] > 0.5) for i, s in enumerate(labelled.samples)}
    cfg = engine.tiny_config(root, tmp_path / "runs", "points", max_epochs=1)
    cfg["data"].update(labels="points", points=str(write_points(clicks, tmp_path / "clicks.json")), val_split="none")
    result = train(from_dict(cfg))
    assert result["last"] is not None and result["data"]["labels"] == "points"
    assert result["data"]["n_train"] == len(clicks) and result["data"]["n_points"] == sum(map(len, clicks.values()))
