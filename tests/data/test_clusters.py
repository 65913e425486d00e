"""Image clusters: the released two-stage recipe reproduced exactly on a golden table, fitted on training
images only, assigned to the nearest centre, saved as JSON, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from irfoundry.cli import main
from irfoundry.data.clusters import ClusterModel, ClusterSettings, fit_clusters
from irfoundry.errors import ConfigError, DataError

GOLDEN = json.loads((Path(__file__).parent / "golden" / "semprior_clusters_k6.json").read_text())


@pytest.fixture(scope="module")
def fitted():
    table = np.asarray(GOLDEN["table"], dtype=np.float32)
    return fit_clusters(GOLDEN["ids"], table, GOLDEN["columns"], ClusterSettings(k=GOLDEN["k"])), table


def test_labels_equal_the_released_recipe(fitted):
    model, _ = fitted
    # the released cluster_metrics_dataframe (KMeans k patched to 6) on the same table, run outside the repo
    assert model.train_labels.tolist() == GOLDEN["labels"]
    assert len(model.columns) <= 32 and 2 <= model.pca_components.shape[0] <= 20


def test_assignment_of_training_images_is_their_cluster_and_new_images_get_the_nearest_centre(fitted):
    model, table = fitted
    assert np.array_equal(model.assign(table, GOLDEN["columns"]), model.train_labels)
    jittered = table * np.float32(1.0001)
    labels = model.assign(jittered, GOLDEN["columns"])
    e = model.embed(jittered, GOLDEN["columns"])
    d = ((e[:, None] - model.centres[None]) ** 2).sum(-1)
    assert np.array_equal(labels, d.argmin(1))
    # columns are looked up by name: a reordered table gives the same clusters
    order = np.random.default_rng(0).permutation(len(GOLDEN["columns"]))
    assert np.array_equal(model.assign(table[:, order], [GOLDEN["columns"][i] for i in order]), model.train_labels)


def test_fitting_ignores_the_images_it_only_assigns(fitted):
    model, table = fitted
    half = fit_clusters(GOLDEN["ids"][:40], table[:40], GOLDEN["columns"], ClusterSettings(k=4))
    again = fit_clusters(GOLDEN["ids"][:40], table[:40], GOLDEN["columns"], ClusterSettings(k=4))
    assert np.array_equal(half.centres, again.centres)
    half.assign(table[40:], GOLDEN["columns"])  # assigning test images changes nothing fitted
    assert np.array_equal(half.centres, again.centres) and half.train_ids == GOLDEN["ids"][:40]


def test_json_round_trip_and_bad_files(fitted, tmp_path):
    model, table = fitted
    back = ClusterModel.load(model.save(tmp_path / "c.json"))
    assert back.columns == model.columns and back.settings == model.settings
    assert np.array_equal(back.assign(table, GOLDEN["columns"]), model.train_labels)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(DataError, match="bad.json.*irfoundry data clusters"):
        ClusterModel.load(tmp_path / "bad.json")


def test_k_larger_than_the_training_set_is_refused():
    with pytest.raises(ConfigError, match="k = 256 .* 64"):
        fit_clusters(GOLDEN["ids"], np.asarray(GOLDEN["table"]), GOLDEN["columns"])


def test_cli_fits_on_train_assigns_test_and_writes_the_table(tiny_synth, tmp_path, capsys):
    pytest.importorskip("cv2")
    out = tmp_path / "clusters.json"
    args = ["data", "clusters", f"{tiny_synth}:train", "--k", "3", "--assign", f"{tiny_synth}:test", "--out", str(out),
            "--table", str(tmp_path / "t.csv")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "fitted 3 clusters on 14 images" in printed and "5 images assigned" in printed
    model = ClusterModel.load(out)
    assert len(model.train_ids) == 14 and model.k == 3
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert len(lines) == 1 + 14 + 5 and lines[0].startswith("split,id,cluster,image_width")
    assert main(args) == 1  # the file exists: nothing overwritten without --overwrite
    assert "already exists" in capsys.readouterr().err
