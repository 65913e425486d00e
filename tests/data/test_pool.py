"""The training pool: membership, its file, and the training sampler drawing from it only."""

from __future__ import annotations

import json

import pytest

from irfoundry.data.pool import TrainingPool
from irfoundry.engine.datamodule import EpochSeededSampler
from irfoundry.errors import DataError


class _Items:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def set_epoch(self, epoch):
        pass


def test_membership_round_trips_through_its_file_and_names_bad_ids(tmp_path):
    pool = TrainingPool(["a", "b", "c", "d"])
    assert len(pool) == 4
    pool.set(["c", "a"])
    assert pool.members() == ["a", "c"] and pool.indices() == [0, 2] and "b" not in pool
    pool.add(["d"])
    pool.save(tmp_path)
    assert json.loads((tmp_path / "pool.json").read_text())["members"] == ["a", "c", "d"]
    assert TrainingPool(["a", "b", "c", "d"]).load(tmp_path).members() == ["a", "c", "d"]
    with pytest.raises(DataError, match="not training images"):
        pool.add(["zz"])
    with pytest.raises(DataError, match="another training split"):
        TrainingPool(["a", "b"]).load(tmp_path)
    with pytest.raises(DataError, match="no readable training pool"):
        TrainingPool(["a"]).load(tmp_path / "missing")


def test_the_sampler_permutes_the_pool_only_and_sees_it_grow():
    pool = TrainingPool([str(i) for i in range(10)])
    pool.set(["1", "4", "7"])
    sampler = EpochSeededSampler(_Items(10), seed=0, pool=pool)
    assert len(sampler) == 3 and sorted(sampler) == [1, 4, 7]
    pool.add(["0", "9"])
    assert len(sampler) == 5 and sorted(sampler) == [0, 1, 4, 7, 9]
    shards = [list(EpochSeededSampler(_Items(10), seed=0, num_replicas=2, rank=r, pool=pool)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 3 and set(shards[0] + shards[1]) == {0, 1, 4, 7, 9}
