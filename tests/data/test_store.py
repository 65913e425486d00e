"""PerImageStore: the geometry contract at stride 1 (a label map crops exactly like its image), writes,
save / load for the run folder, refusal of another image list, pickling for DataLoader workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from irfoundry.data import PerImageStore
from irfoundry.data.transforms import CropGeometry, TrainTransform
from irfoundry.errors import DataError, IRFoundryError


def _store(**kw) -> PerImageStore:
    return PerImageStore(["a", "b"], [(20, 24), (9, 13)], [(1, 1), (2, 4)], dtype="float32", **kw).allocate()


def test_a_stride_one_level_is_cropped_and_turned_like_the_image():
    rng = np.random.default_rng(0)
    image = rng.random((20, 24)).astype(np.float32)
    labels = PerImageStore(["a"], [(20, 24)], [(1, 1)], dtype="float32").allocate()  # any crop origin
    labels.write("a", [image[None]])
    t = TrainTransform(crop_size=16, target_prob=0.0, jitter=None)
    for seed in range(8):  # unsnapped crops with every flip / turn
        crop, _, g = t.with_geometry(image, image > 2, np.random.default_rng(seed))
        np.testing.assert_array_equal(labels.lookup("a", g)[0][0].numpy(), crop)
    assert [tuple(m.shape) for m in _store().lookup("b", CropGeometry(0, 0, 16, 16))] == [(1, 16, 16), (2, 4, 4)]


def test_write_checks_the_geometry_and_reads_back(tmp_path):
    store = _store()
    with pytest.raises(IRFoundryError, match=r"map 0 of image 'b' has shape \(1, 20, 24\).*needs \(1, 9, 13\)"):
        store.write("b", [np.zeros((1, 20, 24)), np.zeros((2, 3, 4))])
    store.write(1, [torch.ones(1, 9, 13), torch.full((2, 3, 4), 2.0)])
    full = store.full("b")
    assert torch.equal(full[0], torch.ones(1, 9, 13)) and torch.equal(full[1], torch.full((2, 3, 4), 2.0))
    assert torch.equal(store.full("a")[0], torch.zeros(1, 20, 24))
    with pytest.raises(DataError, match="'c' is not in store"):
        store.full("c")


def test_save_load_round_trip_and_refuse_another_image_list(tmp_path):
    store = _store(key={"what": "labels", "run": 1})
    store.write("a", [np.full((1, 20, 24), 0.25, np.float32), np.zeros((2, 5, 6), np.float32)])
    store.save(tmp_path / "labels")
    back = _store(key={"what": "labels", "run": 1}).load(tmp_path / "labels")
    for x, y in zip(store.full("a") + store.full("b"), back.full("a") + back.full("b")):
        assert torch.equal(x, y)
    with pytest.raises(DataError, match="cannot be resumed from"):
        PerImageStore(["a", "c"], [(20, 24), (9, 13)], [(1, 1), (2, 4)], dtype="float32",
                      key={"what": "labels", "run": 1}).load(tmp_path / "labels")
    with pytest.raises(DataError, match="cannot be resumed from"):
        _store(key={"what": "labels", "run": 2}).load(tmp_path / "labels")


def test_memory_store_pickles_with_its_content_and_disk_store_without(tmp_path):
    store = _store()
    store.write("a", [np.ones((1, 20, 24), np.float32), np.zeros((2, 5, 6), np.float32)])
    clone = pickle.loads(pickle.dumps(store))
    assert torch.equal(clone.full("a")[0], store.full("a")[0])
    disk = PerImageStore(["a"], [(8, 8)], [(1, 1)], root=tmp_path, key={"k": 1}, name="d")
    disk.build(lambda idx: [np.full((len(idx), 1, 8, 8), 3.0, np.float16)], progress=False)
    assert pickle.loads(pickle.dumps(disk))._arrays is None and float(disk.full("a")[0].mean()) == 3.0
    again = PerImageStore(["a"], [(8, 8)], [(1, 1)], root=tmp_path, key={"k": 1}, name="d")
    assert again.build(lambda idx: 1 / 0, progress=False).stats["reused"] is True  # same key: reused, not recomputed


def test_bad_stores_are_named():
    with pytest.raises(DataError, match="unique"):
        PerImageStore(["a", "a"], [(1, 1), (1, 1)], [(1, 1)])
    with pytest.raises(DataError, match="levels"):
        PerImageStore(["a"], [(1, 1)], [(0, 1)])
    with pytest.raises(IRFoundryError, match="holds nothing yet"):
        PerImageStore(["a"], [(4, 4)], [(1, 1)]).full("a")
