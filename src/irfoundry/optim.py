"""Optimisers, parameter groups and learning-rate schedules from the ``optim`` config section.

Registries, not if/elif: :data:`OPTIMIZERS` (``adam``, ``adamw``, ``sgd``) and :data:`SCHEDULERS`
(``none``, ``step``, ``multistep``, ``cosine``); add one with :func:`register_optimizer` /
:func:`register_scheduler` and it becomes a valid ``optim.optimizer`` / ``optim.scheduler`` value.

A schedule is a factor of ``optim.lr`` as a function of ``t``, counted in ``optim.interval`` units: epochs
(the BasicIRSTD recipes: ``multistep`` at epochs 200 / 300) or optimiser steps (SimIR's warm-up cosine
over 9,600 iterations). ``milestones`` / ``step_size`` / ``warmup_*`` are in the same unit, and
``cosine`` anneals over the run's length in that unit (``trainer.max_epochs``, or the total number of
optimiser steps, ``trainer.max_steps`` when set). A linear warm-up multiplies any schedule by
``(t + 1) / (warmup + 1)`` while ``t < warmup``.

Parameter groups (:func:`param_groups`): one group holding every trainable parameter by default (the
historical behaviour, bit for bit); with ``optim.no_decay_norm_bias`` the 1-d parameters (norm weights,
biases) and the names a method lists (e.g. SimIR's query tokens) go to a second group with
``weight_decay = 0``, as timm's ``param_groups_weight_decay`` does.

Pure PyTorch: methods build their optimisers with these functions without importing the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal

import torch
from torch import nn

from irfoundry.errors import ConfigError
from irfoundry.options import choice_error

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "OptimConfig",
    "OptimizerSpec",
    "ScheduleLength",
    "build_optimizer",
    "build_scheduler",
    "param_groups",
    "register_optimizer",
    "register_scheduler",
    "schedule_factor",
]


@dataclass
class OptimConfig:
    """The ``optim`` section (see the module docstring)."""

    optimizer: str = "adam"
    lr: float = 5e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    #: Adam / AdamW betas (``null``: PyTorch's (0.9, 0.999))
    betas: list[float] | None = None
    #: no weight decay on 1-d parameters (norm weights, biases) and on the names the method lists
    no_decay_norm_bias: bool = False
    scheduler: str = "none"
    #: unit of the schedule: ``epoch`` (stepped after every epoch) or ``step`` (after every optimiser step)
    interval: Literal["epoch", "step"] = "epoch"
    #: multistep milestones / step size, in ``interval`` units
    milestones: list[int] = field(default_factory=list)
    step_size: int = 30
    gamma: float = 0.1
    #: linear warm-up length with ``interval: epoch`` / ``interval: step``
    warmup_epochs: int = 0
    warmup_steps: int = 0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer.lower() not in OPTIMIZERS:
            raise choice_error("optim.optimizer", self.optimizer, sorted(OPTIMIZERS))
        if self.scheduler.lower() not in SCHEDULERS:
            raise choice_error("optim.scheduler", self.scheduler, sorted(SCHEDULERS))
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"optim.lr must be a positive number, got {self.lr!r}")
        for key in ("weight_decay", "min_lr", "warmup_epochs", "warmup_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"optim.{key} must be >= 0, got {getattr(self, key)!r}")
        other = "warmup_steps" if self.interval == "epoch" else "warmup_epochs"
        if getattr(self, other):
            raise ConfigError(
                f"optim.{other} = {getattr(self, other)} does not apply with optim.interval: {self.interval}; "
                f"use optim.warmup_{self.interval}s (warm-up and schedule count the same unit)"
            )
        if self.betas is not None and (len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas)):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {self.betas!r}")

    @property
    def warmup(self) -> int:
        """Warm-up length in ``interval`` units."""
        return self.warmup_epochs if self.interval == "epoch" else self.warmup_steps


@dataclass(frozen=True)
class ScheduleLength:
    """How long the run is, in both schedule units (the engine fills it from the trainer)."""

    epochs: int
    steps: int

    def of(self, interval: str) -> int:
        return self.epochs if interval == "epoch" else self.steps


@dataclass
class OptimizerSpec:
    """One optimiser of a method, with its schedule. ``name`` keys it in the step context."""

    name: str
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    interval: Literal["epoch", "step"] = "epoch"


OptimizerBuilder = Callable[[list, OptimConfig], torch.optim.Optimizer]
#: ``(t, total, cfg) -> factor`` before warm-up; ``t`` and ``total`` in ``cfg.interval`` units
ScheduleFactor = Callable[[int, int, OptimConfig], float]

OPTIMIZERS: dict[str, OptimizerBuilder] = {}
SCHEDULERS: dict[str, ScheduleFactor] = {}


def register_optimizer(name: str) -> Callable[[OptimizerBuilder], OptimizerBuilder]:
    def decorator(fn: OptimizerBuilder) -> OptimizerBuilder:
        if name in OPTIMIZERS:
            raise ConfigError(f"optimizer {name!r} is already registered")
        OPTIMIZERS[name] = fn
        return fn

    return decorator


def register_scheduler(name: str) -> Callable[[ScheduleFactor], ScheduleFactor]:
    def decorator(fn: ScheduleFactor) -> ScheduleFactor:
        if name in SCHEDULERS:
            raise ConfigError(f"scheduler {name!r} is already registered")
        SCHEDULERS[name] = fn
        return fn

    return decorator


def _adam_kwargs(cfg: OptimConfig) -> dict:
    return {"lr": cfg.lr, "weight_decay": cfg.weight_decay, **({"betas": tuple(cfg.betas)} if cfg.betas else {})}


@register_optimizer("adam")
def _adam(groups: list, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, **_adam_kwargs(cfg))


@register_optimizer("adamw")
def _adamw(groups: list, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, **_adam_kwargs(cfg))


@register_optimizer("sgd")
def _sgd(groups: list, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@register_scheduler("none")
def _constant(t: int, total: int, cfg: OptimConfig) -> float:
    return 1.0


@register_scheduler("step")
def _step(t: int, total: int, cfg: OptimConfig) -> float:
    return cfg.gamma ** (t // max(1, cfg.step_size))


@register_scheduler("multistep")
def _multistep(t: int, total: int, cfg: OptimConfig) -> float:
    return cfg.gamma ** sum(t >= m for m in cfg.milestones)


@register_scheduler("cosine")
def _cosine(t: int, total: int, cfg: OptimConfig) -> float:
    warm = cfg.warmup
    span = max(1, total - warm)
    u = min(max(t - warm, 0), span) / span
    floor = cfg.min_lr / cfg.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * u))


def schedule_factor(cfg: OptimConfig, t: int, total: int) -> float:
    """The factor of ``cfg.lr`` at ``t`` (``interval`` units) of a run ``total`` units long, warm-up included."""
    f = SCHEDULERS[cfg.scheduler.lower()](t, total, cfg)
    warm = cfg.warmup
    if warm and t < warm:
        f *= (t + 1) / (warm + 1)
    return f


def param_groups(
    named: Iterable[tuple[str, nn.Parameter]], cfg: OptimConfig, *, no_decay: Iterable[str] = ()
) -> list[dict]:
    """Trainable parameters as optimiser groups.

    Args:
        named: ``(name, parameter)`` pairs (e.g. ``method.named_parameters()``); frozen ones are skipped.
        cfg: the optim section (``weight_decay``, ``no_decay_norm_bias``).
        no_decay: parameter names (or name prefixes ending in ``.``) that never get weight decay when
            ``no_decay_norm_bias`` is on (a method's query tokens, position embeddings, ...).

    Returns:
        ``[{"params": [...], "weight_decay": wd}]``, plus ``{"params": [...], "weight_decay": 0.0}`` for the
        excluded parameters when ``no_decay_norm_bias`` is set and any exist.
    """
    decay, keep = [], []
    names = tuple(no_decay)
    for name, p in named:
        if not p.requires_grad:
            continue
        excluded = cfg.no_decay_norm_bias and (p.ndim <= 1 or name.endswith(".bias") or any(
            name == n or (n.endswith(".") and name.startswith(n)) for n in names))
        (keep if excluded else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if keep:
        groups.append({"params": keep, "weight_decay": 0.0})
    if not decay and not keep:
        raise ConfigError("the method has no trainable parameters to optimise")
    return [g for g in groups if g["params"]]


def build_optimizer(cfg: OptimConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """``OPTIMIZERS[cfg.optimizer]`` over ``groups`` (from :func:`param_groups`)."""
    return OPTIMIZERS[cfg.optimizer.lower()](groups, cfg)


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, length: ScheduleLength):
    """A ``LambdaLR`` following :func:`schedule_factor`, or ``None`` for a constant rate without warm-up."""
    if cfg.scheduler.lower() == "none" and not cfg.warmup:
        return None
    total = length.of(cfg.interval)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: schedule_factor(cfg, t, total))
