"""Every shipped config in configs/ parses, names a registered host and method, and points at the data
layout README describes (paths relative to the repository root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from irfoundry.engine import load_config
from irfoundry.methods import list_methods
from irfoundry.methods.fdep import FDEPOptions
from irfoundry.models import list_models

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


def test_there_are_configs_for_every_family():
    families = {p.parent.name for p in CONFIGS}
    assert {"basicirstd", "cpu", "fdep"} <= families
    fdep = {p.stem for p in CONFIGS if p.parent.name == "fdep"}
    base = {p.stem for p in CONFIGS if p.parent.name == "basicirstd"}
    assert fdep == base, "configs/fdep must cover the hosts and datasets of configs/basicirstd"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_parses_and_names_registered_parts(path):
    cfg = load_config(path)
    assert cfg.model.name in list_models()
    assert cfg.method.name in list_methods()
    assert cfg.data.root.startswith("../shared/data/")
    assert cfg.trainer.run_name, "shipped configs name their run folder"
    if cfg.method.name == "fdep":
        opts = FDEPOptions.from_config(cfg.method)
        assert opts.num_modules == 4 and opts.stage == -1 and opts.kd_weight == 0.0
    if "basicirstd" in path.parts:
        assert (cfg.optim.lr, cfg.trainer.batch_size, cfg.data.crop_size, cfg.method.loss) == (5e-4, 16, 256, "softiou")
        assert cfg.trainer.max_epochs == 400 and cfg.optim.milestones == [200, 300]
        assert cfg.model.prior_prob is None, "the protocol keeps each host's own initialisation"
    if "cpu" in path.parts and cfg.model.name != "alclnet":
        assert cfg.model.prior_prob == 0.01, "short budgets start outputs at p = 0.01 (no all-background phase)"
