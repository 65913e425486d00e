"""Study specs: the plan, each run's config as overrides, and errors that name the bad key."""

from __future__ import annotations

import pytest
import yaml

from irfoundry.engine.config import from_dict
from irfoundry.errors import ConfigError
from irfoundry.study import list_specs, load_spec
from irfoundry.study.spec import RunKey


def test_the_fdep_gain_spec_makes_the_published_study_s_runs():
    spec = load_spec("fdep_gain")
    assert "fdep_gain" in list_specs()
    plan = spec.plan(datasets=["sirst"], hosts=["acm"], seeds=[0])
    assert [k.arm for k in plan] == ["host", "fdep", "fdep_random"]  # default arms; fdep_kd on request
    host, fdep, rnd = (from_dict(spec.run_config(k, "runs/x")) for k in plan)
    assert host.method.name == "supervised" and fdep.method.name == rnd.method.name == "fdep"
    assert fdep.method.options.weights is None and rnd.method.options.weights == "random"
    assert (host.data.crop_size, host.trainer.max_epochs, host.optim.lr, host.model.init_prob) == (128, 20, 5e-4, 0.01)
    assert host.trainer.run_name == "sirst_acm_host_s0" and host.trainer.out_dir == "runs/x"
    nudt = from_dict(spec.run_config(RunKey("nudt_sirst", "alcnet", "fdep_kd", 2), "r"))
    assert nudt.trainer.max_epochs == 10 and nudt.data.train_split == "50_50/train" and nudt.method.options.kd_weight == 1
    assert nudt.data.seed == nudt.trainer.seed == 2


@pytest.mark.parametrize("change, words", [
    ({"arms": {}}, ["'arms' is empty"]),
    ({"comparisons": [["fdep", "nope"]]}, ["arm 'nope'"]),
    ({"paired": ["iuo"]}, ["paired ['iuo']"]),
    ({"run_name": "{dataset}_{model}"}, ["run_name"]),
    ({"seeeds": [0]}, ["unknown config key study.seeeds", "Did you mean study.seeds"]),
])
def test_bad_specs_name_the_key(tmp_path, change, words):
    raw = yaml.safe_load(open(__import__("irfoundry").__path__[0] + "/configs/studies/fdep_gain.yaml"))
    raw.update(change)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_selections_must_name_axis_values():
    with pytest.raises(ConfigError, match="--arms"):
        load_spec("fdep_gain").plan(arms=["fdep_kdd"])
    with pytest.raises(ConfigError, match="neither a file nor a shipped study"):
        load_spec("nope")


def test_run_links_name_the_other_run_of_the_same_dataset_and_seed(tmp_path):
    raw = yaml.safe_load(open(__import__("irfoundry").__path__[0] + "/configs/studies/fdep_gain.yaml"))
    raw["arms"]["fdep"]["method"]["options"]["note"] = "from {run:alcnet/host} and {run:acm/fdep_kd}"
    raw["arms"]["fdep_random"]["method"]["options"]["note"] = "{run:acm/nope}"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    cfg = spec.run_config(RunKey("nudt_sirst", "acm", "fdep", 2), "runs/x")
    assert cfg["method"]["options"]["note"] == "from runs/x/nudt_sirst_alcnet_host_s2 and runs/x/nudt_sirst_acm_fdep_kd_s2"
    with pytest.raises(ConfigError, match="names arm 'nope'"):
        spec.run_config(RunKey("sirst", "acm", "fdep_random", 0), "runs/x")


@pytest.mark.parametrize("name", list_specs())
def test_every_run_of_every_shipped_study_is_a_valid_config(name):
    spec = load_spec(name)
    keys = spec.plan(arms=list(spec.arms))
    assert keys
    for key in keys:
        cfg = from_dict(spec.run_config(key, "runs/x"))
        assert cfg.trainer.run_name == spec.name_of(key) and cfg.model.name == key.host
