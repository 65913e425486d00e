"""Typed run configuration, parsed once at the edge.

A run is described by five sections (YAML, all optional but ``data``)::

    data:    {root: ../shared/data/sirst, train_split: train, val_split: val, test_split: test, crop_size: 256, ...}
    model:   {name: acm, kwargs: {}}
    method:  {name: supervised, loss: softiou, ...}
    optim:   {optimizer: adam, lr: 5e-4, weight_decay: 0, scheduler: none, ...}
    trainer: {max_epochs: 400, batch_size: 16, accelerator: auto, devices: 1, strategy: auto, ...}

``load_config(path, overrides)`` merges defaults <- YAML <- ``--set section.key=value`` overrides
(values parsed as YAML scalars), rejects unknown keys (naming the key and the allowed ones) and
returns a :class:`RunConfig`. ``RunConfig.to_dict()`` is what gets written into the run folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from irfoundry.errors import ConfigError


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
    crop_size: int = 256
    target_crop_prob: float = 0.5
    flip: bool = True
    rot90: bool = True
    #: random gain / bias / gamma / noise on the image (irfoundry.data.transforms.IntensityJitter)
    intensity_jitter: bool = False
    #: padding of images smaller than the crop: zero | reflect
    pad_mode: str = "zero"
    num_workers: int = 0
    seed: int = 0


@dataclass
class ModelConfig:
    name: str = "unet_tiny"
    in_chans: int = 1
    kwargs: dict = field(default_factory=dict)
    #: start every output at this probability (RetinaNet prior init, :func:`irfoundry.models.init_output_prior`);
    #: ``None`` keeps the host's own initialisation, as its published recipe does
    prior_prob: float | None = None
    #: with ``prior_prob``: std of the redrawn logit-layer weights (RetinaNet: 0.01); ``None`` keeps the host's
    prior_weight_std: float | None = 0.01


@dataclass
class MethodConfig:
    """How a batch becomes a loss (see :mod:`irfoundry.methods`)."""

    name: str = "supervised"
    loss: str = "softiou"
    #: weight of auxiliary deep-supervision outputs relative to the main output
    aux_weight: float = 1.0
    options: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    optimizer: str = "adam"
    lr: float = 5e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "none"
    #: multistep milestones (epochs) / step size (epochs)
    milestones: list = field(default_factory=list)
    step_size: int = 30
    gamma: float = 0.1
    warmup_epochs: int = 0
    min_lr: float = 0.0


@dataclass
class TrainerConfig:
    max_epochs: int = 400
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
    monitor_mode: str = "max"
    out_dir: str = "runs"
    run_name: str = ""
    seed: int = 0
    deterministic: bool = True
    progress_bar: bool = True
    log_every_n_steps: int = 10
    limit_train_batches: Any = None
    gradient_clip_val: float | None = None


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


#: allowed values of enumerated keys, checked by :func:`validate`
CHOICES: dict[str, tuple[str, ...]] = {
    "data.pad_mode": ("zero", "reflect"),
    "method.loss": ("softiou", "bce", "dice", "focal", "ohem_bce", "softiou+bce"),
    "optim.optimizer": ("adam", "adamw", "sgd"),
    "optim.scheduler": ("none", "step", "multistep", "cosine"),
    "trainer.monitor_mode": ("max", "min"),
}


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in names]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(k, names, n=1)
        hint = f" Did you mean {where}.{close[0]}?" if close else ""
        raise ConfigError(f"unknown config key {where}.{k}.{hint} Allowed keys in {where}: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(hints[k], v, f"{where}.{k}") for k, v in values.items()})


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Coerce YAML scalars to the declared type (YAML 1.1 reads ``5e-4`` as a string)."""
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, (str, int)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if int in allowed and not isinstance(value, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int) and Any not in allowed:
            raise ConfigError(f"{key} must be an integer, got {value!r}")
    if bool in allowed and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if str in allowed and not isinstance(value, str) and Any not in allowed:
        raise ConfigError(f"{key} must be a string, got {value!r}")
    if dict in allowed and not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping, got {value!r}")
    if list in allowed and not isinstance(value, list):
        raise ConfigError(f"{key} must be a list, got {value!r}")
    return value


def from_dict(raw: Mapping[str, Any] | None) -> RunConfig:
    """Build a :class:`RunConfig` from nested mappings, rejecting unknown sections and keys."""
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
        built[name] = _build(f.default_factory, value, name)  # type: ignore[arg-type]
    cfg = RunConfig(**built)
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Check enumerated keys and value ranges; raise :class:`ConfigError` naming the key."""
    flat = cfg.to_dict()
    for key, allowed in CHOICES.items():
        sec, k = key.split(".")
        v = flat[sec][k]
        if str(v).lower() not in allowed:
            raise ConfigError(f"{key} = {v!r} is not allowed; choose one of: {', '.join(allowed)}")
    positive = ["data.crop_size", "trainer.max_epochs", "trainer.batch_size", "trainer.eval_batch_size",
                "trainer.val_every", "optim.lr"]
    for key in positive:
        sec, k = key.split(".")
        v = flat[sec][k]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{key} must be a positive number, got {v!r}")
    if cfg.model.prior_prob is not None and not (
        isinstance(cfg.model.prior_prob, (int, float)) and 0.0 < cfg.model.prior_prob < 1.0
    ):
        raise ConfigError(f"model.prior_prob must be null or a probability in (0, 1), got {cfg.model.prior_prob!r}")
    std = cfg.model.prior_weight_std
    if std is not None and (not isinstance(std, (int, float)) or isinstance(std, bool) or std < 0):
        raise ConfigError(f"model.prior_weight_std must be null or a number >= 0, got {std!r}")
    if not 0.0 < cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {cfg.data.val_fraction!r}")
    if cfg.data.crop_size % 32:
        raise ConfigError(f"data.crop_size must be a multiple of 32 (host networks need it), got {cfg.data.crop_size}")


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


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (data, model, ...)")
    return raw


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Defaults <- YAML file (optional) <- overrides, validated."""
    raw = read_yaml(path) if path else {}
    try:
        return from_dict(merge_overrides(raw, overrides))
    except TypeError as exc:  # pragma: no cover - dataclass init errors
        raise ConfigError(str(exc)) from exc
