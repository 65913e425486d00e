"""FDEP / CO-ISD: a frozen foundation model teaches a host through SAMF, the host ships alone.

Paper: *Foundation-Driven Efficient Paradigm* (arXiv 2512.05511; no code released). methods.md section 1
lists what is published and what is reconstructed; in short:

* [paper] main branch = host encoder -> SAMF fusion with frozen foundation features -> host decoder;
  lightweight branch = the same host encoder and decoder without SAMF. Both branches share every host
  weight, see the same image and are trained together, each against the ground truth, by one backward
  pass ("synchronised backpropagation"). The encoder output is identical, so it is computed once and
  decoded twice.
* [paper] inference and export use the lightweight branch only: exactly the host's parameters and MACs.
* [recon] ``loss = l(main) + light_weight * l(light)`` with ``light_weight = 1``; an explicit distillation
  term ``kd_weight * BCE(sigmoid(light / T), sigmoid(main / T).detach())`` is available and off by default.
* [recon] SAMF placement, number of modules, kernels and foundation layers are options (defaults: four
  SAMFs on the bottleneck, four evenly spaced layers of the foundation model).

Options (``method.options`` in the config)::

    foundation: efficientnet_lite0   # any name of irfoundry.foundation.list_foundations() or timm:NAME
    weights: null                    # bundled / file / hub name; "random" for a randomly initialised prior
    layers: null                     # foundation layers (default: 4 evenly spaced / every CNN stage)
    input_size: null                 # foundation input resolution (null: native)
    stage: -1                        # host encoder stage that SAMF modifies (-1: bottleneck)
    num_modules: 4                   # SAMFs in series
    sources: null                    # foundation layer index per SAMF (default: spread in order)
    kernel: 3                        # SAMF conv kernel
    prior_kernel: 1                  # SAMF kernel on the prior
    light_weight: 1.0                # lambda of the lightweight branch's loss
    kd_weight: 0.0                   # explicit KD term (ablation)
    kd_temperature: 1.0
    cache: memory                    # feature cache: memory | off | a directory (memory-mapped, reused)

Hosts with a warm-up schedule (MSHNet's ``warm_epochs`` in the ``supervised`` method) are trained on
all their outputs from the first epoch here: FDEP's paper states no warm-up.

Priors come from ``batch["prior"]`` when the data pipeline attaches them (the feature cache, on by
default: :meth:`FDEP.prior_cache`), else the foundation model runs on the batch (``image`` mapped back to
[0, 1] with the run's normalisation). The two differ by design: cached features are computed once on
the full, un-augmented image and cut to each crop (global context, no intensity jitter; see
:mod:`irfoundry.foundation.cache`); ``cache: off`` runs the model on every augmented crop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ConfigError
from irfoundry.fusion import SAMFStack
from irfoundry.losses import build_loss, deep_supervision_loss
from irfoundry.methods.base import Batch, Method, method_options, register_method
from irfoundry.models.base import main_output


@dataclass
class FDEPOptions:
    foundation: str = "efficientnet_lite0"
    weights: Any = None
    layers: Any = None
    input_size: Any = None
    stage: int = -1
    num_modules: int = 4
    sources: Any = None
    kernel: int = 3
    prior_kernel: int = 1
    light_weight: float = 1.0
    kd_weight: float = 0.0
    kd_temperature: float = 1.0
    cache: Any = "memory"

    @classmethod
    def from_config(cls, cfg) -> "FDEPOptions":
        """``cfg.options`` checked by name (unknown keys raise, naming the allowed ones) and by type."""
        values = method_options(cfg, dataclasses.asdict(cls()))
        for key in ("stage", "num_modules", "kernel", "prior_kernel"):
            v = values[key]
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"method.options.{key} must be an integer, got {v!r}")
        for key in ("light_weight", "kd_weight", "kd_temperature"):
            try:
                values[key] = float(values[key])
            except (TypeError, ValueError):
                raise ConfigError(f"method.options.{key} must be a number, got {values[key]!r}") from None
            if values[key] < 0 or (key == "kd_temperature" and values[key] == 0):
                raise ConfigError(f"method.options.{key} must be {'> 0' if key == 'kd_temperature' else '>= 0'}, "
                                  f"got {values[key]}")
        if values["cache"] is None or values["cache"] is False:
            values["cache"] = "off"
        if not isinstance(values["cache"], str) or not values["cache"]:
            raise ConfigError(f"method.options.cache must be 'memory', 'off' or a directory, got {values['cache']!r}")
        return cls(**values)


@register_method("fdep")
class FDEP(Method):
    """CO-ISD training of ``host`` with SAMF-fused foundation priors; exports the host alone.

    Submodules: ``host`` (deployable), ``samf`` (training only), ``foundation`` (frozen, holds no
    state in ``state_dict``). ``eval_branches()`` = ``{"host": lightweight, "main": fused}``: the
    lightweight branch comes first, so the ``best`` checkpoint is selected on it.
    """

    def __init__(self, host: nn.Module, cfg, foundation: nn.Module | None = None) -> None:
        super().__init__(host, cfg)
        self.opts = FDEPOptions.from_config(cfg)
        o = self.opts
        self.loss_fn = build_loss(cfg.loss)
        if foundation is None:
            from irfoundry.foundation import create_foundation

            foundation = create_foundation(o.foundation, weights=o.weights, layers=o.layers, input_size=o.input_size)
        self.foundation = foundation
        n_stages = len(host.stage_channels)
        if not -n_stages <= o.stage < n_stages:
            raise ConfigError(
                f"method.options.stage = {o.stage} but host {getattr(host, 'model_name', '')} has {n_stages} "
                f"encoder stages (use -1 for the bottleneck, 0..{n_stages - 1} for a stage)"
            )
        self.stage = o.stage % n_stages
        self.samf = SAMFStack(
            host.stage_channels[self.stage],
            [fi["channels"] for fi in foundation.feature_info],
            num_modules=o.num_modules,
            sources=o.sources,
            kernel=o.kernel,
            prior_kernel=o.prior_kernel,
        )
        #: train-split normalisation (``{"mean", "std"}``, [0, 1] units), set by the engine
        self.norm: dict | None = None

    # ---------------------------------------------------------------------------------- plumbing
    def set_norm(self, norm: Mapping[str, float]) -> None:
        self.norm = {"mean": float(norm["mean"]), "std": float(norm["std"])}

    def prior_cache(self) -> tuple[nn.Module, str | None] | None:
        """``(foundation, directory or None)`` unless ``cache: off``: the engine then serves cached
        full-image features per crop as ``batch["prior"]``."""
        cache = self.opts.cache
        if cache == "off":
            return None
        return self.foundation, (None if cache == "memory" else cache)

    def priors(self, images: Tensor) -> list[Tensor]:
        """Foundation maps of normalised host inputs ``B x 1 x H x W`` -> list of ``B x C_i x h_i x w_i``."""
        from irfoundry.foundation import to_unit_range

        if self.norm is None:
            raise ConfigError("FDEP needs the run's normalisation statistics (the engine calls set_norm)")
        with torch.no_grad():
            return self.foundation(to_unit_range(images, self.norm["mean"], self.norm["std"]))

    def _fuse(self, feats: list[Tensor], priors: list[Tensor]) -> list[Tensor]:
        fused = list(feats)
        fused[self.stage] = self.samf(feats[self.stage], priors)
        return fused

    # ---------------------------------------------------------------------------------- training
    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        images = batch["image"]
        priors = batch.get("prior")
        if priors is None:
            priors = self.priors(images)
        size = (images.shape[-2], images.shape[-1])
        feats = self.host.encode(images)
        light = self.host.decode(feats, size)
        main = self.host.decode(self._fuse(feats, priors), size)
        o = self.opts
        l_main = deep_supervision_loss(main, batch["mask"], self.loss_fn, self.cfg.aux_weight)
        l_light = deep_supervision_loss(light, batch["mask"], self.loss_fn, self.cfg.aux_weight)
        loss = l_main + o.light_weight * l_light
        logs = {"loss": loss.detach(), "loss/main": l_main.detach(), "loss/light": l_light.detach()}
        if o.kd_weight > 0:
            t = o.kd_temperature
            target = torch.sigmoid(main_output(main).detach() / t)
            kd = F.binary_cross_entropy_with_logits(main_output(light) / t, target)
            loss = loss + o.kd_weight * kd
            logs["loss/kd"] = kd.detach()
        return loss, logs

    # ---------------------------------------------------------------------------------- evaluation
    def fused_logits(self, images: Tensor) -> Tensor:
        """Main (fused) branch: ``B x 1 x H x W`` logits, foundation run on the full image."""
        feats = self.host.encode(images)
        out = self.host.decode(self._fuse(feats, self.priors(images)), (images.shape[-2], images.shape[-1]))
        return main_output(out)

    def eval_branches(self) -> dict[str, Callable[[Tensor], Tensor]]:
        return {"host": self.predict_logits, "main": self.fused_logits}

    def export_model(self) -> nn.Module:
        return self.host

    def describe(self) -> dict:
        """What goes into the run's metadata: options and the foundation's identity (incl. weights sha256)."""
        fm = self.foundation
        config = getattr(fm, "config", None)
        return {
            "options": dataclasses.asdict(self.opts),
            "foundation": config() if callable(config) else {},
            "foundation_cache_key": fm.cache_key() if hasattr(fm, "cache_key") else None,
        }
