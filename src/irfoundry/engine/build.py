"""Every part of a run built from its config, before anything is written.

:func:`build_run` is the one builder: the host from the registry (with its output initialisation), the
data module (splits resolved, label source checked, normalisation statistics computed on the training
images), the method from its typed options (its builder constructs the modules the options name and
injects them), and the LightningModule. Any bad value, missing file or impossible combination raises here,
so ``train`` writes the run folder only once all of it exists.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from irfoundry.engine.config import RunConfig
from irfoundry.engine.datamodule import IRSTDDataModule
from irfoundry.engine.module import IRSTDModule
from irfoundry.errors import ConfigError
from irfoundry.metrics import REPORTED
from irfoundry.metrics.points import POINT_REPORTED
from irfoundry.methods import build_method
from irfoundry.methods.base import Method
from irfoundry.methods.context import BuildEnv
from irfoundry.models import create_model, init_output_probability, input_multiple

log = logging.getLogger(__name__)


def _check_monitor(monitor: str, branches: list[str], reported=REPORTED) -> None:
    """``trainer.monitor`` must name a logged validation value, or ``best`` would silently never be written."""
    allowed = [f"val/{k}" for k in reported] + [f"val_{b}/{k}" for b in branches[1:] for k in reported]
    if monitor not in allowed:
        close = difflib.get_close_matches(monitor, allowed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"trainer.monitor = {monitor!r} is not a logged validation value.{hint} Choose one of: "
                          f"{', '.join(allowed)}")


@dataclass
class RunParts:
    """What :func:`build_run` built."""

    cfg: RunConfig
    host: object
    datamodule: IRSTDDataModule
    method: Method
    module: IRSTDModule


def resolve_monitor(cfg: RunConfig) -> str:
    """The selection score a run uses: ``trainer.monitor``, except that validation on clicks (``data.val_labels``
    ``points``, or ``auto`` with ``data.labels: points``) has no IoU, so the default ``val/iou`` becomes the
    clicks' target-level F1 ``val/point_f1`` (written so in the run's config.yaml)."""
    val_labels = cfg.data.val_labels if cfg.data.val_labels != "auto" else cfg.data.labels
    if val_labels == "points" and cfg.trainer.monitor == "val/iou":
        return "val/point_f1"
    return cfg.trainer.monitor


def build_run(cfg: RunConfig, *, norm: Mapping[str, float] | None = None, run_dir: Path | None = None) -> RunParts:
    """Build host, data, method and module of ``cfg`` (``norm``: saved statistics of a resumed run).

    Raises:
        ConfigError / DataError / ModelError: naming the key or file, before anything is written.
    """
    host = create_model(cfg.model.name, in_chans=cfg.model.in_chans, **cfg.model.kwargs)
    multiple = input_multiple(host)
    if cfg.data.crop_size % multiple:
        raise ConfigError(
            f"data.crop_size must be a multiple of {multiple} (the input multiple of model {cfg.model.name!r}), "
            f"got {cfg.data.crop_size}"
        )
    if cfg.model.init_prob is not None:  # a resumed run then loads its own weights over it
        init_output_probability(host, cfg.model.init_prob, cfg.model.init_weight_std)
    dm = IRSTDDataModule(cfg.data, cfg.trainer.batch_size, cfg.trainer.eval_batch_size, norm=norm, multiple=multiple)
    if hasattr(host, "set_input_norm"):  # models that undo the data normalisation themselves (sam_teacher)
        host.set_input_norm(dm.norm)
    method = build_method(cfg.method, host, BuildEnv(norm=dm.norm))
    if resolve_monitor(cfg) != cfg.trainer.monitor:
        log.info("validation scores the val split's clicks (data.val_labels: points): trainer.monitor = val/point_f1")
        cfg.trainer.monitor = resolve_monitor(cfg)
    _check_monitor(cfg.trainer.monitor, list(method.eval_branches()),
                   POINT_REPORTED if dm.val_labels == "points" else REPORTED)
    requests = method.data_requests()
    if requests.labels is not None and requests.labels != cfg.data.labels:
        raise ConfigError(f"method {cfg.method.name!r} trains on data.labels: {requests.labels}, the run has "
                          f"data.labels: {cfg.data.labels}; set --set data.labels={requests.labels}"
                          + (" and data.points=FILE" if requests.labels == "points" else ""))
    dm.request_features(requests.features)
    if requests.label_store:
        dm.request_label_store(requests.label_init, pool=requests.train_pool, val=requests.val_label_store,
                               val_init=requests.val_label_init)
    if requests.attributes is not None:
        dm.request_attributes(requests.attributes)
    module = IRSTDModule(method, cfg.optim, gradient_clip_val=cfg.trainer.gradient_clip_val, run_dir=run_dir,
                         norm=dm.norm, empty_niou=cfg.trainer.empty_niou, val_labels=dm.val_labels)
    return RunParts(cfg=cfg, host=host, datamodule=dm, method=method, module=module)
