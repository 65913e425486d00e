"""Run a study: train every run of the plan, evaluate it on the test split, append its row to one results file.

Resumable at two levels: a results file (``--out``) is appended after every run and the runs already in it
are skipped, so a study interrupted between runs continues where it stopped; a run interrupted during
training continues from its last finished epoch (its run folder under the runs folder, when the folder's
saved config is exactly the config the study wants: anything else is refused and left untouched).

Every config of the plan is built and checked (types, options, names) before the first run trains, so a
typo in a spec or an override fails at once. A results file records the spec and the overrides it was made
with; another budget is refused (``--out`` a new file), so rows of one file always share one protocol.

Rows: ``dataset``, ``host``, ``arm``, ``seed``, ``run_name``, ``run_dir``, the test split and its size, the
test metrics of the deployable network selected on validation (:data:`~irfoundry.study.spec.ROW_METRICS`,
fractions; HSE in percent), ``best_epoch``, ``monitor`` and ``best_score`` (the selection: ``val/iou``, or
``val/point_f1`` for a point-supervised run that validates on clicks; ``best_score`` is the selected epoch's value),
``val_iou`` and ``val`` (every logged validation value) of the run's *last* validation, not the selected one's
(``val_iou`` is ``None`` on clicks), ``epoch_seconds`` (median ``train/epoch_seconds``: training batches and data loading, no
validation), ``step_seconds`` (those seconds per training batch, over the whole run), ``train_seconds`` and
``resumed`` when a run was continued. A spec's ``branch_arms`` add a row
per trained run of their arm: another evaluation branch of it (a teacher) at the same checkpoint, with
``branch`` and ``of_arm`` (the training fields are the run's).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from irfoundry.engine.config import RunConfig, from_dict, merge_overrides
from irfoundry.errors import ConfigError
from irfoundry.jsonio import write_json
from irfoundry.study.spec import ROW_METRICS, RunKey, StudySpec

log = logging.getLogger(__name__)

__all__ = ["join_results", "load_results", "run_study"]

RESULTS_FORMAT = "irfoundry-study-1"


def load_results(path: str | Path) -> dict:
    """A results file (``{}`` when it does not exist yet)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); move it away to start a new study") from exc


def _epoch_costs(run_dir: Path) -> dict[str, float | None]:
    """``epoch_seconds``: the median ``train/epoch_seconds`` of the run's epoch log; ``step_seconds``: their sum
    over the batches they timed (``train/epoch_batches``; ``None`` in logs written before it was logged), the
    cost that compares methods whose epochs differ in length (PAL's growing pool). ``None`` without a log."""
    from irfoundry.engine.logs import METRICS_LOG, read_rows

    rows = [r for r in read_rows(run_dir / METRICS_LOG) if r.get("train/epoch_seconds")]
    seconds = [float(r["train/epoch_seconds"]) for r in rows]
    batches = [float(r["train/epoch_batches"]) for r in rows if r.get("train/epoch_batches")]
    per_step = sum(seconds) / sum(batches) if batches and len(batches) == len(seconds) and sum(batches) else None
    return {"epoch_seconds": statistics.median(seconds) if seconds else None, "step_seconds": per_step}


def _resumable(run_dir: Path, cfg: RunConfig) -> bool:
    """Whether an existing run folder is this very run, interrupted; raises when it is something else."""
    from irfoundry.engine.runs import RESUME_CKPT
    from irfoundry.engine.train import resolve_resume

    if not run_dir.exists() or not any(run_dir.iterdir()):
        return False
    if not (run_dir / RESUME_CKPT).is_file():
        raise ConfigError(f"{run_dir} exists but holds neither a result in the results file nor a finished epoch "
                          f"({RESUME_CKPT}) to resume; delete it to rerun (nothing was overwritten)")
    from irfoundry.engine.build import resolve_monitor

    saved = resolve_resume(run_dir)[0].to_dict()
    wanted = cfg.to_dict()
    # what the run wrote into its config.yaml: its folder, and the selection score as training resolved it
    wanted["trainer"].update(out_dir=saved["trainer"]["out_dir"], run_name=saved["trainer"]["run_name"],
                             monitor=resolve_monitor(cfg))
    differ = sorted(f"{s}.{k}" for s, values in wanted.items() for k, v in values.items() if saved.get(s, {}).get(k) != v)
    if differ:
        raise ConfigError(f"{run_dir} is an interrupted run of another budget ({', '.join(differ)} differ from this "
                          "study's); delete it or pass another --runs (nothing was overwritten)")
    return True


def _test(cfg: RunConfig, run_dir, branch: str | None = None) -> dict:
    from irfoundry.engine import evaluate

    if cfg.data.mix:  # every test set and their union
        return evaluate(run_dir, [f"{e['root']}:{e['test_split']}" for e in cfg.data.mix], split=None,
                        names=[e["name"] for e in cfg.data.mix], branch=branch)
    return evaluate(run_dir, cfg.data.root, split=cfg.data.test_split, branch=branch)


def _test_fields(test: dict) -> dict:
    return {
        "test_split": test["split"], "n_test": test["n_images"],
        **({"sets": {name: {k: m[k] for k in (*ROW_METRICS, "n_images")} for name, m in test["sets"].items()}}
           if "sets" in test else {}),
        **{k: None if test[k] is None else float(test[k]) for k in ROW_METRICS},
    }


def train_and_test(key: RunKey, cfg: RunConfig) -> dict[str, Any]:
    """Train one run (or continue it), evaluate its selected deployable network on the test split."""
    from irfoundry.engine import train

    run_dir = Path(cfg.trainer.out_dir) / cfg.trainer.run_name
    resume = _resumable(run_dir, cfg)
    if resume:
        log.info("continuing the interrupted run %s", run_dir)
    t0 = time.perf_counter()
    result = train(None, resume=run_dir) if resume else train(cfg)
    train_s = time.perf_counter() - t0
    test = _test(cfg, result["run_dir"])
    return {
        **key.as_dict(), "run_name": cfg.trainer.run_name, **_test_fields(test),
        "best_epoch": result["best_epoch"], "monitor": result["monitor"], "best_score": result["best_score"],
        "val_iou": (result["val_metrics"] or {}).get("val/iou"), "val": result["val_metrics"],
        **_epoch_costs(Path(result["run_dir"])), "train_seconds": train_s,
        "run_dir": result["run_dir"], **({"resumed": True} if resume else {}),
    }


def branch_row(key: RunKey, trained: dict, branch: str, cfg: RunConfig) -> dict[str, Any]:
    """The row of a derived arm: another evaluation branch of an already trained run (``trained``, its row)
    at the same selected checkpoint, on the same test split."""
    test = _test(cfg, trained["run_dir"], branch=branch)
    return {**trained, **key.as_dict(), "branch": branch, "of_arm": trained["arm"], **_test_fields(test)}


def run_study(
    spec: StudySpec,
    *,
    runs_dir: str | Path = "runs/studies",
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    datasets: Sequence[str] | None = None,
    hosts: Sequence[str] | None = None,
    arms: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Run (or continue) ``spec``'s plan; returns the results document (also written to ``out``).

    Args:
        spec: the study.
        runs_dir: folder of the run folders (one per run, named by ``spec.run_name``).
        out: results file, appended after every run and continued from.
        overrides: ``--set`` overrides applied to every run (recorded in the file).
        datasets, hosts, arms, seeds: a subset of the plan (``None``: the spec's; arms: ``default_arms``).
    """
    from irfoundry.bench.train import machine_info

    keys = spec.plan(datasets=datasets, hosts=hosts, arms=arms, seeds=seeds)
    # every config of the plan is checked before anything trains
    configs = {k: from_dict(merge_overrides(spec.run_config(k, Path(runs_dir) / spec.name), overrides)) for k in keys}
    doc = load_results(out) if out else {}
    recorded = {"spec": spec.to_dict(), "overrides": list(overrides)}
    if doc and {k: doc.get(k) for k in recorded} != recorded:
        raise ConfigError(f"{out} was made with another spec or other overrides; use another --out (nothing was "
                          "changed)")
    doc = doc or {"format": RESULTS_FORMAT, "study": spec.name, **recorded, "machine": machine_info(), "rows": []}
    rows = {RunKey(r["dataset"], r["host"], r["arm"], int(r["seed"])): r for r in doc["rows"]}
    for key in keys:
        if key not in rows:
            log.info("study %s: %s", spec.name, spec.name_of(key))
            rows[key] = train_and_test(key, configs[key])
            doc["rows"].append(rows[key])
            if out:
                write_json(doc, out)
        for derived, (arm, branch) in spec.branch_arms.items():
            dkey = RunKey(key.dataset, key.host, derived, key.seed)
            if arm == key.arm and dkey not in rows:
                rows[dkey] = branch_row(dkey, rows[key], branch, configs[key])
                doc["rows"].append(rows[dkey])
                if out:
                    write_json(doc, out)
    return doc


def join_results(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The union of results files of one spec and overrides (parallel workers that split the plan).

    A run found in two files is an error, not a silent pick; files of another spec or other overrides, or
    written by the old FDEP benchmark (no spec recorded: ``research/fdep/``), are refused.
    """
    merged: dict[str, Any] = {}
    seen: dict[RunKey, str] = {}
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"{path} does not exist")
        doc = load_results(path)
        if doc.get("format") != RESULTS_FORMAT:
            raise ConfigError(f"{path} is not a study results file ({RESULTS_FORMAT}); files of the former "
                              "'irfoundry bench fdep' are summarised by research/fdep/summarize_legacy.py")
        if merged and (doc.get("spec"), doc.get("overrides")) != (merged["spec"], merged["overrides"]):
            raise ConfigError(f"{path} was made with another spec or other overrides than {paths[0]}; only runs of "
                              "one study can be summarised together")
        if not merged:
            merged = {**doc, "rows": []}
        for r in doc["rows"]:
            key = RunKey(r["dataset"], r["host"], r["arm"], int(r["seed"]))
            if key in seen:
                raise ConfigError(f"run {'/'.join(map(str, key.as_dict().values()))} is in both {seen[key]} and {path}; "
                                  "keep one")
            seen[key] = str(path)
            merged["rows"].append(r)
    return merged
