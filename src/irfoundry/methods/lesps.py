"""LESPS: label evolution with single point supervision (Ying et al., CVPR 2023; code XinyiYing/LESPS).

The host trains on an evolving label per training image (the engine's label store,
``DataRequests(label_store=True)``), initialised from the point clicks (``data.labels: points``). After an
epoch, the labels are updated with :func:`irfoundry.methods.label_evolution.lesps_update` from the host's
predictions on the full, un-augmented training images (eval mode, the one inference path, each process its
shard, every process then writing all of them): the first time when the epoch-mean training loss falls below
``t_loss`` (or, with ``t_epoch`` set, after that many epochs), then every ``update_every`` epochs. As in the
reference's train.py, both checks run after the same epoch, so the first update may be followed by a second
one at once when the epoch number is a multiple of ``update_every``.

Loss: :func:`irfoundry.losses.lesps_focal_loss` of every output of the host, summed (the reference sums the
deep-supervision outputs; the trigger compares that sum's epoch mean with ``t_loss``). The reference's
optimiser (Adam 5e-4, MultiStepLR [200, 300] x 0.1, 400 epochs, batch 16, 256 crops) is the ``optim`` /
``trainer`` sections' business (configs ``configs/method/lesps.yaml`` and ``protocol/lesps``).

Defaults are the released code's (train.py arguments and ``update_gt`` constants).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from irfoundry.engine.inference import crop
from irfoundry.errors import ConfigError
from irfoundry.losses import lesps_focal_loss
from irfoundry.methods.base import Batch, Method, register_method
from irfoundry.methods.context import DataRequests, StepContext
from irfoundry.methods.label_evolution import lesps_update

log = logging.getLogger(__name__)


@dataclass
class LESPSOptions:
    #: threshold base Tb and slope k of the evolution threshold (``--LESPS_Tb``, ``--LESPS_k``)
    tb: float = 0.5
    k: float = 0.5
    #: first update once the epoch-mean training loss is below this (``--LESPS_Tloss``)
    t_loss: float = 10.0
    #: instead of ``t_loss``: first update after this many epochs (the reference's commented ``--LESPS_Tepoch 50``)
    t_epoch: int | None = None
    #: instead of both: first update after this share of ``trainer.max_epochs`` (rounded; 50 / 400 = 0.125 is the
    #: published Tepoch scaled to another budget)
    t_epoch_fraction: float | None = None
    #: then every this many epochs (``--LESPS_f``), counted 1-based as the reference does
    update_every: int = 5
    #: neighbourhood and core box sides around each region's centroid (``update_gt``: 33 and 3)
    neighbourhood: int = 33
    core: int = 3
    #: region size (share of the image's pixels) at which the threshold reaches the local maximum (0.0015)
    size_fraction: float = 0.0015
    #: focal loss powers (``FocalLoss(alpha=2, gamma=4)``)
    focal_alpha: float = 2.0
    focal_gamma: float = 4.0

    def __post_init__(self) -> None:
        if self.update_every < 1:
            raise ConfigError(f"method.options.update_every must be >= 1, got {self.update_every!r}")
        if self.t_epoch is not None and self.t_epoch < 0:
            raise ConfigError(f"method.options.t_epoch must be null or >= 0, got {self.t_epoch!r}")
        if self.t_epoch_fraction is not None and not 0 <= self.t_epoch_fraction <= 1:
            raise ConfigError(f"method.options.t_epoch_fraction must be null or in [0, 1], got {self.t_epoch_fraction!r}")
        if self.t_epoch is not None and self.t_epoch_fraction is not None:
            raise ConfigError("method.options: give t_epoch or t_epoch_fraction, not both")
        for key in ("neighbourhood", "core"):
            if getattr(self, key) < 1 or getattr(self, key) % 2 == 0:
                raise ConfigError(f"method.options.{key} must be a positive odd box side, got {getattr(self, key)!r}")
        if not 0 < self.size_fraction <= 1:
            raise ConfigError(f"method.options.size_fraction must be in (0, 1], got {self.size_fraction!r}")


@register_method("lesps", options=LESPSOptions)
class LESPS(Method):
    """Point-supervised training with LESPS label evolution (see the module docstring)."""

    def __init__(self, host, cfg) -> None:
        super().__init__(host, cfg)
        self.started = False
        self.updates = 0

    def data_requests(self) -> DataRequests:
        return DataRequests(loaders=["train_full"], label_store=True, labels="points")

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        out = self.host(batch["image"])
        outputs = [out] if isinstance(out, Tensor) else list(out)
        loss = sum(lesps_focal_loss(o, batch["target"], self.opts.focal_alpha, self.opts.focal_gamma) for o in outputs)
        return loss, {"loss": loss.detach()}

    def on_train_epoch_end(self, ctx: StepContext) -> None:
        done = ctx.epoch + 1  # epochs finished, the reference's idx_epoch + 1
        if not self.started and self._first_update_due(ctx, done):
            self.started = True
            self.update_labels(ctx)
        if self.started and done % self.opts.update_every == 0:
            self.update_labels(ctx)

    def _first_update_due(self, ctx: StepContext, done: int) -> bool:
        if self.opts.t_epoch_fraction is not None:
            return done > round(self.opts.t_epoch_fraction * ctx.max_epochs)
        if self.opts.t_epoch is not None:
            return done > self.opts.t_epoch
        loss = ctx.epoch_mean("train/loss_epoch")
        due = loss is not None and loss < self.opts.t_loss
        if due and done == 1:
            log.warning("LESPS: the epoch-mean loss %.3g of the first epoch is already below t_loss = %g, so the labels "
                        "evolve from an untrained network (an output initialisation such as model.init_prob starts the "
                        "focal loss low); t_epoch or t_epoch_fraction gives a start that does not depend on it",
                        loss, self.opts.t_loss)
        return due

    @torch.no_grad()
    def update_labels(self, ctx: StepContext) -> None:
        """Evolve every training image's label from the host's prediction; every process ends with all."""
        store = ctx.stores["labels"]
        predictor = ctx.predictor(self.host)
        o = self.opts
        mine: dict[str, object] = {}
        for batch in ctx.loader("train_full"):
            probs = predictor.batch_probabilities(batch)
            counted = batch.get("counted") or [True] * len(probs)
            for i, (sid, keep) in enumerate(zip(batch["id"], counted)):
                if keep:
                    label = crop(batch["target"][i, 0], batch["box"][i]).cpu().numpy()
                    mine[sid] = lesps_update(probs[i].numpy(), label, tb=o.tb, k=o.k, neighbourhood=o.neighbourhood,
                                             core=o.core, size_fraction=o.size_fraction)
        for part in ctx.all_gather_object(mine):
            for sid, new in part.items():
                store.write(sid, [new[None]])
        ctx.commit_labels()
        self.updates += 1

    def method_state(self) -> dict:
        return {"started": self.started, "updates": self.updates}

    def load_method_state(self, state) -> None:
        self.started = bool(state.get("started", False))
        self.updates = int(state.get("updates", 0))

    def describe(self) -> dict:
        return {"label_evolution": "lesps", "reference": "https://github.com/XinyiYing/LESPS (net.py update_gt)"}
