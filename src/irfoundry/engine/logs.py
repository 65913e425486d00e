"""The run folder's epoch log ``logs/metrics.csv`` (Lightning's ``CSVLogger``), kept whole across ``--resume``.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so a resumed run would lose every
epoch logged before the interruption (and with them the epoch times and validation curves that reports and
``irfoundry study`` read). :func:`continued_metrics_log` sets those rows aside before the resumed fit,
in ``logs/metrics.before_resume.csv``, and writes them back in front of the new rows when the fit returns
or fails; an step logged again after the resume (everything after the resumed state) keeps only its new rows.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

METRICS_LOG = Path("logs") / "metrics.csv"
SET_ASIDE = "metrics.before_resume.csv"


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV log (``[]`` when the file does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` atomically, ``epoch`` and ``step`` first and the other columns sorted, as Lightning does."""
    keys = {k for r in rows for k in r}
    header = [k for k in ("epoch", "step") if k in keys] + sorted(keys - {"epoch", "step"})
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


@contextmanager
def continued_metrics_log(run_dir: Path, resuming: bool) -> Iterator[None]:
    """Around a resumed ``trainer.fit``: ``run_dir/logs/metrics.csv`` ends up holding the epochs before and
    after the interruption. A no-op for a fresh run. Rows set aside by an earlier resume that died before
    writing them back are kept too (they are the oldest)."""
    log_path = Path(run_dir) / METRICS_LOG
    aside = log_path.with_name(SET_ASIDE)
    if not resuming or not (log_path.is_file() or aside.is_file()):
        yield
        return
    before = _merge(read_rows(aside), read_rows(log_path))
    write_rows(aside, before)
    # the resumed fit's CSV writer starts a file of its own: one it finds is rewritten with the header of the
    # keys it has logged so far, and rows of other keys there would fail it (a resumed epoch without validation)
    log_path.unlink(missing_ok=True)
    try:
        yield
    finally:
        write_rows(log_path, _merge(before, read_rows(log_path)))
        aside.unlink()


def _merge(older: list[dict[str, str]], newer: list[dict[str, str]]) -> list[dict[str, str]]:
    """``older`` rows logged before the resumed state's step, then ``newer``: what the cut run logged after the
    state it resumes from is logged again by the resumed run (steps count on from the state)."""
    steps = [_step(r) for r in newer if _step(r) is not None]
    if not steps:
        return older + newer
    first = min(steps)
    return [r for r in older if (_step(r) if _step(r) is not None else -1) < first] + newer


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(row.get("step") or "")
    except ValueError:
        return None
