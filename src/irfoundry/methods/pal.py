"""PAL: progressive active learning for point-supervised IRSTD (Yu et al., ICCV 2025; code YuChuang1205/PAL).

From the clicks of ``data.points`` (``data.labels: points``), every training image gets PAL's initial label
(:func:`irfoundry.methods.pal_labels.contour_mask`: local edge contours around the clicks); the *easy* images
(>= 80 % of their clicks with a contour) form the training pool, the others wait. With ``E`` =
``trainer.max_epochs`` and ``e`` the index of the epoch about to start (the reference's 0-based ``epoch``,
checked at its top; here after epoch ``e - 1`` ends), every ``update_every`` epochs:

* pre-start, ``e <= int(warmup_fraction E)`` (80 of 400): training on the pool only, nothing updated;
* enhancement, ``int(warmup_fraction E) < e <= int(final_fraction E)`` (up to 320): the pool's labels evolve
  (:func:`~irfoundry.methods.label_evolution.pal_update`: LESPS' candidates united, 0.97 decay elsewhere) and
  hard-sample mining runs on the others: an image whose prediction covers enough clicks
  (:func:`~irfoundry.methods.pal_labels.mining_accepts`, ``lose_ratio = lose_ratio_init + (e - warmup_fraction E
  + 1) / ((final_fraction - warmup_fraction) E) (1 - lose_ratio_init)`` growing from 0.2 to 1, blobs off clicks
  per click <= ``alarm_ratio``) joins the pool with the predicted blobs on its clicks as its label
  (:func:`~irfoundry.methods.pal_labels.mined_mask`);
* refinement, ``e > int(final_fraction E)``: evolution of the pool only.

Predictions are the host's on the full, un-augmented training images in eval mode (``ctx.predictor``, the one
inference path), each DDP process its shard; every process then applies all updates, the pool grows alike
everywhere, and the labels and pool are committed (``RUN/labels/``, part of the resume state). The schedule
scales with ``E``: a short run keeps the published fractions.

Loss: :func:`irfoundry.losses.ohem_edge_bce_loss` (BCE, the 50 % hardest pixels) of every output, summed as
the reference sums DNANet's four, against the label > 0.5 (``binary_targets``: the released dataset thresholds
the label PNG at 127.5, so the soft evolved values only matter through later updates). ``edge_weighting: released`` (default) is what the released code computes:
every pixel x4 (its edge map is overwritten, see the loss); ``edges`` weights only target borders x4, as the
paper describes. The optimiser (AdamW 1e-3, no scheduler) is the config's (``configs/method/pal.yaml``).

Defaults are the released code's (``train_model.py`` constants, ``utilts.py``, the dataset's binarisation).
Validation is the engine's honest default for point supervision (the val split's clicks); the reference
selects on test. Not reproduced: the reference's own augmentation list (albumentations ``SomeOf`` of flips,
rotations, brightness / contrast, shift-scale, noise) and its uniform random crops; the run's
``data`` section applies instead (the study's configs: flips, 90-degree turns, half the crops on a target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from irfoundry.engine.inference import crop
from irfoundry.errors import ConfigError
from irfoundry.losses import build_loss, ohem_edge_bce_loss
from irfoundry.methods.base import Batch, Method, register_method
from irfoundry.methods.context import DataRequests, StepContext
from irfoundry.methods.label_evolution import pal_update
from irfoundry.methods.pal_labels import contour_mask, mined_mask, mining_accepts


@dataclass
class LabelEvolutionOptions:
    """PAL's pool, evolution and mining options (shared by the methods built on PAL's labels)."""

    #: phases as shares of trainer.max_epochs (``clear_inital_ratio``, ``final_epoch_ratio``)
    warmup_fraction: float = 0.2
    final_fraction: float = 0.8
    #: updates every this many epochs (``clear_epoch_gap``)
    update_every: int = 5
    #: mining: share of lost clicks allowed at the start (``lose_point_ratio_init``), blobs off clicks per click
    #: (``alarm_point_ration``), probability threshold of the prediction
    lose_ratio_init: float = 0.2
    alarm_ratio: float = 5.0
    mining_threshold: float = 0.5
    #: evolution (``thresh_Tb``, ``thresh_k``, ``update_gt``'s boxes and size share, ``degen``)
    tb: float = 0.5
    k: float = 0.5
    neighbourhood: int = 33
    core: int = 3
    size_fraction: float = 0.0015
    decay: float = 0.97
    #: keep labels at 8-bit precision between updates, as the reference's PNG files do
    quantise_labels: bool = True
    #: initial masks (``crop_size=10``, Canny 20 / 40, contour area <= 50, easy at >= 80 % of clicks)
    half_window: int = 10
    canny_low: float = 20.0
    canny_high: float = 40.0
    max_contour_area: float = 50.0
    easy_share: float = 0.8
    #: train on the label > 0.5, as the released dataset reads the label PNG (``mask > 127.5``); False: the
    #: soft label itself
    binary_targets: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.warmup_fraction < self.final_fraction <= 1:
            raise ConfigError("method.options needs 0 <= warmup_fraction < final_fraction <= 1, got "
                              f"{self.warmup_fraction!r} and {self.final_fraction!r}")
        if self.update_every < 1:
            raise ConfigError(f"method.options.update_every must be >= 1, got {self.update_every!r}")
        for key in ("neighbourhood", "core"):
            if getattr(self, key) < 1 or getattr(self, key) % 2 == 0:
                raise ConfigError(f"method.options.{key} must be a positive odd box side, got {getattr(self, key)!r}")
        for key in ("lose_ratio_init", "easy_share", "decay", "mining_threshold"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"method.options.{key} must be in [0, 1], got {getattr(self, key)!r}")


@dataclass
class PALOptions(LabelEvolutionOptions):
    """``method.options`` of ``pal``: the label evolution's, plus PAL's loss."""

    #: loss (``edgeSCE_loss``): edge weight, share of hardest pixels kept, which pixels get the weight
    edge_weight: float = 4.0
    keep_fraction: float = 0.5
    edge_weighting: Literal["released", "edges"] = "released"
    #: ``released``: the OHEM edge BCE above; or any loss of :data:`irfoundry.losses.LOSSES` (e.g. ``softiou``)
    #: in its place, PAL's pool, evolution and mining unchanged (not PAL's recipe: for budgets its BCE needs
    #: more steps than)
    loss: str = "released"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.keep_fraction <= 1:
            raise ConfigError(f"method.options.keep_fraction must be in [0, 1], got {self.keep_fraction!r}")
        if self.edge_weighting not in ("released", "edges"):
            raise ConfigError(f"method.options.edge_weighting must be released or edges, got {self.edge_weighting!r}")
        if self.loss != "released":
            build_loss(self.loss)  # an unknown name is refused here, with the known ones


def phase(o: LabelEvolutionOptions, next_epoch: int, max_epochs: int) -> str | None:
    """What runs before 0-based epoch ``next_epoch`` of ``max_epochs``: ``"mine"`` (evolution + mining),
    ``"evolve"``, or ``None`` (see the module docstring)."""
    if next_epoch >= max_epochs or next_epoch % o.update_every:
        return None
    if next_epoch <= int(max_epochs * o.warmup_fraction):
        return None
    return "mine" if next_epoch <= int(max_epochs * o.final_fraction) else "evolve"


def lose_ratio(o: LabelEvolutionOptions, next_epoch: int, max_epochs: int) -> float:
    """The share of lost clicks a mined image may have before epoch ``next_epoch`` (from 0.2 towards 1)."""
    span = max_epochs * (o.final_fraction - o.warmup_fraction)
    return o.lose_ratio_init + (next_epoch - max_epochs * o.warmup_fraction + 1) / span * (1 - o.lose_ratio_init)


@register_method("pal", options=PALOptions)
class PAL(Method):
    """Point-supervised training with PAL's easy-to-hard pool and label evolution (see the module docstring)."""

    def __init__(self, host, cfg) -> None:
        super().__init__(host, cfg)
        self.updates = 0
        self.mined = 0

    def data_requests(self) -> DataRequests:
        return DataRequests(loaders=["train_full"], label_store=True, label_init=self.initial_label, train_pool=True,
                            labels="points")

    def initial_label(self, image: np.ndarray, clicks: np.ndarray) -> tuple[np.ndarray, bool]:
        """PAL's initial label and easy flag of one image (``uint8 H x W``, click map ``H x W``)."""
        o = self.opts
        return contour_mask(image, clicks, half_window=o.half_window, canny_low=o.canny_low, canny_high=o.canny_high,
                            max_area=o.max_contour_area, easy_share=o.easy_share)

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        out = self.host(batch["image"])
        outputs = [out] if isinstance(out, Tensor) else list(out)
        o = self.opts
        target = (batch["target"] > 0.5).to(batch["target"].dtype) if o.binary_targets else batch["target"]
        if o.loss == "released":
            loss = sum(ohem_edge_bce_loss(z, target, o.edge_weight, o.keep_fraction,
                                          reference_quirk=o.edge_weighting == "released") for z in outputs)
        else:
            loss = sum(build_loss(o.loss)(z, target) for z in outputs)
        return loss, {"loss": loss.detach()}

    def on_train_epoch_end(self, ctx: StepContext) -> None:
        e = ctx.epoch + 1
        what = phase(self.opts, e, ctx.max_epochs)
        if what is not None:
            self.update(ctx, lose_ratio(self.opts, e, ctx.max_epochs) if what == "mine" else None)
        ctx.log("train/pool_images", float(len(ctx.train_pool)))

    def label_network(self) -> nn.Module:
        """The network whose predictions evolve the labels and mine the hard images: the host (a method built
        on PAL, such as semantic-prior KD, lets its teacher do it)."""
        return self.host

    def label_probabilities(self, predictor, batch: Batch) -> list[Tensor]:
        """Probability maps (``h x w`` each) of a full-image batch for the label update (a method whose label
        network reads more of the batch than the images overrides it)."""
        return predictor.batch_probabilities(batch)

    @torch.no_grad()
    def update(self, ctx: StepContext, lose_ratio: float | None) -> None:
        """Evolve the pool's labels; with ``lose_ratio``, mine the other images. Every process ends alike."""
        store, pool, o = ctx.stores["labels"], ctx.train_pool, self.opts
        predictor = ctx.predictor(self.label_network())
        labels: dict[str, np.ndarray] = {}
        mined: dict[str, np.ndarray] = {}
        for batch in ctx.loader("train_full"):
            probs = self.label_probabilities(predictor, batch)
            counted = batch.get("counted") or [True] * len(probs)
            for i, (sid, keep) in enumerate(zip(batch["id"], counted)):
                if not keep:
                    continue
                label = crop(batch["target"][i, 0], batch["box"][i]).cpu().numpy()
                pred = probs[i].numpy()
                if sid in pool:
                    labels[sid] = pal_update(pred, label, tb=o.tb, k=o.k, neighbourhood=o.neighbourhood, core=o.core,
                                             size_fraction=o.size_fraction, decay=o.decay,
                                             quantise=o.quantise_labels)
                elif lose_ratio is not None:  # a waiting image's label is its click map
                    predicted = pred > o.mining_threshold
                    if mining_accepts(label, predicted, lose_ratio=lose_ratio, alarm_ratio=o.alarm_ratio):
                        mined[sid] = mined_mask(label, predicted)
        joined: list[str] = []
        for part_labels, part_mined in ctx.all_gather_object((labels, mined)):
            for sid, new in {**part_labels, **part_mined}.items():
                store.write(sid, [new[None]])
            joined.extend(part_mined)
        pool.add(joined)
        self.updates += 1
        self.mined += len(joined)
        ctx.commit_labels()

    def method_state(self) -> dict:
        return {"updates": self.updates, "mined": self.mined}

    def load_method_state(self, state) -> None:
        self.updates = int(state.get("updates", 0))
        self.mined = int(state.get("mined", 0))

    def describe(self) -> dict:
        return {"label_evolution": "pal", "reference": "https://github.com/YuChuang1205/PAL (train_model.py, utilts.py)"}
