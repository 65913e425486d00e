"""Semantic-prior KD: a foundation-conditioned teacher that shares the student's weights, cluster-reweighted
bilevel training, PAL's label evolution driven by the teacher (arXiv 2605.14346, IJCAI-ECAI 2026; code
yuanhang-yao/semantic-prior ``train.py``, ``utils/losses.py``, ``utils/gn_bilevel.py``, read at 551fdd5; MIT).

From the released code (``[code]``; methods.md section 2b):

* student = the host; teacher = the same host (the same parameters, not a copy) whose encoder stages are
  modulated by :class:`~irfoundry.fusion.SCAM` from the frozen foundation's maps:
  ``decode(modulate(encode(x), SCAM(foundation(x)), scale))``. The host alone ships (:meth:`export_model`).
* inner step, every training batch (optimiser ``inner`` = the config's ``optim`` section, AdamW 1e-3 as
  released, over host + SCAM): ``mean_i w_i [task(teacher_i) + kd_weight KD(student_i detached, teacher_i)] +
  gate_weight mean|gate|`` with the cluster weights ``w`` detached
  (:func:`~irfoundry.methods.bilevel.cluster_weights`), ``task`` = BCE with logits to the pseudo-label (> 0.5,
  as the released dataset binarises it), ``KD(s, t) = MSE(sigmoid(s / T), sigmoid(t / T))``, ``T = 4``;
  deep-supervision outputs: ``task`` summed over the teacher's outputs (as ``task_loss`` with
  ``reduction="none"``), ``KD`` averaged over the student's against the teacher's main output (``kd_loss``);
* outer phase after every epoch ``e`` with ``e % outer_every == 0`` (5; 0-based, epoch 0 included),
  ``outer_steps`` (4) steps, each on a training batch (``train_crops``) and a validation batch
  (``val_crops``, on the *validation pseudo-labels*): the Gauss-Newton hypergradient of
  ``L_out = mean_i w_i [KD(student_i, teacher_i detached) + task(student_i)]`` over the host's parameters and
  the cluster logits ``alpha`` (:func:`~irfoundry.methods.bilevel.gauss_newton_hypergradient`, ``eta`` = the
  inner learning rate), stepped by its own AdamW (``lr_outer`` 1e-3, weight decay 0.01). It runs in the
  epoch's last training step, so the epoch's validation sees its result (the reference evaluates after it);
* labels: PAL's contour masks, pool, evolution and mining (:class:`~irfoundry.methods.pal.PAL`'s schedule:
  after ``warmup_fraction`` of the epochs, every ``update_every``) with the *teacher's* predictions; the
  validation split's pseudo-labels start as contours + clicks for every image (``select_all=True``: also
  where fewer than 80 % of the clicks found a contour) and evolve with every update (``stores["val_labels"]``;
  no mining).
* clusters: :mod:`irfoundry.data.clusters`, fitted on the training images only (the reference fits on all
  images, test included), validation images assigned to the nearest centre; saved as ``RUN/clusters.json``.

Ours (``[recon]`` / engine choices, each an option):

* the foundation: any of :func:`irfoundry.foundation.create_foundation` (the reference: DINOv3 ViT-S+/16's
  13 hidden states, ``layers: hidden_states``, ``norm: last``; the offline default is the bundled
  EfficientNet-Lite0 with every stage, projected by SCAM, see its docstring); ``weights: random`` is the
  random-prior ablation (the same capacity, no pretrained semantics).
* the teacher sees foundation maps of the full, un-augmented image cut to the crop (the feature cache over
  the training and validation images, ``cache: memory``; the reference runs the VFM on the un-augmented
  crop; ``cache: off`` runs it on every augmented crop); label updates use the cached maps of the whole image
  too, evaluation (validation, ``eval --branch teacher``) runs the foundation on the image.
* ``scale``: the reference's values are 0.12 (ALCL-Net) and 0.55 (MLCL-Net) (``scales``); for other hosts
  it must be given (``configs/method/semprior.yaml`` adds ours: 0.55 for the three-stage ACM / ALCNet like
  MLCL-Net, 0.12 for the five-stage DNANet like ALCL-Net).
* ``loss``: the task loss (``bce`` released, per image, weighted: ``mean_i w_i l_i``); any
  :data:`irfoundry.losses.LOSSES` name is applied image by image the same way, except ``softiou`` (a
  batch-level loss, the CPU-budget study's): ``1 - (sum_i w_i I_i + 1) / (sum_i w_i U_i + 1)`` with each
  image's soft intersection ``I_i`` and union ``U_i``, which is BasicIRSTD's SoftIoU when every ``w_i = 1``.
* one encoder pass per loss: in the inner step the student's outputs are decoded (without gradient) from
  the teacher's encoder pass, in the outer loss the teacher's from the student's (the encoder's output is
  the same before modulation); the encoder's BatchNorm running statistics then see each batch once (the
  reference runs both networks whole).
* under DDP the outer step's gradients are averaged over processes after each computed its own
  hypergradient (the reference is single-GPU). The outer step runs in float32 without the mixed-precision
  loss scale (its gradients come from ``torch.autograd.grad``), is not clipped (as released) and is not
  counted in ``global_step``.

Evaluation branches: ``host`` (the student, selects the ``best`` checkpoint) and ``teacher``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.engine.inference import crop
from irfoundry.errors import ConfigError, DataError, ModelError
from irfoundry.fusion import SCAM, modulate
from irfoundry.losses import build_loss
from irfoundry.methods.base import Batch, register_method
from irfoundry.methods.bilevel import cluster_weights, gauss_newton_hypergradient
from irfoundry.methods.context import BuildEnv, DataRequests, FeatureRequest, StepContext
from irfoundry.methods.label_evolution import pal_update
from irfoundry.methods.pal import PAL
from irfoundry.methods.pal_labels import contour_mask
from irfoundry.methods.semprior_options import RELEASED_SCALES, SemPriorOptions
from irfoundry.models.base import is_encoder_decoder
from irfoundry.optim import OptimizerSpec, build_optimizer, build_scheduler, param_groups

#: batch keys of the cached foundation maps and of the cluster ids
FEATURES, CLUSTER = "foundation", "cluster"
CLUSTERS_FILE = "clusters.json"


def _outputs(out) -> list[Tensor]:
    return [out] if isinstance(out, Tensor) else list(out)


def kd_per_image(student: Sequence[Tensor], teacher_main: Tensor, temperature: float) -> Tensor:
    """``B``: ``MSE(sigmoid(s / T), sigmoid(t / T))`` per image, averaged over the student's outputs."""
    soft_t = torch.sigmoid(teacher_main / temperature)
    terms = [F.mse_loss(torch.sigmoid(s / temperature), soft_t, reduction="none").flatten(1).mean(1) for s in student]
    return sum(terms) / len(terms)


@register_method("semprior", options=SemPriorOptions)
class SemPrior(PAL):
    """Semantic-prior KD around ``host`` (see the module docstring).

    Submodules: ``host`` (the student, deployable; also the teacher's every weight but SCAM's), ``scam``,
    ``foundation`` (frozen); parameter ``alpha`` (``K`` cluster logits).

    Args:
        host: an encoder-decoder host.
        cfg: the method config (``cfg.options`` a :class:`SemPriorOptions`).
        foundation: the frozen foundation (``forward(x in [0, 1]) -> list[maps]``, ``feature_info``).
        norm: the run's normalisation (maps host inputs back to [0, 1] for the foundation).
        clusters: a fitted :class:`~irfoundry.data.clusters.ClusterModel` (``clusters: PATH``), else ``None``.
    """

    automatic_optimization = False

    def __init__(self, host: nn.Module, cfg, foundation: nn.Module, norm: Mapping[str, float] | None = None,
                 clusters=None) -> None:
        super().__init__(host, cfg)
        o = self.opts
        if not is_encoder_decoder(host):
            raise ConfigError(f"method semprior needs an encoder-decoder host (encode / decode with declared stages); "
                              f"{getattr(host, 'model_name', type(host).__name__)!r} is not one")
        name = getattr(host, "model_name", "")
        self.scale = o.scale if o.scale is not None else o.scales.get(name)
        if self.scale is None:
            raise ConfigError(f"method.options.scale: no modulation scale for host {name!r} in method.options.scales "
                              f"({o.scales}; the released ones: {RELEASED_SCALES}); set one, e.g. "
                              "--set method.options.scale=0.55")
        self.foundation = foundation
        try:
            self.scam = SCAM([fi["channels"] for fi in foundation.feature_info], list(host.stage_channels),
                             hidden=o.hidden, residual_gamma=o.residual_gamma, zero_init=o.zero_init)
        except ModelError as exc:
            raise ConfigError(f"method.options (scam): {exc}") from exc
        self.cluster_model = clusters
        k = 1 if o.clusters == "none" else (clusters.k if clusters is not None else o.num_clusters)
        self.alpha = nn.Parameter(torch.zeros(k))
        self.norm = {"mean": float(norm["mean"]), "std": float(norm["std"])} if norm is not None else None
        self.task_loss = build_loss(o.loss)
        self.outer_phases = 0

    @classmethod
    def from_config(cls, host: nn.Module, cfg, env: BuildEnv) -> "SemPrior":
        """Build the frozen foundation (and read a clusters file) the options name, then the method."""
        from irfoundry.data.clusters import ClusterModel
        from irfoundry.foundation import create_foundation

        o = cfg.options
        fm = create_foundation(o.foundation, weights=o.weights, layers=o.layers, input_size=o.input_size,
                               norm=o.foundation_norm)
        clusters = None if o.clusters in ("fit", "none") else ClusterModel.load(o.clusters)
        return cls(host, cfg, foundation=fm, norm=env.norm, clusters=clusters)

    # ---------------------------------------------------------------------------------- data
    def data_requests(self) -> DataRequests:
        cache = self.opts.cache
        features = [] if cache == "off" else [FeatureRequest(FEATURES, self.foundation,
                                                             None if cache == "memory" else cache, include_val=True)]
        return DataRequests(features=features, loaders=["train_full", "train_crops", "val_crops", "val_full"],
                            label_store=True, label_init=self.initial_label, train_pool=True, labels="points",
                            val_label_store=True, val_label_init=self.initial_val_label,
                            attributes=None if self.opts.clusters == "none" else self.cluster_attributes)

    def initial_val_label(self, image, clicks):
        """A validation image's initial pseudo-label: PAL's contours + clicks whatever share of its clicks got
        a contour (the reference's ``initialize_point_labels(select_all=True)``; a hard training image keeps
        its bare clicks instead, until it is mined)."""
        o = self.opts
        return contour_mask(image, clicks, half_window=o.half_window, canny_low=o.canny_low, canny_high=o.canny_high,
                            max_area=o.max_contour_area, easy_share=0.0)

    def cluster_attributes(self, train: Sequence, val: Sequence) -> dict[str, dict[str, int]]:
        """``{"cluster": {id: cluster}}`` of every training and validation image: fitted on the training
        images (``clusters: fit``) or read from the file, others at the nearest centre."""
        from irfoundry.data.clusters import ClusterSettings, fit_clusters, statistics_table
        from irfoundry.data.image_stats import FEATURE_NAMES

        train_ids = [s.id for s in train]
        if self.cluster_model is None:
            ids, table = statistics_table(train)
            self.cluster_model = fit_clusters(ids, table, FEATURE_NAMES, ClusterSettings(k=self.opts.num_clusters))
        model = self.cluster_model
        outside = sorted(set(model.train_ids) - set(train_ids))
        if outside:
            raise DataError(f"clusters file {self.opts.clusters}: fitted on {len(outside)} image(s) outside this run's "
                            f"training split (e.g. {outside[:3]}); fit them on the training images only "
                            "(irfoundry data clusters DATA:TRAIN_SPLIT)")
        known = dict(zip(model.train_ids, model.train_labels.tolist()))
        rest = [s for s in [*train, *val] if s.id not in known]
        if rest:
            ids, table = statistics_table(rest)
            known.update(zip(ids, model.assign(table, FEATURE_NAMES).tolist()))
        return {CLUSTER: {s.id: int(known[s.id]) for s in [*train, *val]}}

    def foundation_features(self, images: Tensor) -> list[Tensor]:
        """Foundation maps of normalised host inputs ``B x 1 x H x W`` -> list of ``B x C_i x h_i x w_i``."""
        from irfoundry.foundation import to_unit_range

        if self.norm is None:
            raise ConfigError("semprior needs the run's normalisation statistics (pass norm= when building it)")
        with torch.no_grad():
            return self.foundation(to_unit_range(images, self.norm["mean"], self.norm["std"]))

    # ---------------------------------------------------------------------------------- networks
    def teacher_outputs(self, images: Tensor, features: Sequence[Tensor] | None = None, *,
                        with_student: bool = False):
        """The teacher: the host with SCAM-modulated encoder stages -> list of ``B x 1 x H x W`` logits.
        ``with_student``: also the student's outputs (no gradient) from the same encoder pass."""
        if features is None:
            features = self.foundation_features(images)
        gammas, betas = self.scam(features)
        size = (images.shape[-2], images.shape[-1])
        encoded = self.host.encode(images)
        teacher = _outputs(self.host.decode(modulate(encoded, gammas, betas, self.scale), size))
        if not with_student:
            return teacher
        with torch.no_grad():
            student = _outputs(self.host.decode([f.detach() for f in encoded], size))
        return teacher, student

    def teacher_logits(self, images: Tensor) -> Tensor:
        """Teacher's main output ``B x 1 x H x W`` (foundation run on the given images)."""
        return self.teacher_outputs(images)[0]

    def label_network(self) -> Callable[[Tensor], Tensor]:
        """The teacher, on the cached foundation maps of the full image when the batch carries them
        (:meth:`label_probabilities`: SCAM pools them globally, so the padded image needs no maps of its own)."""
        return self._label_logits

    def _label_logits(self, images: Tensor) -> Tensor:
        return self.teacher_outputs(images, getattr(self, "_label_features", None))[0]

    def label_probabilities(self, predictor, batch: Batch) -> list[Tensor]:
        self._label_features = batch.get(FEATURES)
        try:
            return predictor.batch_probabilities(batch)
        finally:
            self._label_features = None

    def eval_branches(self) -> dict[str, Callable[[Tensor], Tensor]]:
        return {"host": self.predict_logits, "teacher": self.teacher_logits}

    # ---------------------------------------------------------------------------------- losses
    def _targets(self, batch: Batch) -> Tensor:
        t = batch["target"]
        return (t > 0.5).to(t.dtype) if self.opts.binary_targets else t

    def _weights(self, batch: Batch, *, detach: bool) -> Tensor:
        b = batch["image"].shape[0]
        ids = batch.get(CLUSTER)
        if ids is None and self.opts.clusters != "none":
            raise DataError("semprior: a batch without cluster ids (batch['cluster']); the data pipeline serves them "
                            "when the method's data_requests() are honoured")
        ids = torch.zeros(b, dtype=torch.long) if ids is None else torch.as_tensor(ids, dtype=torch.long)
        return cluster_weights(self.alpha, ids.to(self.alpha.device), detach=detach)

    def _weighted_task(self, z: Tensor, target: Tensor, w: Tensor) -> Tensor:
        """The task loss of one output ``B x 1 x H x W`` with image weights ``w`` (``B``): ``mean_i w_i l_i``;
        SoftIoU (a batch-level loss) as ``1 - (sum_i w_i I_i + 1) / (sum_i w_i U_i + 1)``."""
        if self.opts.loss == "softiou":
            p = torch.sigmoid(z).flatten(1)
            t = target.flatten(1)
            inter = (p * t).sum(1)
            union = p.sum(1) + t.sum(1) - inter
            return 1.0 - ((w * inter).sum() + 1.0) / ((w * union).sum() + 1.0)
        per = torch.stack([self.task_loss(z[i : i + 1], target[i : i + 1]) for i in range(z.shape[0])])
        return (w * per).mean()

    def _task(self, outputs: Sequence[Tensor], target: Tensor, w: Tensor) -> Tensor:
        """Weighted task loss summed over outputs, ``aux_weight`` on the auxiliary ones (1: the plain sum, as
        the released ``task_loss(..., reduction="none")`` sums deep-supervision outputs)."""
        aux = float(getattr(self.cfg, "aux_weight", 1.0) or 0.0)
        per = [self._weighted_task(z, target, w) for z in outputs]
        return per[0] + aux * sum(per[1:]) if len(per) > 1 else per[0]

    def inner_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """The inner step's loss on a training batch (module docstring) and its parts."""
        o, images, target = self.opts, batch["image"], self._targets(batch)
        teacher, student = self.teacher_outputs(images, batch.get(FEATURES), with_student=True)
        w = self._weights(batch, detach=True)
        task = self._task(teacher, target, w)
        kd = (w * kd_per_image(student, teacher[0], o.kd_temperature)).mean()
        gate = self.scam.gate_l1()
        loss = task + o.kd_weight * kd + o.gate_weight * gate
        return loss, {"loss": loss.detach(), "loss/teacher": task.detach(), "loss/kd": kd.detach(),
                      "gate_l1": gate.detach()}

    def outer_loss(self, batch: Batch) -> Tensor:
        """``L_out`` of a batch: weighted KD of the student to the (detached) teacher + its task loss (one
        encoder pass: the teacher decodes its modulated copy without gradient)."""
        images, target = batch["image"], self._targets(batch)
        features = batch.get(FEATURES)
        if features is None:
            features = self.foundation_features(images)
        size = (images.shape[-2], images.shape[-1])
        encoded = self.host.encode(images)
        with torch.no_grad():
            gammas, betas = self.scam(features)
            teacher = _outputs(self.host.decode(modulate([f.detach() for f in encoded], gammas, betas, self.scale),
                                                size))[0]
        student = _outputs(self.host.decode(encoded, size))
        w = self._weights(batch, detach=False)
        return (w * kd_per_image(student, teacher, self.opts.kd_temperature)).mean() + self._task(student, target, w)

    # ---------------------------------------------------------------------------------- training
    def configure_optimizers(self, optim, length) -> list[OptimizerSpec]:
        """``inner``: the ``optim`` section over host + SCAM; ``outer``: AdamW over host + ``alpha``."""
        named = [(n, p) for n, p in self.named_parameters() if n.startswith(("host.", "scam."))]
        inner = build_optimizer(optim, param_groups(named, optim, no_decay=self.no_weight_decay()))
        outer = torch.optim.AdamW([p for p in self.host.parameters() if p.requires_grad] + [self.alpha],
                                  lr=self.opts.lr_outer, weight_decay=self.opts.outer_weight_decay)
        return [OptimizerSpec("inner", inner, build_scheduler(inner, optim, length), optim.interval),
                OptimizerSpec("outer", outer)]

    def training_step(self, batch: Batch, ctx: StepContext) -> None:
        inner = ctx.optimizers()["inner"]
        loss, logs = self.inner_loss(batch)
        inner.zero_grad()
        ctx.manual_backward(loss)
        ctx.clip_gradients(inner)
        inner.step()
        ctx.log_dict(logs)
        if ctx.is_last_batch and ctx.epoch % self.opts.outer_every == 0:
            self.outer_phase(ctx)
        return None

    def outer_phase(self, ctx: StepContext) -> None:
        """``outer_steps`` hypergradient steps (module docstring) on ``train_crops`` / ``val_crops`` batches."""
        opts = ctx.optimizers()
        inner, outer = opts["inner"], opts["outer"]
        eta = self.opts.eta if self.opts.eta is not None else float(inner.param_groups[0]["lr"])
        theta = [p for p in self.host.parameters() if p.requires_grad]
        for _ in range(self.opts.outer_steps):
            train_batch, val_batch = ctx.next_batch("train_crops"), ctx.next_batch("val_crops")
            inner.zero_grad()
            outer.zero_grad()
            # float32 and no loss scale: torch.autograd.grad bypasses mixed precision's scaler
            with torch.autocast(device_type=ctx.device.type, enabled=False):
                stats = gauss_newton_hypergradient(lambda: self.outer_loss(val_batch),
                                                   lambda: self.outer_loss(train_batch), theta, [self.alpha], eta)
            finite = bool(torch.isfinite(torch.tensor([stats["F"], stats["f"]])).all())
            if not all(ctx.all_gather_object(finite)):  # every process stops alike
                raise FloatingPointError(f"semprior's outer loss became {stats['F']} / {stats['f']} (F / f) at epoch "
                                         f"{ctx.epoch} on some process (lower method.options.lr_outer, check the "
                                         "validation labels)")
            if ctx.world_size > 1:
                for p in [*theta, self.alpha]:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= ctx.world_size
            ctx.unscaled_step(outer)
            ctx.log("train/outer_F", stats["F"])
        self.outer_phases += 1

    def on_train_epoch_start(self, ctx: StepContext) -> None:
        if ctx.epoch == 0 and ctx.rank == 0 and ctx.run_dir is not None and self.cluster_model is not None:
            path = Path(ctx.run_dir) / CLUSTERS_FILE
            if not path.exists():
                self.cluster_model.save(path)

    @torch.no_grad()
    def update(self, ctx: StepContext, lose_ratio: float | None) -> None:
        """Evolve the validation pseudo-labels with the teacher, then PAL's training update (which commits
        both)."""
        store, o = ctx.stores["val_labels"], self.opts
        predictor = ctx.predictor(self.label_network())
        labels = {}
        for batch in ctx.loader("val_full"):
            probs = self.label_probabilities(predictor, batch)
            counted = batch.get("counted") or [True] * len(probs)
            for i, (sid, keep) in enumerate(zip(batch["id"], counted)):
                if keep:
                    label = crop(batch["target"][i, 0], batch["box"][i]).cpu().numpy()
                    labels[sid] = pal_update(probs[i].numpy(), label, tb=o.tb, k=o.k, neighbourhood=o.neighbourhood,
                                             core=o.core, size_fraction=o.size_fraction, decay=o.decay,
                                             quantise=o.quantise_labels)
        for part in ctx.all_gather_object(labels):
            for sid, new in part.items():
                store.write(sid, [new[None]])
        super().update(ctx, lose_ratio)

    def method_state(self) -> dict:
        return {**super().method_state(), "outer_phases": self.outer_phases}

    def load_method_state(self, state) -> None:
        super().load_method_state(state)
        self.outer_phases = int(state.get("outer_phases", 0))

    def describe(self) -> dict:
        fm = self.foundation
        config = getattr(fm, "config", None)
        model = self.cluster_model
        return {
            "options": dataclasses.asdict(self.opts),
            "scale": self.scale,
            "foundation": config() if callable(config) else {},
            "foundation_cache_key": fm.cache_key() if hasattr(fm, "cache_key") else None,
            "clusters": None if model is None else {"k": model.k, "fitted_on": len(model.train_ids)},
            "label_evolution": "pal (teacher's predictions)",
            "reference": "https://github.com/yuanhang-yao/semantic-prior (train.py, utils/losses.py, utils/gn_bilevel.py)",
        }
