"""``train(cfg) -> dict``: the importable training entry point (the CLI is a thin shell around it).

Scale-out is Lightning's: ``trainer.accelerator``, ``trainer.devices``, ``trainer.strategy=ddp``,
``trainer.num_nodes``. Either let Lightning start the processes::

    irfoundry train CFG --set trainer.strategy=ddp --set trainer.devices=2 --set trainer.accelerator=cpu

(it re-executes the same command for local ranks 1..N-1), or start them yourself with torchrun / SLURM::

    torchrun --standalone --nproc_per_node 2 -m irfoundry train CFG --set trainer.strategy=ddp \
        --set trainer.devices=2 --set trainer.run_name=NAME

Only global rank 0 creates and writes the run folder. The others learn its name from rank 0 through the
environment (Lightning's launcher copies rank 0's environment into the processes it starts) or, when
every process is started at once (torchrun, SLURM), from ``trainer.run_name``, which must then be given.
"""

from __future__ import annotations

import logging
import json
import os
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from irfoundry.data import load_norm_stats, save_norm_stats
from irfoundry.engine.build import build_run
from irfoundry.engine.checkpointing import WeightsCheckpoint
from irfoundry.engine.config import RunConfig, from_dict, merge_overrides, read_yaml
from irfoundry.engine.logs import continued_metrics_log
from irfoundry.engine.progress import EpochLog, quiet_lightning
from irfoundry.engine.resume_state import ResumeState
from irfoundry.engine.runs import RESUME_CKPT
from irfoundry.errors import ConfigError, TrainingInterrupted
from irfoundry.jsonio import write_json
from irfoundry.threads import use_threads

log = logging.getLogger(__name__)

#: set by global rank 0 while it trains: the run folder, for the processes Lightning's launcher starts
RUN_DIR_ENV = "IRFOUNDRY_RUN_DIR"


def default_run_name(cfg: RunConfig) -> str:
    data = "+".join(e["name"] for e in cfg.data.mix) if cfg.data.mix else (Path(cfg.data.root).name or "data")
    return f"{cfg.model.name}_{data}_{cfg.method.name}_{time.strftime('%Y%m%d-%H%M%S')}"


def planned_run_dir(cfg: RunConfig) -> Path:
    """The new run's folder, checked but not created: a non-empty folder is refused."""
    name = cfg.trainer.run_name or default_run_name(cfg)
    run_dir = Path(cfg.trainer.out_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(
            f"run folder {run_dir} already exists and is not empty; pass --resume {run_dir} to continue it, "
            "or choose another trainer.run_name / trainer.out_dir (nothing was overwritten)"
        )
    return run_dir


def launched_as_rank_zero() -> bool:
    """Whether this process is global rank 0 as its launcher announced it before Lightning starts:
    torchrun sets ``RANK`` for every process, SLURM ``SLURM_PROCID``, Lightning's own launcher
    ``LOCAL_RANK`` / ``NODE_RANK`` for the processes it starts. True when started alone."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if external_world_size() > 1:
        return int(env["SLURM_PROCID"]) == 0
    return int(env.get("NODE_RANK", 0) or 0) == 0 and int(env.get("LOCAL_RANK", 0) or 0) == 0


def external_world_size() -> int:
    """Number of processes started together from outside (torchrun: ``RANK`` + ``WORLD_SIZE``; SLURM:
    ``SLURM_NTASKS``); 1 when started alone or by Lightning's launcher."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["WORLD_SIZE"])
    if "SLURM_PROCID" in env:
        return int(env.get("SLURM_NTASKS", "1") or 1)
    return 1


def run_dir_of(cfg: RunConfig, leader: bool) -> Path:
    """The new run's folder: chosen (and refused if not empty) by global rank 0, which creates it once the
    run is built; the other processes take it from ``trainer.run_name`` or from rank 0 through
    :data:`RUN_DIR_ENV`."""
    if not cfg.trainer.run_name and external_world_size() > 1:
        # every process raises, before anything is written: they cannot agree on a time-stamped name
        raise ConfigError(
            f"{external_world_size()} processes were started together (torchrun / SLURM) without "
            "trainer.run_name, so they cannot agree on the run folder; pass --set trainer.run_name=NAME"
        )
    if leader:
        return planned_run_dir(cfg)
    if cfg.trainer.run_name:
        return Path(cfg.trainer.out_dir) / cfg.trainer.run_name
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    raise ConfigError(  # a rank > 0 started by hand with LOCAL_RANK / NODE_RANK and no run name
        "this process is not global rank 0 (LOCAL_RANK / NODE_RANK are set) and cannot learn the run folder "
        "rank 0 chose; pass --set trainer.run_name=NAME to every process"
    )


#: what ``--resume RUN --set KEY=VALUE`` may change: the run's length and how it is run, never what it learns
RESUME_OVERRIDES = ("trainer.max_epochs", "trainer.max_steps", "trainer.progress_bar", "trainer.threads",
                    "trainer.log_every_n_steps", "data.num_workers", "trainer.state_every_batches",
                    "trainer.state_every_minutes")


def resolve_resume(resume: str | os.PathLike, overrides: Sequence[str] = ()) -> tuple[RunConfig, Path]:
    """Config and folder of an interrupted (or finished, to extend) run; ``overrides`` may change only
    :data:`RESUME_OVERRIDES` (e.g. ``trainer.max_epochs=200`` continues a finished 100-epoch run)."""
    run_dir = Path(resume)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"cannot resume {run_dir}: no config.yaml in it")
    if not (run_dir / RESUME_CKPT).is_file():
        raise ConfigError(f"cannot resume {run_dir}: it holds no {RESUME_CKPT} (was it started by irfoundry train?)")
    for text in overrides:
        key = text.partition("=")[0].strip()
        if key not in RESUME_OVERRIDES:
            raise ConfigError(f"--resume cannot change {key}: a resumed run keeps its config; it may change only "
                              f"{', '.join(RESUME_OVERRIDES)} (start a new run for anything else)")
    saved = read_yaml(cfg_path)
    before = from_dict(saved)
    cfg = from_dict(merge_overrides(saved, overrides))
    for key in ("max_epochs", "max_steps"):
        old, new = getattr(before.trainer, key), getattr(cfg.trainer, key)
        if old is not None and (new is None and key == "max_steps" or new is not None and new < old):
            raise ConfigError(f"--resume cannot shorten {run_dir} below the trainer.{key} it was started with ({old})")
    longer = (cfg.trainer.max_epochs, cfg.trainer.max_steps) != (before.trainer.max_epochs, before.trainer.max_steps)
    if longer and before.optim.scheduler.lower() == "cosine":
        raise ConfigError(f"--resume cannot extend {run_dir}: its cosine schedule was laid out over its original "
                          "length, so the epochs already run would not be those of a longer run; start a new run")
    cfg.trainer.out_dir, cfg.trainer.run_name = str(run_dir.parent), run_dir.name
    return cfg, run_dir


def _write_config(cfg: RunConfig, run_dir: Path) -> None:
    """``run_dir/config.yaml``, atomically (a resumed process never reads half a file)."""
    tmp = run_dir / f".config.yaml.{os.getpid()}.tmp"
    tmp.write_text(cfg.to_yaml())
    os.replace(tmp, run_dir / "config.yaml")


def _precision(cfg: RunConfig) -> str:
    if cfg.trainer.precision != "auto":
        return cfg.trainer.precision
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (
        cfg.trainer.accelerator == "auto" and torch.cuda.is_available()
    )
    return "16-mixed" if on_gpu else "32-true"


def _strategy(cfg: RunConfig, host, method) -> object:
    """``trainer.strategy``; plain ``ddp`` becomes ``DDPStrategy(find_unused_parameters=True)`` for hosts
    that carry reference layers they never call (``SegmentationModel.unused_modules``, e.g. ALCNet) and for
    methods that optimise manually (they typically step a subset of their parameters per backward, e.g. an
    outer step of per-cluster weights)."""
    unused = bool(getattr(host, "unused_modules", ())) or not method.automatic_optimization
    if cfg.trainer.strategy == "ddp" and unused:
        return L.pytorch.strategies.DDPStrategy(find_unused_parameters=True)
    return cfg.trainer.strategy


def train(cfg: RunConfig | dict, resume: str | os.PathLike | None = None, max_time: str | None = None,
          resume_overrides: Sequence[str] = ()) -> dict:
    """Train ``cfg.model`` with ``cfg.method`` on ``cfg.data``.

    Args:
        cfg: a :class:`RunConfig` (or a nested dict of its sections). Ignored when ``resume`` is given.
        resume: folder of an interrupted run to continue (same result as an uninterrupted run on CPU), or of a
            finished one to extend with ``resume_overrides=["trainer.max_epochs=N"]``.
        resume_overrides: ``--set`` values for a resumed run (only :data:`RESUME_OVERRIDES`); the run's
            config.yaml is updated with them.
        max_time: optional wall-clock budget ``"DD:HH:MM:SS"`` (Lightning ``max_time``; the run then depends on
            the machine's speed and load).

    Returns:
        ``{"run_dir", "best", "last", "best_epoch", "best_score", "monitor", "val_metrics", "data"}``.
    """
    leader = launched_as_rank_zero()
    if resume is not None:
        cfg, run_dir = resolve_resume(resume, resume_overrides)
    else:
        cfg = cfg if isinstance(cfg, RunConfig) else from_dict(cfg)
        run_dir = run_dir_of(cfg, leader)

    threads = use_threads(cfg.trainer.threads)
    quiet_lightning()
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    norm = load_norm_stats(run_dir / "norm.json") if resume is not None else None
    parts = build_run(cfg, norm=norm, run_dir=run_dir)  # everything built (or refused) before any file is written
    dm, host, method, module = parts.datamodule, parts.host, parts.method, parts.module
    meta = {"config": cfg.to_dict(), "norm": {"mean": dm.norm["mean"], "std": dm.norm["std"]}, "data": dm.summary(),
            "torch_threads": threads}
    described = method.describe()
    if described:
        meta["method"] = described
    weights_cb = WeightsCheckpoint(
        run_dir, meta, cfg.trainer.monitor, cfg.trainer.monitor_mode, validate=dm.has_val, every_n_epochs=cfg.trainer.val_every
    )
    if not dm.has_val:
        log.info("no validation split (data.val_split=none): only last.safetensors is kept")
    resume_cb = ResumeState(run_dir / RESUME_CKPT, every_batches=cfg.trainer.state_every_batches,
                            every_minutes=cfg.trainer.state_every_minutes)
    loggers = [
        L.pytorch.loggers.CSVLogger(run_dir, name="logs", version=""),
        L.pytorch.loggers.TensorBoardLogger(run_dir, name="tb", version=""),
    ]
    t = cfg.trainer
    bar = t.progress_bar and sys.stderr.isatty()  # not a terminal (a log file, CI): one line per epoch instead
    try:
        trainer = L.Trainer(
            max_epochs=t.max_epochs,
            max_steps=t.max_steps if t.max_steps is not None else -1,
            max_time=max_time,
            accelerator=t.accelerator,
            devices=t.devices,
            strategy=_strategy(cfg, host, method),
            num_nodes=t.num_nodes,
            precision=_precision(cfg),
            check_val_every_n_epoch=t.val_every,
            deterministic=t.deterministic,
            enable_progress_bar=bar,
            log_every_n_steps=t.log_every_n_steps,
            # under manual optimisation the method clips through its step context (Lightning refuses this there)
            gradient_clip_val=t.gradient_clip_val if module.automatic_optimization else None,
            limit_train_batches=t.limit_train_batches,
            num_sanity_val_steps=0,
            limit_val_batches=None if dm.has_val else 0,
            # the datamodule shards by rank itself: Lightning's DistributedSampler would repeat validation images
            use_distributed_sampler=False,
            # a training pool changes between epochs: its loader (and the epoch's length) is rebuilt every epoch
            reload_dataloaders_every_n_epochs=1 if dm.train_pool is not None else 0,
            callbacks=[weights_cb, resume_cb] + ([] if bar else [EpochLog()]),
            logger=loggers,
            default_root_dir=run_dir,
            enable_model_summary=False,
        )
    except (MisconfigurationException, ValueError, TypeError) as exc:  # before any file is written
        raise ConfigError(f"Lightning refused the trainer settings (trainer.accelerator / devices / strategy / "
                          f"precision / num_nodes): {exc}") from None
    # every part exists now: only from here on is anything written
    created = False
    if resume is None and leader:
        run_dir.mkdir(parents=True, exist_ok=True)
        created = True
        _write_config(cfg, run_dir)
        save_norm_stats(dm.norm, run_dir / "norm.json")
        write_json(dm.summary(), run_dir / "data.json")
        if described:
            write_json(described, run_dir / "method.json")
    elif resume_overrides and leader:
        _write_config(cfg, run_dir)
        log.info("resuming %s with %s", run_dir, ", ".join(resume_overrides))
    ckpt = str(run_dir / RESUME_CKPT) if resume is not None else None
    sigint = signal.getsignal(signal.SIGINT)
    previous = os.environ.get(RUN_DIR_ENV)
    if leader:
        os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by the processes Lightning's launcher starts
    try:
        with warnings.catch_warnings():
            # val/* come from torchmetrics' own cross-process sync: Lightning's advice to add sync_dist is moot
            warnings.filterwarnings("ignore", r"It is recommended to use `self.log\('val", PossibleUserWarning)
            # Lightning 2.6's own use of a deprecated torch API, repeated at every loader reload (training pool)
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            # per-epoch values are logged by the engine whatever the step interval (and a pool's loader, rebuilt
            # every epoch, would repeat this every epoch)
            warnings.filterwarnings("ignore", r"The number of training batches \(\d+\) is smaller than the logging")
            if resume is not None:  # continued_metrics_log keeps what this warns about
                warnings.filterwarnings("ignore", r"Experiment logs directory .* exists and is not empty")
            with continued_metrics_log(run_dir, resuming=resume is not None and leader):
                trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
    except BaseException as exc:
        resumable = (run_dir / RESUME_CKPT).is_file()
        if created and not resumable:
            # nothing resumable was written: remove this call's own folder so the same command can simply be rerun
            shutil.rmtree(run_dir, ignore_errors=True)
            log.warning("training stopped before its first epoch ended; removed the run folder %s", run_dir)
        if isinstance(exc, (SystemExit, KeyboardInterrupt)) and trainer.interrupted:
            raise TrainingInterrupted(run_dir, resumable) from None
        raise
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl-C for good once it has caught one
        if leader:
            if previous is None:
                os.environ.pop(RUN_DIR_ENV, None)
            else:
                os.environ[RUN_DIR_ENV] = previous
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val")}
    if not val and (run_dir / "last.json").is_file():  # a finished run resumed as it was: its last validation
        val = json.loads((run_dir / "last.json").read_text()).get("metrics") or {}
    result = {
        "run_dir": str(run_dir),
        "best": str(run_dir / "best.safetensors") if (run_dir / "best.safetensors").is_file() else None,
        "last": str(run_dir / "last.safetensors") if (run_dir / "last.safetensors").is_file() else None,
        "best_epoch": weights_cb.best_epoch,
        "best_score": weights_cb.best_score,
        "monitor": cfg.trainer.monitor,
        "epochs": trainer.current_epoch,
        "val_metrics": val,
        "data": dm.summary(),
        "torch_threads": threads,
    }
    if trainer.is_global_zero:
        write_json(result, run_dir / "train_result.json")
    return result
