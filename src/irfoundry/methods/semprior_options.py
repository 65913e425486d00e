"""``method.options`` of ``semprior`` (:mod:`irfoundry.methods.semprior`; defaults: the released code's)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from irfoundry.errors import ConfigError
from irfoundry.losses import build_loss
from irfoundry.methods.pal import LabelEvolutionOptions

#: the reference's modulation scale per host (``modulation_scale`` of its ALCL-Net / MLCL-Net)
RELEASED_SCALES = {"alclnet": 0.12, "mlclnet": 0.55}


@dataclass
class SemPriorOptions(LabelEvolutionOptions):
    """``method.options`` of ``semprior`` (see the module docstring; PAL's label options are inherited)."""

    foundation: str = "efficientnet_lite0"
    weights: str | None = None
    layers: list[int | str] | str | None = None
    foundation_norm: bool | str = False
    input_size: int | list[int] | None = None
    cache: Any = "memory"
    #: SCAM: the host's modulation scale (null: the host's entry of ``scales``: the released values of alclnet /
    #: mlclnet), MLP width, residual gamma, zero-initialised output (not the reference)
    scale: float | None = None
    scales: dict[str, float] = dataclasses.field(default_factory=lambda: dict(RELEASED_SCALES))
    hidden: int = 128
    residual_gamma: bool = True
    zero_init: bool = False
    #: inner loss: task loss name, KD weight and temperature, gate L1 weight
    loss: str = "bce"
    kd_weight: float = 0.1
    kd_temperature: float = 4.0
    gate_weight: float = 0.005
    #: outer phase: every this many epochs, steps per phase, its AdamW, eta (null: the inner learning rate)
    outer_every: int = 5
    outer_steps: int = 4
    lr_outer: float = 1.0e-3
    outer_weight_decay: float = 0.01
    eta: float | None = None
    #: ``fit`` (on the training images, ``num_clusters``), a clusters JSON of ``irfoundry data clusters``, or
    #: ``none`` (every weight 1)
    clusters: str = "fit"
    num_clusters: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        build_loss(self.loss)
        for key in ("kd_weight", "gate_weight", "lr_outer", "outer_weight_decay"):
            if getattr(self, key) < 0:
                raise ConfigError(f"method.options.{key} must be >= 0, got {getattr(self, key)!r}")
        if self.kd_temperature <= 0 or self.hidden < 1 or self.outer_every < 1 or self.outer_steps < 0:
            raise ConfigError("method.options needs kd_temperature > 0, hidden >= 1, outer_every >= 1 and "
                              f"outer_steps >= 0, got {self.kd_temperature}, {self.hidden}, {self.outer_every}, "
                              f"{self.outer_steps}")
        for host, value in {"scale": self.scale, **{f"scales.{k}": v for k, v in self.scales.items()}}.items():
            if value is not None and not 0 <= value <= 1:
                raise ConfigError(f"method.options.{host} must be in [0, 1], got {value!r}")
        if self.clusters == "fit" and self.num_clusters < 1:
            raise ConfigError(f"method.options.num_clusters must be >= 1, got {self.num_clusters!r}")
        if self.cache is None or self.cache is False:
            self.cache = "off"
