"""Training on several datasets (``data.mix``): the union of their train splits with each image's dataset
kept, every test set and the union evaluated."""

from __future__ import annotations

import pytest
from conftest import tiny_config

from irfoundry.data.dataset import DatasetSpec
from irfoundry.data.synth import write_synthetic_dataset
from irfoundry.engine import evaluate, from_dict, train
from irfoundry.engine.datamodule import IRSTDDataModule
from irfoundry.errors import ConfigError


@pytest.fixture(scope="module")
def second(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth2") / "other"
    write_synthetic_dataset(root, n=12, size=64, seed=5)
    return root


def _mixed(first, second, out, **data):
    cfg = tiny_config("", out, "mix", max_epochs=1)
    cfg["data"].pop("root")
    cfg["data"].update(mix=[{"root": str(first), "name": "a"}, {"root": str(second), "name": "b"}], **data)
    return cfg


def test_the_union_keeps_each_images_dataset_and_its_own_val(tiny_synth, second, tmp_path):
    dm = IRSTDDataModule(from_dict(_mixed(tiny_synth, second, tmp_path)).data, 4)
    n = {name: len(DatasetSpec.parse(f"{root}:train").resolve()) for name, root in (("a", tiny_synth), ("b", second))}
    assert {s.dataset for s in dm.train_samples} == {"a", "b"}
    assert all(s.id.startswith(f"{s.dataset}/") for s in [*dm.train_samples, *dm.val_samples])
    # each dataset's own val split (the synthetic layout has one), never a test image
    assert len(dm.train_samples) == n["a"] + n["b"]
    tests = {f"{d}/{s.id}" for d, r in (("a", tiny_synth), ("b", second)) for s in DatasetSpec.parse(f"{r}:test").resolve()}
    assert not tests & {s.id for s in [*dm.train_samples, *dm.val_samples]}
    assert "a: split" in dm.val_source and "b: split" in dm.val_source


@pytest.mark.slow
def test_a_mixed_run_trains_and_reports_every_test_set_and_their_union(tiny_synth, second, tmp_path):
    run = train(from_dict(_mixed(tiny_synth, second, tmp_path)))["run_dir"]
    assert run.endswith("mix")
    both = evaluate(run, [f"{tiny_synth}:test", f"{second}:test"], names=["a", "b"])
    one = {name: evaluate(run, f"{root}:test") for name, root in (("a", tiny_synth), ("b", second))}
    assert set(both["sets"]) == {"a", "b"}
    for name in ("a", "b"):
        for k in ("iou", "niou", "pd", "fa", "hse", "n_images", "n_targets"):
            assert both["sets"][name][k] == one[name][k], (name, k)  # the same counters, summed alike
    assert both["n_images"] == one["a"]["n_images"] + one["b"]["n_images"]
    assert both["n_targets"] == one["a"]["n_targets"] + one["b"]["n_targets"]
    # the union is scored over all images (pixel IoU of the summed counts), not an average of the sets
    ious = [one[n]["iou"] for n in "ab" if one[n]["iou"] is not None]
    assert both["iou"] is None or min(ious) <= both["iou"] <= max(ious)

    from irfoundry.cli import main

    assert main(["eval", "--checkpoint", run, "--data", f"{tiny_synth}:test", "--data", f"{second}:test"]) == 0


def test_mix_refuses_a_root_as_well_repeated_names_and_half_given_points(tiny_synth, second, tmp_path):
    cfg = _mixed(tiny_synth, second, tmp_path)
    cfg["data"]["root"] = str(tiny_synth)
    with pytest.raises(ConfigError, match="both given"):
        from_dict(cfg)
    cfg = _mixed(tiny_synth, second, tmp_path)
    cfg["data"]["mix"][1]["name"] = "a"
    with pytest.raises(ConfigError, match="repeat"):
        from_dict(cfg)
    cfg = _mixed(tiny_synth, second, tmp_path, labels="points")
    cfg["data"]["mix"][0]["points"] = "a.json"
    with pytest.raises(ConfigError, match="every entry its points file"):
        from_dict(cfg)
    cfg = _mixed(tiny_synth, second, tmp_path)
    cfg["data"]["mix"][0]["split"] = "x"
    with pytest.raises(ConfigError, match=r"data.mix\[0\]"):
        from_dict(cfg)
