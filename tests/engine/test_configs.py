"""Configs compose from groups: every named run parses, names registered parts and keeps its protocol; user
files compose groups with ``defaults``; bad group names are named."""

from __future__ import annotations

import pytest
import yaml

from irfoundry.engine import load_config
from irfoundry.engine.compose import group_names, parse_run_name, read_group, run_names, runs_table
from irfoundry.errors import ConfigError
from irfoundry.methods import list_methods
from irfoundry.methods.fdep import FDEPOptions
from irfoundry.methods.lesps import LESPSOptions
from irfoundry.methods.pal import PALOptions
from irfoundry.methods.semprior import SemPriorOptions
from irfoundry.methods.simir_distill import SimIRDistillOptions
from irfoundry.models import list_models

SHIPPED_HOSTS = {"acm", "alcnet", "alclnet", "dnanet", "mlclnet", "mshnet", "uiunet",
                 "rdian", "istdunet", "gglnet", "isnet", "msdanet", "sctransnet"}  # the host zoo (issue 22)


def test_families_cover_every_host_and_dataset():
    assert {"basicirstd", "cpu", "fdep"} <= set(runs_table())
    assert {"sirst427", "nuaa", "nudt"} <= set(group_names("data"))
    assert set(list_models()) <= set(group_names("model")), "every registered model is a model group"
    names = set(run_names())
    for family in ("basicirstd", "cpu", "fdep", "lesps", "pal", "semprior", "simir_distill"):
        assert {f"{family}/{h}_{d}" for h in SHIPPED_HOSTS for d in ("sirst427", "nuaa", "nudt")} <= names


@pytest.mark.parametrize("name", [n for n in run_names() if n.split("/")[1].rsplit("_", 1)[0] in SHIPPED_HOSTS])
def test_named_run_parses_and_keeps_its_protocol(name):
    family, rest = name.split("/")
    if family in ("lesps", "pal", "semprior"):  # point supervision: the clicks are the user's file
        with pytest.raises(ConfigError, match="irfoundry data points"):
            load_config(name)
        cfg = load_config(name, ["data.points=clicks.json"])
        assert cfg.data.labels == "points"
        if family == "semprior":  # the released recipe, a scale for every shipped host, validation kept
            o = cfg.method.options
            assert isinstance(o, SemPriorOptions) and (o.outer_every, o.outer_steps, o.kd_weight) == (5, 4, 0.1)
            assert (o.scales["alclnet"], o.scales["mlclnet"]) == (0.12, 0.55) and cfg.model.name in o.scales
            assert (cfg.optim.optimizer, cfg.optim.lr, cfg.trainer.max_epochs) == ("adamw", 1e-3, 300)
            assert cfg.data.val_split is None
            return
        if family == "lesps":
            assert isinstance(cfg.method.options, LESPSOptions)
            assert (cfg.method.options.t_loss, cfg.method.options.update_every, cfg.method.options.tb) == (10.0, 5, 0.5)
        else:  # PAL's released optimiser and schedule, BasicIRSTD's crops and budget
            o = cfg.method.options
            assert isinstance(o, PALOptions) and (o.warmup_fraction, o.final_fraction, o.update_every) == (0.2, 0.8, 5)
            assert (o.decay, o.lose_ratio_init, o.alarm_ratio, o.edge_weight, o.keep_fraction) == (0.97, 0.2, 5.0, 4.0, 0.5)
            assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.scheduler) == ("adamw", 1e-3, "none")
            assert (cfg.trainer.batch_size, cfg.data.crop_size, cfg.trainer.max_epochs) == (16, 256, 400)
    elif family == "simir_distill":  # the teacher is the user's run folder or file
        with pytest.raises(ConfigError, match="method.options.teacher"):
            load_config(name)
        cfg = load_config(name, ["method.options.teacher=runs/teacher"])
        o = cfg.method.options
        assert isinstance(o, SimIRDistillOptions) and o.teacher == "runs/teacher"
        assert (o.temperature, o.kd_weight) == (2.0, 1.0)
        assert (o.feature_weight, o.distill_epochs, o.kd_outputs) == (0.0, None, "all")
        # the released configs/repvit.yaml SOLVER and batch
        assert cfg.method.loss == "simir_point" and cfg.trainer.gradient_clip_val == 0.01
        opt = cfg.optim
        assert (opt.optimizer, opt.lr, opt.weight_decay, opt.min_lr) == ("adamw", 1e-4, 0.1, 1e-6)
        assert (cfg.optim.scheduler, cfg.optim.interval, cfg.optim.warmup_steps) == ("cosine", "step", 0)
        assert cfg.optim.no_decay_norm_bias and (cfg.trainer.max_steps, cfg.trainer.batch_size) == (9600, 8)
    else:
        cfg = load_config(name)
    assert cfg.model.name in list_models() and cfg.method.name in list_methods()
    assert cfg.data.root.startswith("../shared/data/")
    assert cfg.trainer.run_name == rest + runs_table()[family]["suffix"]
    if family == "fdep":
        assert isinstance(cfg.method.options, FDEPOptions)
        assert cfg.method.options.num_modules == 4 and cfg.method.options.stage == -1 and cfg.method.options.kd_weight == 0
    if family in ("basicirstd", "fdep", "lesps"):
        assert (cfg.optim.lr, cfg.trainer.batch_size, cfg.data.crop_size) == (5e-4, 16, 256)
        assert cfg.method.loss == "softiou" or family == "lesps"  # LESPS trains with its own focal loss
        assert cfg.trainer.max_epochs == 400 and cfg.optim.milestones == [200, 300]
        assert cfg.model.init_prob is None, "the protocol keeps each host's own initialisation"
    if family == "cpu":
        assert cfg.trainer.max_epochs == 100 and cfg.optim.milestones == [50, 75] and cfg.data.crop_size == 128
        expected = None if cfg.model.name == "alclnet" else 0.01
        assert cfg.model.init_prob == expected, "short budgets start outputs at p = 0.01 (ALCL-Net starts below)"
    if rest.endswith(("_nuaa", "_nudt")):
        assert cfg.data.val_split == "none", "BasicIRSTD's protocol: no validation, the last epoch"
    else:
        assert cfg.data.val_split is None and cfg.trainer.val_every == 5


def test_the_old_file_spelling_names_the_same_run():
    assert parse_run_name("configs/fdep/acm_sirst427.yaml") == ("fdep", "acm", "sirst427")
    assert parse_run_name("cpu/unet_tiny_nudt") == ("cpu", "unet_tiny", "nudt")
    assert parse_run_name("fdep/acm_nowhere") is None and parse_run_name("nofamily/acm_nudt") is None
    assert load_config("configs/fdep/acm_sirst427.yaml").to_dict() == load_config("fdep/acm_sirst427").to_dict()


def test_a_user_file_composes_groups_and_overrides_them(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump({"defaults": ["protocol/cpu", "data/nudt", "model/mshnet", "method/fdep"],
                                 "method": {"options": {"kd_weight": 0.5}}, "trainer": {"max_epochs": 7}}))
    cfg = load_config(p, ["optim.lr=1e-3"])
    assert cfg.model.name == "mshnet" and cfg.data.root.endswith("nudt_sirst") and cfg.data.crop_size == 128
    assert cfg.method.options.kd_weight == 0.5 and cfg.method.options.foundation == "efficientnet_lite0"
    assert cfg.trainer.max_epochs == 7 and cfg.optim.lr == 1e-3 and cfg.optim.milestones == [50, 75]
    assert read_group("protocol/cpu")["optim"]["scheduler"] == "multistep"  # cpu builds on basicirstd


@pytest.mark.parametrize("defaults, words", [
    (["data/nowhere"], ["no config group 'data/nowhere'", "sirst427"]),
    (["sirst427"], ["GROUP/NAME"]),
    ("protocol/cpu", None),
])
def test_bad_defaults_are_named(tmp_path, defaults, words):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"defaults": defaults}))
    if words is None:  # a single string is accepted
        assert load_config(p).trainer.max_epochs == 100
        return
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_a_missing_file_that_is_no_run_says_how_to_list_runs(tmp_path):
    with pytest.raises(ConfigError, match="irfoundry configs"):
        load_config(tmp_path / "missing.yaml")
