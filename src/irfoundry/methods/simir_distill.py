"""SimIR distillation: a frozen fine-tuned teacher teaches a small student, which is then fine-tuned and ships alone.

SimIR (Zhang et al., arXiv 2409.04714, ACM MM 2024; code O937-blip/SimIR) releases the student, its loss and its
optimiser (``configs/repvit.yaml``; ``configs/method/simir_distill.yaml``) but no distillation code, only a
"distilled backbone" checkpoint: what follows is **our reconstruction** (``methods.md`` section 3, [recon])::

    loss = task + kd_weight * T^2 * KD + feature_weight * FEAT

* ``task`` [code]: with ``loss: simir_point`` the released criterion, point BCE + Dice *summed* over the student's
  masks (:func:`~irfoundry.point_loss.simir_point_criterion`); any other loss through
  :func:`~irfoundry.losses.deep_supervision_loss` (``aux_weight``). ``task_loss`` overrides ``method.loss``.
* ``KD`` [recon]: the Bernoulli ``KL(sigmoid(t / T) || sigmoid(s / T))`` of the teacher's main logits ``t`` and a
  student mask ``s``, averaged over pixels and masks: every mask (``kd_outputs: all``, the default, as SimIR
  supervises its encoder, FPN and decoder masks alike) or the main one (``main``). ``T^2`` keeps the gradient scale
  (Hinton et al.); KD is 0 exactly when the student's logits equal the teacher's.
* ``FEAT`` [recon, off by default]: MSE between student encoder maps, each resized bilinearly to its teacher map's
  size through a trainable 1x1 adapter to the teacher's channels, and the teacher's maps (mean over pairs). A
  ``sam_teacher`` has one map, its image embedding (:meth:`~irfoundry.models.sam_teacher.SAMTeacher.embed`, stride
  16 for the usual encoders), paired with the student scale nearest in stride (log2; SimIR's student: its stride-8
  tap); an encoder-decoder teacher pairs every student scale with the ``encode()`` stage nearest in stride. Student
  scales: an encoder-decoder host's ``encode()`` stages or SimIR's four encoder taps (strides 1 / 2 / 4 / 8, read by
  a forward hook on ``host.encoder``); other students / teachers refuse ``feature_weight > 0``. The adapters are
  method parameters (optimised, resumed), never exported.
* stages [recon]: epochs ``0 .. distill_epochs - 1`` distil, the later ones fine-tune on ``task`` alone (the
  teacher is not run); ``distill_epochs: null`` distils throughout. Keyed off ``ctx.epoch``, so ``--resume``
  restores the stage.

**Teacher** (``teacher``: a run folder, whose ``best.safetensors``, else ``last.safetensors``, is used, or a
``.safetensors`` file with its sidecar): rebuilt from the sidecar and loaded strictly, a ``sam_teacher`` with
``weights="random"`` and ``sam_checkpoint=None`` (its saved state holds every weight: no pretrained file is read
again). A :class:`~irfoundry.models.frozen.Frozen`: eval mode whatever ``train()`` says, no gradient, absent from
``parameters()`` and ``state_dict()``; its file's sha256 is in :meth:`describe` (``method.json``, every sidecar).

**Normalisation**: batches are normalised with this run's ``(mean_s, std_s)``; when the teacher's sidecar records
other statistics ``(mean_t, std_t)``, the teacher sees ``x_t = (x * std_s + mean_s - mean_t) / std_t``, the images
as its own run normalised them (a ``sam_teacher`` then undoes that with its saved ``input_mean`` / ``input_std``
buffers, as in its own run). Inputs are zero-padded bottom / right to the teacher's input multiple (the inference
path's policy) and its outputs cropped back.

Evaluation branches: ``host`` (the student; selects ``best``) and, with ``eval_teacher`` (default), ``teacher``
(``irfoundry eval --branch teacher``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import CheckpointError, ConfigError, ModelError
from irfoundry.losses import LOSSES, build_loss, deep_supervision_loss
from irfoundry.methods.base import Batch, Method, register_method
from irfoundry.methods.context import BuildEnv
from irfoundry.models.base import input_multiple, is_encoder_decoder, main_output
from irfoundry.models.frozen import Frozen
from irfoundry.options import choice_error
from irfoundry.point_loss import simir_point_criterion

log = logging.getLogger(__name__)

__all__ = ["SimIRDistill", "SimIRDistillOptions", "binary_kl", "kd_loss", "load_teacher", "teacher_file"]

#: strides of SimIR's four encoder taps (:class:`~irfoundry.models.simir.SimIREncoder`)
SIMIR_TAP_STRIDES = (1, 2, 4, 8)


@dataclass
class SimIRDistillOptions:
    """``method.options`` of ``simir_distill`` (see the module docstring)."""

    #: required: a run folder or a ``.safetensors`` file written by irfoundry (checked when the run is built)
    teacher: str | None = None
    temperature: float = 2.0
    kd_weight: float = 1.0
    kd_outputs: Literal["main", "all"] = "all"
    feature_weight: float = 0.0
    #: epochs that distil (``null``: all); the rest fine-tune on the task loss alone
    distill_epochs: int | None = None
    #: ``null``: the run's ``method.loss``
    task_loss: str | None = None
    #: also validate the teacher (``val_teacher/*``, ``irfoundry eval --branch teacher``)
    eval_teacher: bool = True

    def __post_init__(self) -> None:
        if not self.teacher:
            raise ConfigError("method.options.teacher is required: a run folder or a .safetensors weights file of a "
                              "teacher trained with irfoundry; --set method.options.teacher=PATH")
        for key, ok, rule in (("temperature", self.temperature > 0, "> 0"), ("kd_weight", self.kd_weight >= 0, ">= 0"),
                              ("feature_weight", self.feature_weight >= 0, ">= 0"),
                              ("distill_epochs", self.distill_epochs is None or self.distill_epochs >= 0,
                               "null (every epoch) or >= 0")):
            if not ok:
                raise ConfigError(f"method.options.{key} must be {rule}, got {getattr(self, key)!r}")
        if self.task_loss is not None and self.task_loss.lower() not in LOSSES:
            raise choice_error("method.options.task_loss", self.task_loss, ["null", *LOSSES])


def teacher_file(path: str | Path) -> Path:
    """The weights file of ``teacher``: the file itself, or a run folder's ``best`` / ``last`` (as
    :meth:`Frozen.from_file`). :class:`ConfigError` naming the path otherwise."""
    p = Path(path).expanduser()
    key = f"method.options.teacher = {path}"
    if p.is_dir():
        found = [p / n for n in ("best.safetensors", "last.safetensors") if (p / n).is_file()]
        if not found:
            raise ConfigError(f"{key}: the folder holds no best.safetensors or last.safetensors (no irfoundry run)")
        return found[0]
    if not p.is_file():
        raise ConfigError(f"{key} does not exist (a run folder or a .safetensors file written by irfoundry)")
    if p.suffix != ".safetensors":
        raise ConfigError(f"{key} is not a .safetensors weights file written by irfoundry (or a run folder)")
    return p


def load_teacher(path: str | Path) -> tuple[Frozen, dict | None]:
    """The frozen teacher of ``path`` (:func:`teacher_file`) and the normalisation its sidecar records."""
    from irfoundry.models.checkpoint import file_sha256, load_weights, read_weights_meta

    file = teacher_file(path)
    try:
        meta = read_weights_meta(file)
        # a saved sam_teacher holds every weight: do not read its pretrained encoder / SAM file again
        extra = {"weights": "random", "sam_checkpoint": None} if meta.get("model_name") == "sam_teacher" else {}
        module = load_weights(file, **extra)
    except (CheckpointError, ModelError) as exc:
        raise ConfigError(f"method.options.teacher = {path}: cannot load {file}: {exc}") from None
    norm = meta.get("norm")
    return Frozen(module, source=str(file), sha256=file_sha256(file)), (dict(norm) if norm else None)


def binary_kl(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean over elements of ``KL(Bernoulli(sigmoid(t / T)) || Bernoulli(sigmoid(s / T)))`` (logits in, float32)."""
    t, s = teacher_logits.float() / temperature, student_logits.float() / temperature
    p = torch.sigmoid(t)
    kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl.mean()


def kd_loss(student: Sequence[Tensor], teacher_logits: Tensor, temperature: float, outputs: str = "all") -> Tensor:
    """``T^2 * mean_masks binary_kl(teacher, mask)`` over the student's masks (``all``) or its main one (``main``);
    the teacher's logits are resized bilinearly to a mask of another size."""
    masks = list(student) if outputs == "all" else list(student[:1])
    terms = [binary_kl(_resized(teacher_logits, m.shape[-2:]), m, temperature) for m in masks]
    return temperature ** 2 * torch.stack(terms).mean()


def _resized(x: Tensor, size) -> Tensor:
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=tuple(size), mode="bilinear",
                                                                       align_corners=False)


def _as_list(out: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [out] if isinstance(out, Tensor) else list(out)


def _scales(model: nn.Module) -> list[tuple[int, int]] | None:
    """``(channels, stride)`` of the maps the feature term reads (encoder-decoder stages, SimIR's taps, a
    sam_teacher's embedding); ``None`` when the model declares none."""
    from irfoundry.models.sam_teacher import SAMTeacher
    from irfoundry.models.simir import SimIRStudent

    if is_encoder_decoder(model):
        return list(zip(model.stage_channels, model.stage_strides))
    if isinstance(model, SimIRStudent):
        return [(model.encoder.dim, s) for s in SIMIR_TAP_STRIDES]
    if isinstance(model, SAMTeacher):
        return [(model.mask_head.mask_decoder.transformer_dim, model.embed_stride)]
    return None


def _nearest(stride: int, strides: Sequence[int]) -> int:
    """Index of the stride nearest ``stride`` in log2 (ties: the coarser)."""
    return min(range(len(strides)), key=lambda j: (abs(math.log2(strides[j] / stride)), -strides[j]))


def _norm(norm: Mapping[str, float] | None) -> dict | None:
    return None if norm is None else {"mean": float(norm["mean"]), "std": float(norm["std"])}


@register_method("simir_distill", options=SimIRDistillOptions)
class SimIRDistill(Method):
    """Distil a frozen ``teacher`` into ``host`` (the student), then fine-tune it; exports the host alone.

    Args:
        host: the student, any segmentation model (the feature term needs declared encoder scales).
        cfg: the method config (``cfg.options`` a :class:`SimIRDistillOptions`).
        teacher: the teacher, a :class:`Frozen` (a plain module is frozen here).
        norm: this run's normalisation ``{"mean", "std"}`` ([0, 1] units).
        teacher_norm: the teacher run's (``None``: the same as ``norm``).
    """

    def __init__(self, host: nn.Module, cfg, teacher: nn.Module, norm: Mapping[str, float] | None = None,
                 teacher_norm: Mapping[str, float] | None = None) -> None:
        from irfoundry.models.sam_teacher import SAMTeacher

        super().__init__(host, cfg)
        o = self.opts
        self.teacher = teacher if isinstance(teacher, Frozen) else Frozen(teacher, source="module")
        t = self.teacher.module
        t_in, s_in = getattr(t, "in_chans", None), getattr(host, "in_chans", None)
        if isinstance(t_in, int) and isinstance(s_in, int) and t_in != s_in:
            raise ConfigError(f"method.options.teacher takes {t_in} input channels, the student {s_in}")
        self.task_name = (o.task_loss or cfg.loss).lower()
        self.loss_fn = build_loss(self.task_name)
        self.norm = _norm(norm)
        self.teacher_norm = _norm(teacher_norm) or self.norm
        s_n, t_n = self.norm or {"mean": 0.0, "std": 1.0}, self.teacher_norm or {"mean": 0.0, "std": 1.0}
        #: the teacher sees ``x * scale + shift`` (identity when both runs share their statistics)
        self.to_teacher = (s_n["std"] / t_n["std"], (s_n["mean"] - t_n["mean"]) / t_n["std"])
        self.teacher_multiple = input_multiple(t)
        self.teacher_is_sam = isinstance(t, SAMTeacher)
        #: feature pairs ``(student scale, teacher map)``, one 1x1 adapter each
        self.pairs: list[tuple[int, int]] = []
        self.adapters = nn.ModuleList()
        if o.feature_weight > 0:
            scales, maps = (None if isinstance(host, SAMTeacher) else _scales(host)), _scales(t)
            if scales is None or maps is None:
                who, m = ("student", host) if scales is None else ("teacher", t)
                raise ConfigError(f"method.options.feature_weight > 0 needs encoder scales, the {who} "
                                  f"{getattr(m, 'model_name', '') or type(m).__name__} declares none (encoder-decoder "
                                  "students / teachers, simir students, sam_teacher teachers)")
            if self.teacher_is_sam:
                self.pairs = [(_nearest(maps[0][1], [s for _, s in scales]), 0)]
            else:
                self.pairs = [(i, _nearest(s, [m for _, m in maps])) for i, (_, s) in enumerate(scales)]
            self.adapters.extend(nn.Conv2d(scales[i][0], maps[j][0], 1) for i, j in self.pairs)
        self.epoch = 0

    @classmethod
    def from_config(cls, host: nn.Module, cfg, env: BuildEnv) -> "SimIRDistill":
        """Load the teacher the options name (refused before anything is written), then build the method."""
        teacher, teacher_norm = load_teacher(cfg.options.teacher)
        if teacher_norm is None:
            log.warning("teacher %s records no normalisation; assuming this run's", teacher.source)
        return cls(host, cfg, teacher=teacher, norm=env.norm, teacher_norm=teacher_norm)

    # ---------------------------------------------------------------------------------- training
    def on_train_epoch_start(self, ctx) -> None:
        self.epoch = int(ctx.epoch)

    @property
    def in_distillation(self) -> bool:
        """Whether the current epoch distils (else it fine-tunes on the task loss alone)."""
        return self.opts.distill_epochs is None or self.epoch < self.opts.distill_epochs

    def student_outputs(self, images: Tensor, with_features: bool = False) -> tuple[list[Tensor], list[Tensor]]:
        """The student's masks (main first) and, ``with_features``, its encoder scales."""
        if not with_features:
            return _as_list(self.host(images)), []
        if is_encoder_decoder(self.host):
            feats = self.host.encode(images)
            return _as_list(self.host.decode(feats, (images.shape[-2], images.shape[-1]))), list(feats)
        taps: list = []
        hook = self.host.encoder.register_forward_hook(lambda m, i, out: taps.append(out[0]))
        try:
            out = self.host(images)
        finally:
            hook.remove()
        return _as_list(out), list(taps[0])

    @torch.no_grad()
    def teacher_outputs(self, images: Tensor, with_features: bool = False) -> tuple[Tensor, list[Tensor]]:
        """The teacher's main logits ``B x 1 x H x W`` on this run's normalised images, and its feature maps."""
        t = self.teacher.module
        scale, shift = self.to_teacher
        x = images * scale + shift if (scale, shift) != (1.0, 0.0) else images
        h, w = images.shape[-2:]
        m = self.teacher_multiple
        if h % m or w % m:
            x = F.pad(x, (0, -w % m, 0, -h % m))
        feats: list[Tensor] = []
        if with_features and self.teacher_is_sam:  # the image embedding of the same forward pass
            hook = t.neck.register_forward_hook(lambda mod, i, out: feats.append(out))
            try:
                out = t(x)
            finally:
                hook.remove()
        elif with_features:
            feats = list(t.encode(x))
            out = t.decode(feats, (x.shape[-2], x.shape[-1]))
        else:
            out = t(x)
        H, W = x.shape[-2:]
        feats = [f[..., : math.ceil(f.shape[-2] * h / H), : math.ceil(f.shape[-1] * w / W)] for f in feats]
        return main_output(out)[..., :h, :w], feats

    def feature_loss(self, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
        """Mean over the pairs of ``MSE(adapter(resize(student_i)), teacher_j)``."""
        terms = []
        for adapter, (i, j) in zip(self.adapters, self.pairs):
            target = teacher[j].float()
            terms.append(F.mse_loss(adapter(_resized(student[i], target.shape[-2:])).float(), target))
        return torch.stack(terms).mean()

    def task(self, outputs: Sequence[Tensor], target: Tensor) -> Tensor:
        if self.task_name == "simir_point":  # the released criterion: summed over the masks
            return simir_point_criterion(outputs, target)
        return deep_supervision_loss(outputs, target, self.loss_fn, self.cfg.aux_weight)

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        o = self.opts
        images, target = batch["image"], batch["target"]
        distil = self.in_distillation
        kd_on, feat_on = distil and o.kd_weight > 0, distil and o.feature_weight > 0
        outputs, s_feats = self.student_outputs(images, feat_on)
        task = self.task(outputs, target)
        loss, logs = task, {"loss/task": task.detach()}
        if kd_on or feat_on:
            t_logits, t_feats = self.teacher_outputs(images, feat_on)
            if kd_on:
                kd = kd_loss(outputs, t_logits, o.temperature, o.kd_outputs)
                loss = loss + o.kd_weight * kd
                logs["loss/kd"] = kd.detach()
            if feat_on:
                feat = self.feature_loss(s_feats, t_feats)
                loss = loss + o.feature_weight * feat
                logs["loss/feature"] = feat.detach()
        elif len(self.adapters):  # fine-tuning: keep the adapters in the graph (plain DDP needs every parameter)
            loss = loss + 0.0 * sum(p.sum() for p in self.adapters.parameters())
        logs["loss"] = loss.detach()
        return loss, logs

    def no_weight_decay(self) -> tuple[str, ...]:
        """Every ``nn.Embedding`` of the student (SimIR: its query tokens ``encoder.query_feat`` / ``query_embed``,
        the neck's and the decoder's tokens): the released ``WEIGHT_DECAY_EMBED: 0``."""
        return tuple(f"host.{n}." for n, m in self.host.named_modules() if isinstance(m, nn.Embedding))

    # ---------------------------------------------------------------------------------- evaluation
    def teacher_logits(self, images: Tensor) -> Tensor:
        return self.teacher_outputs(images)[0]

    def eval_branches(self) -> dict[str, Callable[[Tensor], Tensor]]:
        branches: dict[str, Callable[[Tensor], Tensor]] = {"host": self.predict_logits}
        if self.opts.eval_teacher:
            branches["teacher"] = self.teacher_logits
        return branches

    def export_model(self) -> nn.Module:
        return self.host

    def describe(self) -> dict:
        """Options, the teacher's identity (file, sha256, model, normalisation) and the feature pairs."""
        t = self.teacher.module
        return {
            "options": dataclasses.asdict(self.opts),
            "teacher": {**self.teacher.provenance(), "model_name": getattr(t, "model_name", "") or type(t).__name__,
                        "model_kwargs": dict(getattr(t, "model_kwargs", {}) or {}), "norm": self.teacher_norm,
                        "input_converted": self.to_teacher != (1.0, 0.0)},
            "feature_pairs": [list(p) for p in self.pairs],
        }
