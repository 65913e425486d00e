"""Optimiser and schedule registries: per-epoch and per-step schedules with warm-up, parameter groups
without decay on norms / biases / named tokens, and errors that name the key."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from irfoundry.engine.config import load_config
from irfoundry.errors import ConfigError
from irfoundry.optim import OPTIMIZERS, SCHEDULERS, OptimConfig, ScheduleLength, build_optimizer, build_scheduler, \
    param_groups, schedule_factor


def test_warmup_cosine_per_step():
    cfg = OptimConfig(lr=1e-3, scheduler="cosine", interval="step", warmup_steps=4, min_lr=1e-5)
    total = 20
    f = [schedule_factor(cfg, t, total) for t in range(total + 1)]
    assert f[:4] == pytest.approx([0.2, 0.4 * 1.0, 0.6, 0.8])  # (t + 1) / (warmup + 1) times the cosine's 1
    assert f[4] == pytest.approx(1.0)
    assert f[12] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f[20] == pytest.approx(0.01)  # min_lr / lr at the end


def test_epoch_schedules_keep_the_historical_factors():
    cfg = OptimConfig(scheduler="multistep", milestones=[2, 4], gamma=0.1)
    assert [schedule_factor(cfg, t, 6) for t in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert build_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1), OptimConfig(), ScheduleLength(1, 1)) is None


def test_param_groups_keep_one_group_by_default_and_split_on_request():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    model.register_parameter("query", nn.Parameter(torch.zeros(4, 8)))
    (only,) = param_groups(model.named_parameters(), OptimConfig(weight_decay=0.1))
    assert len(only["params"]) == 5 and only["weight_decay"] == 0.1
    decay, keep = param_groups(model.named_parameters(), OptimConfig(weight_decay=0.1, no_decay_norm_bias=True),
                               no_decay=["query"])
    assert [tuple(p.shape) for p in decay["params"]] == [(4, 1, 3, 3)] and keep["weight_decay"] == 0.0
    assert len(keep["params"]) == 4  # conv bias, BN weight and bias, the query tokens
    opt = build_optimizer(OptimConfig(optimizer="adamw", betas=[0.9, 0.95], weight_decay=0.1, no_decay_norm_bias=True),
                          [decay, keep])
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["betas"] == (0.9, 0.95)


@pytest.mark.parametrize("override, words", [
    ("optim.optimizer=rmsprop", ["optim.optimizer = 'rmsprop' is not allowed", "adam, adamw, sgd"]),
    ("optim.scheduler=poly", ["optim.scheduler = 'poly'"]),
    ("optim.interval=batch", ["optim.interval = 'batch' is not allowed; choose one of: epoch, step"]),
    ("optim.warmup_steps=5", ["optim.warmup_steps = 5 does not apply with optim.interval: epoch"]),
    ("optim.betas=[0.9]", ["optim.betas must be two numbers"]),
])
def test_bad_optim_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert all(w in str(err.value) for w in words), str(err.value)
    assert {"adam", "adamw", "sgd"} <= set(OPTIMIZERS) and {"none", "step", "multistep", "cosine"} <= set(SCHEDULERS)
