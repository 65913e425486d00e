"""Typed run configuration, parsed once at the edge.

A run is described by five sections (YAML, all optional but ``data``)::

    data:    {root: ../shared/data/sirst, train_split: train, val_split: val, test_split: test, crop_size: 256, ...}
    model:   {name: acm, kwargs: {}}
    method:  {name: supervised, loss: softiou, ...}
    optim:   {optimizer: adam, lr: 5e-4, weight_decay: 0, scheduler: none, ...}
    trainer: {max_epochs: 400, batch_size: 16, accelerator: auto, devices: 1, strategy: auto, ...}

``load_config(source, overrides)`` merges defaults <- the config (a YAML file, which may compose groups
with ``defaults: [protocol/cpu, data/sirst427, ...]``, or a named run such as ``fdep/acm_sirst427``; see
:mod:`irfoundry.engine.compose`) <- ``--set section.key=value`` overrides (values parsed as YAML scalars),
rejects unknown keys (naming the key and the allowed ones), checks every value by type and range
(``method.options`` by the method's own options dataclass) and returns a :class:`RunConfig`.
``RunConfig.to_dict()`` is what gets written into the run folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, Sequence

import yaml

from irfoundry.errors import ConfigError, ModelError
from irfoundry.options import choice_error, parse_dataclass
from irfoundry.optim import OptimConfig

__all__ = ["DataConfig", "MethodConfig", "ModelConfig", "OptimConfig", "RunConfig", "TrainerConfig", "from_dict",
           "load_config", "merge_overrides", "parse_override", "read_yaml"]


@dataclass
class DataConfig:
    """Dataset and augmentation. ``root``: dataset folder; splits: names or split-file paths."""

    root: str = ""
    train_split: str = "train"
    #: ``None`` -> the dataset's own ``val`` split if it has one, else a seeded carve-out from train;
    #: ``"none"`` -> no validation (train on the whole split, keep only ``last``: BasicIRSTD protocol)
    val_split: str | None = None
    test_split: str = "test"
    val_fraction: float = 0.2
    #: what the run trains on: ``mask`` (the ground-truth masks) or ``points`` (one click per target from
    #: ``data.points``; the clicked pixels are the initial target, masks are not read for training)
    labels: Literal["mask", "points"] = "mask"
    #: point labels (CSV or JSON of image id, x, y; :mod:`irfoundry.data.point_files`) for ``labels: points``, or
    #: ``derive:centroid`` / ``derive:coarse[:SEED]``: derived from the train and val masks at start (the
    #: simulated clicks of the papers, exactly what ``irfoundry data points`` writes)
    points: str | None = None
    #: what validation (and so the ``best`` checkpoint) scores: ``mask`` (ground-truth masks), ``points``
    #: (the clicks of ``data.points`` for the val images: :mod:`irfoundry.metrics.points`, no mask read) or
    #: ``auto`` (= ``labels``: a point-supervised run selects on clicks unless ``mask`` is asked for by name)
    val_labels: Literal["auto", "mask", "points"] = "auto"
    crop_size: int = 256
    target_crop_prob: float = 0.5
    flip: bool = True
    rot90: bool = True
    #: random gain / bias / gamma / noise on the image (irfoundry.data.transforms.IntensityJitter)
    intensity_jitter: bool = False
    #: padding of images smaller than the crop
    pad_mode: Literal["zero", "reflect"] = "zero"
    num_workers: int = 0
    seed: int = 0
    #: train on several datasets at once instead of ``root``: a list of ``{root, name, train_split, val_split,
    #: test_split, points}`` (:mod:`irfoundry.data.mix`; ids become ``name/id``, every test set is reported)
    mix: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mix:
            from irfoundry.data.mix import mix_entries

            if self.root:
                raise ConfigError(f"data.root = {self.root!r} and data.mix are both given; a mixed run names its "
                                  "datasets in data.mix only")
            self.mix = [dataclasses.asdict(e) for e in mix_entries(self.mix)]
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.crop_size <= 0:
            raise ConfigError(f"data.crop_size must be a positive number, got {self.crop_size!r}")
        if not 0.0 <= self.target_crop_prob <= 1.0:
            raise ConfigError(f"data.target_crop_prob must be a probability in [0, 1], got {self.target_crop_prob!r}")
        per_dataset = [e["points"] for e in self.mix if e["points"]]
        if per_dataset and (self.points or len(per_dataset) < len(self.mix)):
            raise ConfigError("data.mix: give every entry its points file, or none of them and data.points")
        clicks = bool(self.points or per_dataset)
        if self.labels == "points" and not clicks:
            raise ConfigError("data.labels = 'points' needs data.points: the file of clicks (image id, x, y); "
                              "make one with 'irfoundry data points DATASET --out FILE' (or derive:centroid)")
        if self.val_labels == "points" and not clicks:
            raise ConfigError("data.val_labels = 'points' needs data.points: the clicks of the validation images")
        if self.labels == "mask" and clicks:
            raise ConfigError(f"data.points = {self.points or per_dataset[0]!r} is given but data.labels = 'mask'; set "
                              "data.labels: points to train on the clicks, or remove data.points")


@dataclass
class ModelConfig:
    RENAMED: ClassVar[dict[str, str]] = {"prior_prob": "init_prob", "prior_weight_std": "init_weight_std"}

    name: str = "unet_tiny"
    in_chans: int = 1
    kwargs: dict = field(default_factory=dict)
    #: start every output at this probability (RetinaNet's output initialisation,
    #: :func:`irfoundry.models.init_output_probability`); ``None`` keeps the host's own initialisation, as its
    #: published recipe does
    init_prob: float | None = None
    #: with ``init_prob``: std of the redrawn logit-layer weights (RetinaNet: 0.01); ``None`` keeps the host's
    init_weight_std: float | None = 0.01

    def __post_init__(self) -> None:
        from irfoundry.models import model_entry

        try:
            model_entry(self.name)
        except ModelError as exc:
            raise ConfigError(f"model.name: {exc}") from None
        if self.init_prob is not None and not 0.0 < self.init_prob < 1.0:
            raise ConfigError(f"model.init_prob must be null or a probability in (0, 1), got {self.init_prob!r}")
        if self.init_weight_std is not None and self.init_weight_std < 0:
            raise ConfigError(f"model.init_weight_std must be null or a number >= 0, got {self.init_weight_std!r}")


@dataclass
class MethodConfig:
    """How a batch becomes a loss (see :mod:`irfoundry.methods`). ``options`` is the method's own typed options
    dataclass (``Method.Options``), parsed from ``method.options`` when the config is loaded."""

    name: str = "supervised"
    loss: str = "softiou"
    #: weight of auxiliary deep-supervision outputs relative to the main output
    aux_weight: float = 1.0
    options: Any = None

    def __post_init__(self) -> None:
        from irfoundry.losses import LOSSES
        from irfoundry.methods.base import method_class

        if self.loss.lower() not in LOSSES:
            raise choice_error("method.loss", self.loss, list(LOSSES))
        cls = method_class(self.name)
        self.options = parse_dataclass(cls.Options, self.options, "method.options")


@dataclass
class TrainerConfig:
    max_epochs: int = 400
    #: stop after this many optimiser steps (``null``: only ``max_epochs`` counts)
    max_steps: int | None = None
    batch_size: int = 16
    eval_batch_size: int = 1
    val_every: int = 1
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "auto"
    #: metric for the ``best`` checkpoint, on the validation split, and its direction
    monitor: str = "val/iou"
    monitor_mode: Literal["max", "min"] = "max"
    out_dir: str = "runs"
    run_name: str = ""
    seed: int = 0
    deterministic: bool = True
    progress_bar: bool = True
    log_every_n_steps: int = 10
    limit_train_batches: Any = None
    #: clip the gradient norm to this value (also under a method's manual optimisation); ``null``: no clipping
    gradient_clip_val: float | None = None
    #: validation nIoU of an image with empty ground truth and prediction: 0 (the field's legacy rule) or 1
    empty_niou: float = 0.0
    #: resume state inside an epoch, besides the one after every epoch: every this many training batches (0: off)
    state_every_batches: int = 0
    #: ... and every this many minutes of wall time (0: off); see :mod:`irfoundry.engine.resume_state`
    state_every_minutes: float = 10.0
    #: torch CPU threads (``null``: ``OMP_NUM_THREADS`` if set, else half the CPUs; :mod:`irfoundry.threads`)
    threads: int | None = None

    def __post_init__(self) -> None:
        for key in ("max_epochs", "batch_size", "eval_batch_size", "val_every"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"trainer.{key} must be a positive number, got {getattr(self, key)!r}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"trainer.max_steps must be null or a positive number, got {self.max_steps!r}")
        if self.state_every_batches < 0 or self.state_every_minutes < 0:
            raise ConfigError("trainer.state_every_batches and trainer.state_every_minutes must be >= 0 (0: off), got "
                              f"{self.state_every_batches!r} and {self.state_every_minutes!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"trainer.threads must be null or a positive number, got {self.threads!r}")
        if self.empty_niou not in (0.0, 1.0):
            raise ConfigError(f"trainer.empty_niou must be 0 (legacy) or 1, got {self.empty_niou!r}")
        if self.gradient_clip_val is not None and self.gradient_clip_val <= 0:
            raise ConfigError(f"trainer.gradient_clip_val must be null or > 0, got {self.gradient_clip_val!r}")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def from_dict(raw: Mapping[str, Any] | None) -> RunConfig:
    """Build a :class:`RunConfig` from nested mappings, rejecting unknown sections and keys and checking every
    value (the method's options included) by type and range: a bad value fails here, before anything runs."""
    raw = dict(raw or {})
    sections = {f.name: f for f in dataclasses.fields(RunConfig)}
    unknown = [k for k in raw if k not in sections]
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r}; allowed sections: {', '.join(sections)}")
    built = {}
    for name, f in sections.items():
        value = raw.get(name) or {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"config section {name!r} must be a mapping, got {type(value).__name__}")
        built[name] = parse_dataclass(f.default_factory, value, name)  # type: ignore[arg-type]
    return RunConfig(**built)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> ``(["optim", "lr"], 0.001)``; the value is parsed as a YAML scalar/list."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. optim.lr=1e-3)")
    key, _, value = text.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if len(path) < 2:
        raise ConfigError(f"override key {key!r} must name a section and a key, e.g. trainer.max_epochs")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return path, parsed


def merge_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """Apply ``--set`` overrides to a nested dict (creating sections/keys as needed)."""
    raw = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in (raw or {}).items()}
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {p!r} is not a section")
        node[path[-1]] = value
    return raw


def read_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML file holding a mapping; ``what`` names it in the errors (missing, not YAML, not a mapping)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must hold a mapping (data, model, ... / name, base, datasets, ...)")
    return raw


def load_config(source: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Defaults <- config (a YAML file, its ``defaults`` groups expanded, or a named run such as
    ``fdep/acm_sirst427``; :mod:`irfoundry.engine.compose`) <- ``--set`` overrides, validated."""
    from irfoundry.engine.compose import read_config_source

    raw = read_config_source(source) if source else {}
    return from_dict(merge_overrides(raw, overrides))
