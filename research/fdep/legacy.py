"""Readers of the FDEP gain study's results files written by the former ``irfoundry bench fdep``.

Pinned to the files they produced and read: ``docs/results/fdep_gain_*.json`` and
``docs/results/fdep_epoch_cost*.json`` (commits 835e5e8..b29bcde). New studies are run by
``irfoundry study run fdep_gain`` and summarised by ``irfoundry study summary``; these functions only keep
the historical files readable, with the corrections and joins they were made with:

* :data:`EPOCH_TIMER_FIX` / :func:`recount_epochs`: before commit 081268d a validated epoch's
  ``train/epoch_seconds`` included its validation; the files were recounted over unvalidated epochs;
* :data:`LATER_SETTINGS`: ``kd_weight`` became a setting after the first files were written (they imply 1.0);
* :func:`branch_gaps`: main minus lightweight val IoU of every FDEP run, read from the run folders.

Not installed with the package: run these from a source checkout (``python research/fdep/...``).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from irfoundry.engine.logs import METRICS_LOG, read_rows
from irfoundry.errors import ConfigError
from irfoundry.study.report import format_markdown, format_table, summarize

#: settings keys added after results were first written, with the value older files implied
LATER_SETTINGS = {"kd_weight": 1.0}
EPOCH_TIMER_FIX = (
    "epoch_seconds recounted from each run's metrics.csv over the epochs without validation "
    "(python benchmarks/fdep_recount_epochs.py): before commit 081268d train/epoch_seconds of a validated "
    "epoch included its validation; the logged values are kept as epoch_seconds_logged"
)
ARMS = ("host", "fdep", "fdep_random", "fdep_kd")
COMPARISONS = (("fdep", "host"), ("fdep_random", "host"), ("fdep", "fdep_random"), ("fdep_kd", "host"),
               ("fdep_kd", "fdep"))
PAIRED = ("iou", "hse")
METRICS = ("iou", "niou", "pd", "fa", "hse")


def epoch_seconds(run_dir: Path, skip_validated: bool = False) -> float | None:
    """Median ``train/epoch_seconds`` of a run (``skip_validated``: over the epochs without validation)."""
    rows = read_rows(run_dir / METRICS_LOG)
    validated = {r.get("epoch") for r in rows if r.get("val/iou")} if skip_validated else set()
    values = [float(r["train/epoch_seconds"]) for r in rows
              if r.get("train/epoch_seconds") and r.get("epoch") not in validated]
    return statistics.median(values) if values else None


def recount_epochs(result: dict) -> dict:
    """``result`` with every row's ``epoch_seconds`` recounted over its unvalidated epochs (idempotent)."""
    if EPOCH_TIMER_FIX in result.get("corrections", []):
        return result
    rows = []
    for row in result["rows"]:
        recounted = epoch_seconds(Path(row["run_dir"]), skip_validated=True)
        if recounted is None:
            raise ConfigError(f"no training log under {row['run_dir']} to recount {row['dataset']} {row['host']} "
                              f"{row['arm']} seed {row['seed']} from; run the recount where the run folders are")
        rows.append({**row, "epoch_seconds": recounted, "epoch_seconds_logged": row.get("epoch_seconds")})
    return {**result, "rows": rows, "corrections": [*result.get("corrections", []), EPOCH_TIMER_FIX]}


def branch_gaps(result: dict) -> list[dict]:
    """Per dataset x host x FDEP arm: main minus lightweight val IoU (last validation per seed, mean over
    validations, how many the fused branch led), from the run folders the rows name."""
    groups: dict[tuple, list[list[float]]] = {}
    for row in result["rows"]:
        if row["arm"] == "host":
            continue
        path = Path(row["run_dir"]) / METRICS_LOG
        if not path.is_file():
            raise ConfigError(f"no training log {path} for {row['dataset']} {row['host']} {row['arm']} seed "
                              f"{row['seed']}; run this where the study's run folders are")
        gaps = [float(r["val_main/iou"]) - float(r["val/iou"]) for r in read_rows(path)
                if r.get("val/iou") and r.get("val_main/iou")]
        if gaps:
            groups.setdefault((row["dataset"], row["host"], row["arm"]), []).append(gaps)
    return [{"dataset": ds, "host": host, "arm": arm, "seeds": len(runs), "last": [g[-1] for g in runs],
             "mean_gap": statistics.mean(statistics.mean(g) for g in runs),
             "ahead": sum(x > 0 for g in runs for x in g), "validations": sum(len(g) for g in runs)}
            for (ds, host, arm), runs in sorted(groups.items())]


def merge(paths: list[Path]) -> dict:
    """The union of legacy files of one budget (settings equal up to :data:`LATER_SETTINGS`, same corrections)."""
    merged: dict = {}
    seen: dict[tuple, Path] = {}
    for path in paths:
        doc = json.loads(Path(path).read_text())
        settings = {**LATER_SETTINGS, **doc.get("settings", {})}
        if merged and (settings, doc.get("corrections", [])) != (merged["settings"], merged["corrections"]):
            raise ConfigError(f"{path} has other settings or corrections than {paths[0]}; not joined")
        merged.setdefault("settings", settings)
        merged.setdefault("corrections", doc.get("corrections", []))
        for r in doc["rows"]:
            key = (r["dataset"], r["host"], r["arm"], r["seed"])
            if key in seen:
                raise ConfigError(f"run {'/'.join(map(str, key))} is in both {seen[key]} and {path}")
            seen[key] = path
            merged.setdefault("rows", []).append(r)
    return merged


def summary_text(doc: dict, markdown: bool = False) -> str:
    """The tables of a legacy results document, by the study report (the same statistics as before)."""
    summary = summarize(doc["rows"], COMPARISONS, PAIRED, METRICS, "host", ARMS)
    if markdown:
        return format_markdown(summary, metrics=METRICS, paired=PAIRED)
    lines = [format_table(summary, metrics=METRICS, paired=PAIRED, title=f"settings: {doc['settings']}")]
    return "\n".join(lines + [f"correction: {c}" for c in doc.get("corrections", [])])


def main(argv: list[str] | None = None) -> int:
    """``python research/fdep/legacy.py [--markdown] RESULTS.json ...``: the summary of legacy files."""
    args = sys.argv[1:] if argv is None else argv
    markdown = "--markdown" in args
    paths = [Path(a) for a in args if a != "--markdown"]
    if not paths:
        print("usage: python research/fdep/legacy.py [--markdown] RESULTS.json [RESULTS.json ...]", file=sys.stderr)
        return 2
    print(summary_text(merge(paths), markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
