"""``data.points: derive:centroid`` trains on the clicks ``irfoundry data points`` would write."""

from __future__ import annotations

import pytest
from conftest import tiny_config

from irfoundry.data.dataset import DatasetSpec
from irfoundry.data.point_files import derive_point_table
from irfoundry.engine.config import from_dict
from irfoundry.engine.datamodule import IRSTDDataModule
from irfoundry.errors import ConfigError


def _dm(root, tmp_path, points):
    cfg = tiny_config(root, tmp_path, "d")
    cfg["data"].update(labels="points", points=points)
    return IRSTDDataModule(from_dict(cfg).data, 4)


def test_derived_clicks_equal_the_cli_file_and_cover_the_val_split(tiny_synth, tmp_path):
    dm = _dm(tiny_synth, tmp_path, "derive:coarse:3")
    samples = [*dm.train_samples, *dm.val_samples]
    table, _ = derive_point_table(samples, "coarse", 3)
    assert dm.labels.points == {k: [tuple(p) for p in v] for k, v in table.items()}
    assert dm.val_labels == "points" and dm.labels.describe()["points"] == "derive:coarse:3"
    assert not set(dm.labels.points) & {s.id for s in DatasetSpec.parse(f"{tiny_synth}:test").resolve()}


@pytest.mark.parametrize("bad", ["derive:middle", "derive:centroid:1", "derive:coarse:x"])
def test_a_misspelt_derivation_is_named(tiny_synth, tmp_path, bad):
    with pytest.raises(ConfigError, match="derive:centroid or derive:coarse"):
        _dm(tiny_synth, tmp_path, bad)
