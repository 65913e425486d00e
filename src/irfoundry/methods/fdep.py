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
    weights: null                    # bundled / file / hub name; "random" for a randomly initialised foundation
    layers: null                     # foundation layers (default: 4 evenly spaced / every CNN stage)
    input_size: null                 # foundation input resolution (null: native)
    stage: -1                        # host encoder stage that SAMF modifies (-1: bottleneck)
    num_modules: 4                   # SAMFs in series
    sources: null                    # foundation layer index per SAMF (default: spread in order)
    kernel: 3                        # SAMF conv kernel
    feature_kernel: 1                # SAMF kernel on the foundation feature
    light_weight: 1.0                # lambda of the lightweight branch's loss
    kd_weight: 0.0                   # explicit KD term (ablation)
    kd_temperature: 1.0
    cache: memory                    # feature cache: memory | off | a directory (memory-mapped, reused)

Hosts with a warm-up schedule (MSHNet's ``warm_epochs`` in the ``supervised`` method) are trained on
all their outputs from the first epoch here: FDEP's paper states no warm-up.

Foundation features come from ``batch["foundation"]`` when the data pipeline attaches them (the feature
cache, on by default: :meth:`FDEP.data_requests`), else the foundation model runs on the batch (``image``
mapped back to [0, 1] with the run's normalisation). The two differ by design: cached features are computed once on
the full, un-augmented image and cut to each crop (global context, no intensity jitter; see
:mod:`irfoundry.foundation.cache`); ``cache: off`` runs the model on every augmented crop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ConfigError, ModelError
from irfoundry.fusion import SAMFStack
from irfoundry.losses import build_loss, deep_supervision_loss
from irfoundry.methods.base import Batch, Method, register_method
from irfoundry.methods.context import BuildEnv, DataRequests, FeatureRequest
from irfoundry.models.base import is_encoder_decoder, main_output

#: batch key of the cached foundation features
FEATURES = "foundation"


@dataclass
class FDEPOptions:
    """``method.options`` of ``fdep`` (see the module docstring)."""

    RENAMED: ClassVar[dict[str, str]] = {"prior_kernel": "feature_kernel"}

    foundation: str = "efficientnet_lite0"
    weights: str | None = None
    layers: list[int | str] | str | None = None
    input_size: int | list[int] | None = None
    stage: int = -1
    num_modules: int = 4
    sources: list[int] | None = None
    kernel: int = 3
    feature_kernel: int = 1
    light_weight: float = 1.0
    kd_weight: float = 0.0
    kd_temperature: float = 1.0
    cache: Any = "memory"

    def __post_init__(self) -> None:
        for key in ("light_weight", "kd_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"method.options.{key} must be >= 0, got {getattr(self, key)}")
        if self.kd_temperature <= 0:
            raise ConfigError(f"method.options.kd_temperature must be > 0, got {self.kd_temperature}")
        if self.num_modules < 1:
            raise ConfigError(f"method.options.num_modules must be >= 1, got {self.num_modules}")
        if self.cache is None or self.cache is False:
            self.cache = "off"
        if not isinstance(self.cache, str) or not self.cache:
            raise ConfigError(f"method.options.cache must be 'memory', 'off' or a directory, got {self.cache!r}")


@register_method("fdep", options=FDEPOptions)
class FDEP(Method):
    """CO-ISD training of ``host`` with SAMF-fused foundation features; exports the host alone.

    Submodules: ``host`` (deployable), ``samf`` (training only), ``foundation`` (frozen, holds no
    state in ``state_dict``). ``eval_branches()`` = ``{"host": lightweight, "main": fused}``: the
    lightweight branch comes first, so the ``best`` checkpoint is selected on it.

    Args:
        host: an encoder-decoder host.
        cfg: the method config (``cfg.options`` an :class:`FDEPOptions`).
        foundation: the frozen foundation model (``forward(x in [0, 1]) -> list[maps]``, ``feature_info``).
        norm: the run's train-split normalisation (``{"mean", "std"}``, [0, 1] units), used to map host inputs
            back to [0, 1] when the foundation runs on the batch (``cache: off``) or on validation images.
    """

    def __init__(self, host: nn.Module, cfg, foundation: nn.Module, norm: Mapping[str, float] | None = None) -> None:
        super().__init__(host, cfg)
        o = self.opts
        self.loss_fn = build_loss(cfg.loss)
        self.foundation = foundation
        if not is_encoder_decoder(host):
            raise ConfigError(f"method fdep needs an encoder-decoder host (encode / decode with declared stages); "
                              f"{getattr(host, 'model_name', type(host).__name__)!r} is not one")
        n_stages = len(host.stage_channels)
        if not -n_stages <= o.stage < n_stages:
            raise ConfigError(
                f"method.options.stage = {o.stage} but host {getattr(host, 'model_name', '')} has {n_stages} "
                f"encoder stages (use -1 for the bottleneck, 0..{n_stages - 1} for a stage)"
            )
        self.stage = o.stage % n_stages
        try:
            self.samf = SAMFStack(
                host.stage_channels[self.stage],
                [fi["channels"] for fi in foundation.feature_info],
                num_modules=o.num_modules,
                sources=o.sources,
                kernel=o.kernel,
                feature_kernel=o.feature_kernel,
            )
        except ModelError as exc:  # a bad source index: name the options
            raise ConfigError(f"method.options (samf): {exc}") from exc
        #: train-split normalisation (``{"mean", "std"}``, [0, 1] units)
        self.norm = {"mean": float(norm["mean"]), "std": float(norm["std"])} if norm is not None else None

    @classmethod
    def from_config(cls, host: nn.Module, cfg, env: BuildEnv) -> "FDEP":
        """Build the frozen foundation model the options name, then the method around it."""
        from irfoundry.foundation import create_foundation

        o = cfg.options
        fm = create_foundation(o.foundation, weights=o.weights, layers=o.layers, input_size=o.input_size)
        return cls(host, cfg, foundation=fm, norm=env.norm)

    # ---------------------------------------------------------------------------------- plumbing
    def data_requests(self) -> DataRequests:
        """The foundation's features of the un-augmented training images, cut per crop, as
        ``batch["foundation"]`` (in memory or under the ``cache`` directory), unless ``cache: off``."""
        cache = self.opts.cache
        if cache == "off":
            return DataRequests()
        return DataRequests(features=[FeatureRequest(FEATURES, self.foundation, None if cache == "memory" else cache)])

    def foundation_features(self, images: Tensor) -> list[Tensor]:
        """Foundation maps of normalised host inputs ``B x 1 x H x W`` -> list of ``B x C_i x h_i x w_i``."""
        from irfoundry.foundation import to_unit_range

        if self.norm is None:
            raise ConfigError("FDEP needs the run's normalisation statistics (pass norm= when building it)")
        with torch.no_grad():
            return self.foundation(to_unit_range(images, self.norm["mean"], self.norm["std"]))

    def _fuse(self, feats: list[Tensor], features: list[Tensor]) -> list[Tensor]:
        fused = list(feats)
        fused[self.stage] = self.samf(feats[self.stage], features)
        return fused

    # ---------------------------------------------------------------------------------- training
    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        images = batch["image"]
        features = batch.get(FEATURES)
        if features is None:
            features = self.foundation_features(images)
        size = (images.shape[-2], images.shape[-1])
        feats = self.host.encode(images)
        light = self.host.decode(feats, size)
        main = self.host.decode(self._fuse(feats, features), size)
        o = self.opts
        target = batch["target"]
        l_main = deep_supervision_loss(main, target, self.loss_fn, self.cfg.aux_weight)
        l_light = deep_supervision_loss(light, target, self.loss_fn, self.cfg.aux_weight)
        loss = l_main + o.light_weight * l_light
        logs = {"loss": loss.detach(), "loss/main": l_main.detach(), "loss/light": l_light.detach()}
        if o.kd_weight > 0:
            t = o.kd_temperature
            soft = torch.sigmoid(main_output(main).detach() / t)
            kd = F.binary_cross_entropy_with_logits(main_output(light) / t, soft)
            loss = loss + o.kd_weight * kd
            logs["loss/kd"] = kd.detach()
        return loss, logs

    # ---------------------------------------------------------------------------------- evaluation
    def fused_logits(self, images: Tensor) -> Tensor:
        """Main (fused) branch: ``B x 1 x H x W`` logits, foundation run on the full image."""
        feats = self.host.encode(images)
        out = self.host.decode(self._fuse(feats, self.foundation_features(images)), (images.shape[-2], images.shape[-1]))
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
