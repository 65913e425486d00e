"""Where a run's training time goes, epoch by epoch: seconds per batch of the epochs with and without a
once-per-epoch phase (semprior's outer phase, in the epoch's last step every ``outer_every`` epochs), read
from finished run folders (``RUN/logs/metrics.csv``: ``train/epoch_seconds`` and ``train/epoch_batches``).

    python benchmarks/epoch_phases.py runs/studies/pointsup/sirst_acm_semprior_s0 \\
        runs/studies/pointsup/sirst_acm_pal_softiou_s0 --every 2 --project 5

For every run: the epochs' median seconds per batch without the phase (``plain``), the phase's median
extra seconds (an epoch with it minus its batches at the plain rate), and with ``--project K`` the run's cost
per batch had the phase run every ``K`` epochs instead (its extra spread over ``K`` epochs of the run's
median length). Runs without the phase (PAL) print the plain rate only. A projection, not a measurement: it
assumes the phase's cost does not depend on how often it runs.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import yaml

from irfoundry.engine.logs import METRICS_LOG, read_rows


def epoch_costs(run_dir: Path) -> list[tuple[int, float, float]]:
    """``(epoch, seconds, batches)`` of every epoch the run logged."""
    rows = [r for r in read_rows(run_dir / METRICS_LOG) if r.get("train/epoch_seconds") and r.get("train/epoch_batches")]
    if not rows:
        raise SystemExit(f"{run_dir}: no train/epoch_batches in {METRICS_LOG} (a run from before they were logged)")
    return [(int(r["epoch"]), float(r["train/epoch_seconds"]), float(r["train/epoch_batches"])) for r in rows]


def phase_every(run_dir: Path, default: int) -> int | None:
    """The run's ``method.options.outer_every`` (``None``: a method without an outer phase)."""
    method = yaml.safe_load((run_dir / "config.yaml").read_text()).get("method", {})
    if method.get("name") != "semprior":
        return None
    return int((method.get("options") or {}).get("outer_every", default))


def summarise(run_dir: Path, default_every: int, project: int | None) -> dict:
    costs = epoch_costs(run_dir)
    every = phase_every(run_dir, default_every)
    plain = [s / b for e, s, b in costs if every is None or e % every]
    rate = statistics.median(plain)
    out = {"run": run_dir.name, "epochs": len(costs), "plain_s_per_batch": rate, "every": every}
    if every is not None:
        extra = statistics.median(s - b * rate for e, s, b in costs if e % every == 0)
        batches = statistics.median(b for _, _, b in costs)
        out["phase_extra_s"] = extra
        out["measured_s_per_batch"] = sum(s for _, s, _ in costs) / sum(b for _, _, b in costs)
        if project:
            out[f"projected_s_per_batch_every_{project}"] = rate + extra / (project * batches)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    parser.add_argument("--every", type=int, default=5, help="outer_every when the config omits it (5, released)")
    parser.add_argument("--project", type=int, default=None, help="also project the cost at this outer_every")
    args = parser.parse_args()
    for run in args.runs:
        row = summarise(run, args.every, args.project)
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
