"""irfoundry.data.dataset: items, DataLoader workers, train/val carving, normalisation statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from helpers_data import make_dataset, write_png, write_split
from irfoundry.data.dataset import (
    IRSTDDataset,
    compute_norm_stats,
    load_norm_stats,
    save_norm_stats,
    split_train_val,
    train_val_samples,
)
from irfoundry.data.io import DataWarning, read_image
from irfoundry.data.layouts import DatasetSpec
from irfoundry.data.transforms import TrainTransform
from irfoundry.errors import DataError


def test_item_contract(tmp_path):
    root = make_dataset(tmp_path / "s", "sirst_v1")
    ds = IRSTDDataset(f"{root}:train")
    assert len(ds) == 2 and ds.split == "train"
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 20, 24)
    assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, 20, 24)
    assert set(torch.unique(item["mask"]).tolist()) == {0.0, 1.0}
    assert item["id"] == "Misc_1" and item["size"] == (20, 24)
    raw = read_image(root / "images" / "Misc_1.png")
    np.testing.assert_allclose(item["image"][0].numpy(), raw)
    normed = IRSTDDataset(f"{root}:train", norm={"mean": 0.2, "std": 0.5})[0]["image"][0].numpy()
    np.testing.assert_allclose(normed, (raw - 0.2) / 0.5, rtol=1e-6)


def test_seeded_transform_reproducible_and_multiworker(tmp_path):
    root = make_dataset(tmp_path / "n", "dnanet", n=8)
    samples = DatasetSpec(root, "train").resolve()
    ds = IRSTDDataset(samples, transform=TrainTransform(crop_size=16, target_prob=1.0), seed=5)
    a = [ds[i]["image"] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    assert torch.equal(torch.cat([b["image"] for b in batches]), torch.stack(a))
    assert all(b["target"].shape == (2, 1, 16, 16) for b in batches)
    assert [i for b in batches for i in b["id"]] == [s.id for s in samples]
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["image"], a[0]) or not torch.equal(ds[1]["image"], a[1])


def test_nonbinary_mask_warns_once_per_dataset(tmp_path):
    root = make_dataset(tmp_path / "n", "dnanet")
    for sid in ("000001", "000002"):
        m = np.zeros((20, 24), np.uint8)
        m[2:5, 2:5] = 200
        m[3, 3] = 255
        write_png(root / "masks" / f"{sid}.png", m)
    ds = IRSTDDataset(f"{root}:train")
    with pytest.warns(DataWarning) as rec:
        ds[0], ds[1]
    assert len([w for w in rec if issubclass(w.category, DataWarning)]) == 1


def test_split_train_val_deterministic():
    ids = [f"{i:06d}" for i in range(100)]
    tr, va = split_train_val(ids, 0.2, seed=3)
    assert len(va) == 20 and len(tr) == 80 and not set(tr) & set(va) and set(tr) | set(va) == set(ids)
    assert (tr, va) == split_train_val(ids, 0.2, seed=3)
    assert split_train_val(list(reversed(ids)), 0.2, seed=3)[1] == list(reversed(va))  # order-free
    assert split_train_val(ids, 0.2, seed=4)[1] != va
    assert len(split_train_val(ids[:3], 0.01, seed=0)[1]) == 1
    with pytest.raises(DataError, match="val_fraction"):
        split_train_val(ids, 1.5, seed=0)
    with pytest.raises(DataError, match="at least 2"):
        split_train_val(ids[:1], 0.5, seed=0)


def test_train_val_samples_uses_val_split_or_carves(tmp_path):
    sirst = make_dataset(tmp_path / "s", "sirst_v1")
    tr, va, how = train_val_samples(f"{sirst}:train")
    assert [s.id for s in va] == ["Misc_3"] and how.startswith("split") and "idx_427" in how
    tr, va, how = train_val_samples(f"{sirst}:idx_320/train")
    assert how.startswith("split") and "idx_320" in how
    nudt = make_dataset(tmp_path / "n", "dnanet", n=20)
    tr, va, how = train_val_samples(f"{nudt}:train", val_fraction=0.2, seed=1)
    assert (len(tr), len(va)) == (8, 2) and how == "carved 0.2 seed 1"
    assert [s.id for s in va] == [s.id for s in train_val_samples(f"{nudt}:train", val_fraction=0.2, seed=1)[1]]
    with pytest.raises(DataError, match="names no training split"):
        train_val_samples(str(nudt))
    # explicit val split: by name (must exist) or by file
    tr, va, how = train_val_samples(f"{nudt}:train", val_split="70_30/test")
    assert how.startswith("split") and (len(tr), len(va)) == (10, 9)
    with pytest.raises(DataError, match="share ids"):
        train_val_samples(f"{nudt}:train", val_split="70_30/train")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        train_val_samples(f"{nudt}:train", val_split="dev")
    vfile = write_split(tmp_path / "v.txt", ["000019", "000020"])
    tr, va, how = train_val_samples(f"{nudt}:train", val_split=str(vfile))
    assert [s.id for s in va] == ["000019", "000020"] and how == f"split {vfile}"


def test_norm_stats_match_numpy_and_roundtrip(tmp_path):
    root = make_dataset(tmp_path / "n", "dnanet")
    ds = IRSTDDataset(f"{root}:train")
    stats = compute_norm_stats(ds)
    pix = np.concatenate([read_image(s.image).ravel().astype(np.float64) for s in ds.samples])
    assert stats["mean"] == pytest.approx(pix.mean(), rel=1e-9)
    assert stats["std"] == pytest.approx(pix.std(), rel=1e-7)
    assert stats["n_images"] == 3 and stats["n_pixels"] == pix.size
    path = save_norm_stats(stats, tmp_path / "run" / "norm.json")
    assert load_norm_stats(path) == json.loads(path.read_text())
    assert load_norm_stats(path)["mean"] == stats["mean"]
    with pytest.raises(DataError, match="training split only"):
        compute_norm_stats(IRSTDDataset(f"{root}:test"))
    path.write_text('{"mean": 0.3}')
    with pytest.raises(DataError, match="norm.json"):
        load_norm_stats(path)
    with pytest.raises(DataError, match="does not exist"):
        load_norm_stats(tmp_path / "none.json")


def test_dataset_errors(tmp_path):
    root = make_dataset(tmp_path / "n", "dnanet")
    (root / "images" / "000001.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="000001.png"):
        IRSTDDataset(f"{root}:train")[0]
    with pytest.raises(DataError, match="no samples"):
        IRSTDDataset([])
    with pytest.raises(DataError, match="std"):
        IRSTDDataset(f"{root}:train", norm={"mean": 0.1, "std": 0})


@pytest.mark.realdata
def test_real_sirst_dataset_items(real_data):
    ds = IRSTDDataset(f"{real_data / 'sirst'}:test")
    idx = [s.id for s in ds.samples].index("Misc_111")
    with pytest.warns(DataWarning, match="Misc_111"):
        item = ds[idx]
    assert item["image"].shape == item["mask"].shape == (1, 220, 325) and item["mask"].sum() > 0
