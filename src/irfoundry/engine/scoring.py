"""Scoring shared by ``irfoundry eval`` (a checkpoint) and ``irfoundry eval-maps`` (saved maps).

One pass over ``(id, prob, gt)`` items, one image at a time (memory constant in the number of images):
every image is swept once by the functional metric core (:func:`irfoundry.metrics.image_counts`) at the
union of the evaluation threshold and the curve thresholds, and its counters are added. The scalar
metrics at ``threshold`` and the curves are then read from the same summed counters; the counters at one
threshold do not depend on the other thresholds of the sweep, so the scalars equal those of
:class:`irfoundry.metrics.IRSTDMetrics` fed the same maps (tested).

HSE is always computed: on ``thresholds`` when given (``--thresholds``), otherwise on
``DEFAULT_HSE_THRESHOLDS`` (0.05, 0.10, ..., 0.95). Its cost, measured on the 2-core development CPU
with 86 real SIRST / NUDT-SIRST test masks and the perturbed predictions of :mod:`irfoundry.bench.reference.perturb`
(with and without extra background noise): 2.5 to 7.8 ms per image for the 19 or 20 thresholds against
0.7 to 1.6 ms for the evaluation threshold alone, i.e. a few seconds for a 664-image split.

Outputs written by :func:`write_outputs` into the output folder:

* ``metrics.json``: the metrics dict (see :func:`score_maps` for the keys);
* ``curves.csv`` (only when curves were requested): one row per threshold, columns :data:`CURVE_COLUMNS`;
* ``iou_niou_vs_threshold.png``, ``pd_vs_fa.png``, ``roc.png`` (with the curves), from
  :func:`irfoundry.report.plots.save_curve_plots`;
* ``report.html`` (``report=True``), from :func:`irfoundry.report.write_report`.

The report needs the final metrics before it streams its gallery, so it is a second pass over the
images: ``eval-maps`` reads the saved maps again, ``eval`` reads back the float32 maps it spooled to a
temporary folder inside the output folder during its single model pass (deleted afterwards). Either way
one image is held in memory at a time.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from irfoundry.data import DatasetSpec
from irfoundry.engine.metrics_text import summary_view
from irfoundry.errors import ConfigError, DataError
from irfoundry.jsonio import write_json
from irfoundry.metrics import (
    DEFAULT_HSE_THRESHOLDS,
    HSE_DEFINITION,
    REPORTED,
    Counters,
    MetricSettings,
    hse,
    image_counts,
    summarize,
)

__all__ = [
    "CURVE_COLUMNS",
    "REPORTED",
    "Scores",
    "parse_thresholds",
    "resolve_split",
    "score_maps",
    "write_curves_csv",
    "write_outputs",
]


#: columns of ``curves.csv``: float metrics, then the integer counters (``n_gt``, ``n_pixels``,
#: ``n_images`` repeat on every row)
CURVE_COLUMNS = (
    "threshold", "iou", "niou", "pd", "fa", "target_precision", "target_f1", "hiou", "tpr", "fpr",
    "pixel_precision", "tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels", "n_gt", "n_pixels", "n_images",
)

_MAX_THRESHOLDS = 1000
_FLAG = "--thresholds"
_HELP = "write START:STOP:STEP (e.g. 0.05:0.95:0.05) or a comma list (e.g. 0.1,0.3,0.5,0.7,0.9)"


def _bad(text: Any, why: str) -> ConfigError:
    return ConfigError(f"{_FLAG} {text!r}: {why}; {_HELP}.")


def _number(part: str, text: Any) -> float:
    try:
        return float(part)
    except ValueError:
        raise _bad(text, f"{part.strip()!r} is not a number") from None


def parse_thresholds(text: str | Sequence[float]) -> tuple[float, ...]:
    """Curve thresholds from ``START:STOP:STEP`` or a comma list (or an already numeric sequence).

    ``START:STOP:STEP`` includes ``STOP`` when it lies on the grid (within 1e-9 steps) and every value is
    rounded to 10 decimals, so ``"0.05:0.95:0.05"`` gives exactly :data:`DEFAULT_HSE_THRESHOLDS` (19
    values). The result must hold 2 to 1000 strictly increasing values in [0, 1].

    Raises:
        ConfigError: anything else; the message names ``--thresholds`` and shows both syntaxes.
    """
    if isinstance(text, str):
        s = text.strip()
        if not s:
            raise _bad(text, "empty")
        if ":" in s:
            parts = s.split(":")
            if len(parts) != 3:
                raise _bad(text, "a range needs exactly three parts START:STOP:STEP")
            start, stop, step = (_number(p, text) for p in parts)
            if not all(math.isfinite(v) for v in (start, stop, step)):
                raise _bad(text, "START, STOP and STEP must be finite")
            if step <= 0:
                raise _bad(text, "STEP must be positive")
            if stop <= start:
                raise _bad(text, "STOP must be greater than START")
            n = math.floor((stop - start) / step + 1e-9) + 1
            if n > _MAX_THRESHOLDS:
                raise _bad(text, f"{n} thresholds, at most {_MAX_THRESHOLDS} are allowed")
            values = [round(start + i * step, 10) for i in range(n)]
        else:
            values = [_number(p, text) for p in s.split(",")]
    else:
        try:
            values = [float(v) for v in text]
        except (TypeError, ValueError):
            raise _bad(text, "not a sequence of numbers") from None
    if len(values) < 2:
        raise _bad(text, "curves and HSE need at least 2 thresholds")
    if len(values) > _MAX_THRESHOLDS:
        raise _bad(text, f"{len(values)} thresholds, at most {_MAX_THRESHOLDS} are allowed")
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        raise _bad(text, f"every threshold must lie in [0, 1], got {values}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise _bad(text, f"thresholds must be strictly increasing, got {values}")
    return tuple(values)


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not (math.isfinite(t) and 0.0 <= t <= 1.0):
        raise ConfigError(f"--threshold must lie in [0, 1], got {threshold!r}.")
    return t


def resolve_split(data: str | Path | DatasetSpec, split: str | None = "test") -> DatasetSpec:
    """``data`` (``PATH`` or ``PATH:SPLIT``) with ``split`` filled in when ``data`` names none.

    Raises:
        DataError: no split in either.
    """
    spec = DatasetSpec.parse(data)
    if split is not None and spec.split is None:
        spec = DatasetSpec(spec.root, split)
    if spec.split is None:
        raise DataError(f"no split given for {spec.root}; pass --split NAME (e.g. test) or PATH:SPLIT")
    return spec


@dataclass
class Scores:
    """What :func:`score_maps` measured.

    Attributes:
        metrics: JSON-ready dict (Python numbers and lists); keys in :func:`score_maps`.
        curves: :func:`irfoundry.metrics.summarize` dict at the curve thresholds (``(T,)`` arrays incl.
            ``thresholds``), the same as ``MultiThresholdCurves(thresholds).compute()``.
        requested: ``True`` when the curve thresholds were given (``--thresholds``): then ``curves.csv`` and
            the plots are written; otherwise the curves are those of the default HSE grid.
        ids: image ids in scoring order.
        per_image: one row per image at the evaluation threshold (:data:`PER_IMAGE_COLUMNS`).
    """

    metrics: dict[str, Any]
    curves: dict[str, Any]
    requested: bool
    ids: list[str]
    per_image: list[dict[str, Any]] = field(default_factory=list)


def _json_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_json_value(x) for x in v.tolist()]
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    return v


def score_maps(
    items: Iterable[tuple[str, np.ndarray, np.ndarray]],
    *,
    threshold: float = 0.5,
    thresholds: str | Sequence[float] | None = None,
    settings: MetricSettings | None = None,
    group_of: Callable[[str], str] | None = None,
) -> Scores:
    """Score probability maps against masks in one pass.

    Args:
        items: ``(id, prob, gt)`` per image, consumed once, one at a time: ``prob`` an ``H x W`` float map
            in [0, 1] (float32 / float64; 8-bit maps divided by 255), ``gt`` the ``H x W`` bool mask. Images
            may differ in size.
        threshold: the evaluation threshold of the scalar metrics (foreground iff ``p > threshold``).
        thresholds: curve / HSE thresholds (``START:STOP:STEP``, a comma list, or numbers; see
            :func:`parse_thresholds`); ``None`` uses :data:`DEFAULT_HSE_THRESHOLDS`, so ``hse`` is always
            present, but ``Scores.requested`` is then ``False`` (no ``curves.csv`` / plots).
        settings: metric choices (default: DNANet greedy matching, 8-connectivity, distance 3).
        group_of: the set an image id belongs to: the metrics then also hold ``sets`` = ``{set: metrics}``,
            each computed from that set's images alone (the top level is the union of all of them).

    Returns:
        :class:`Scores` whose ``metrics`` holds ``iou``, ``niou``, ``pd``, ``fa`` (fraction; x 1e6 for the
        usual print), ``target_precision``, ``target_f1`` at ``threshold``; ``hse`` (percent, scalar),
        ``hse_definition``, ``hse_detail`` (``s_pix``, ``s_tgt``, ``fa_ref``, the definition versions and
        the five curves it integrates as lists), ``thresholds`` (the curve grid), ``threshold``,
        ``n_images``, ``n_targets``, ``n_predicted_targets``, ``images_with_false_alarm``,
        ``false_alarm_image_share``, ``niou_empty`` (the nIoU score of an image with empty GT and
        prediction) and ``definition``. A metric that is undefined on these images (Pd and HSE of a split
        without targets, target precision without predictions) is ``None`` and ``undefined`` says why.

    Raises:
        DataError: an empty ``items``, or a map / mask the metric core refuses (the message names the id).
        ConfigError: a bad ``threshold`` or ``thresholds``.
    """
    s = settings or MetricSettings()
    t_eval = _check_threshold(threshold)
    requested = thresholds is not None
    grid = np.asarray(parse_thresholds(thresholds) if requested else DEFAULT_HSE_THRESHOLDS, dtype=np.float64)
    sweep = np.union1d(grid, [t_eval])  # sorted, unique
    at_eval = int(np.searchsorted(sweep, t_eval))
    total = Counters.zeros(sweep.size)
    ids: list[str] = []
    per_image: list[dict[str, Any]] = []
    sets: dict[str, tuple[Counters, list[dict[str, Any]]]] = {}
    for sample_id, prob, gt in items:
        try:
            c = image_counts(prob, gt, sweep, settings=s)
        except DataError as exc:
            raise DataError(f"image {sample_id!r}: {exc}") from exc
        total.add_image(c, empty_niou=s.empty_niou)
        ids.append(str(sample_id))
        per_image.append(_image_row(str(sample_id), c, at_eval))
        if group_of is not None:
            part = sets.setdefault(group_of(str(sample_id)), (Counters.zeros(sweep.size), []))
            part[0].add_image(c, empty_niou=s.empty_niou)
            part[1].append(per_image[-1])
    if not ids:
        raise DataError("nothing to score: the split resolved to no images.")
    metrics, curves = _metrics_of(total, per_image, sweep, grid, t_eval, s)
    if group_of is not None:
        metrics["sets"] = {name: _metrics_of(t, rows, sweep, grid, t_eval, s)[0] for name, (t, rows) in sets.items()}
    return Scores(metrics=metrics, curves=curves, requested=requested, ids=ids, per_image=per_image)


def _metrics_of(total: Counters, per_image: list[dict[str, Any]], sweep: np.ndarray, grid: np.ndarray, t_eval: float,
                s: MetricSettings) -> tuple[dict[str, Any], dict]:
    """The metrics dict of :func:`score_maps` (and the curves) from summed counters of ``per_image``'s images."""
    at_eval = int(np.searchsorted(sweep, t_eval))
    point = summarize(_select(total, [at_eval]), sweep[[at_eval]], settings=s)
    curves = summarize(_select(total, np.searchsorted(sweep, grid)), grid, settings=s)
    h = hse(curves)
    metrics: dict[str, Any] = {k: float(point[k][0]) for k in REPORTED}
    metrics["hse"] = float(h["hse"])
    undefined = _undefined(metrics, total, at_eval, len(per_image), t_eval)
    metrics.update({k: None for k in undefined})
    if undefined:
        metrics["undefined"] = undefined
    fa_images = sum(r["false_alarm_pixels"] > 0 for r in per_image)
    metrics["n_targets"] = int(total.n_gt)
    metrics["n_predicted_targets"] = int(total.n_pred[at_eval])
    metrics["images_with_false_alarm"] = int(fa_images)
    metrics["false_alarm_image_share"] = fa_images / len(per_image)
    metrics["niou_empty"] = float(s.empty_niou)
    metrics["hse_definition"] = HSE_DEFINITION
    metrics["hse_detail"] = {
        k: _json_value(h[k])
        for k in ("s_pix", "s_tgt", "fa_ref", "definition", "metrics_definition", "thresholds", "iou", "niou",
                  "pd", "fa")
    }
    metrics["thresholds"] = [float(x) for x in grid]
    metrics["threshold"] = t_eval
    metrics["n_images"] = len(per_image)
    metrics["definition"] = point["definition"]
    return metrics, curves


#: columns of ``per_image.csv`` (at the evaluation threshold)
PER_IMAGE_COLUMNS = ("id", "n_targets", "hits", "predicted_targets", "false_alarm_pixels", "iou")


def _image_row(sample_id: str, c, k: int) -> dict[str, Any]:
    union = int(c.tp[k] + c.fp[k] + c.fn[k])
    return {"id": sample_id, "n_targets": int(c.n_gt), "hits": int(c.hits[k]), "predicted_targets": int(c.n_pred[k]),
            "false_alarm_pixels": int(c.fa_pixels[k]), "iou": (int(c.tp[k]) / union) if union else None}


def _undefined(metrics: dict[str, Any], total: Counters, k: int, n_images: int, t: float) -> dict[str, str]:
    """Why each undefined metric is undefined (its value becomes ``null``): never a silent NaN."""
    why = {}
    if total.n_gt == 0:
        why["pd"] = (f"no ground-truth target in the {n_images} images: detection needs targets (Fa and the "
                     "false alarms per image are defined)")
        why["hse"] = "HSE's target part integrates Pd, which is undefined without targets (hse_detail.s_pix is defined)"
    if total.n_pred[k] == 0:
        why["target_precision"] = f"no predicted target at threshold {t:g}"
    if total.n_gt == 0 and total.n_pred[k] == 0:
        why["target_f1"] = "neither ground-truth nor predicted targets"
    if int(total.tp[k] + total.fp[k] + total.fn[k]) == 0:
        why["iou"] = "no target pixel labelled or predicted in the split"
    return {key: reason for key, reason in why.items() if metrics.get(key) is None or metrics[key] != metrics[key]}

def _select(c: Counters, index: Sequence[int] | np.ndarray) -> Counters:
    """The counters at a subset of the sweep's thresholds (every counter is per threshold)."""
    idx = np.asarray(index, dtype=np.int64)
    arrays = {k: getattr(c, k)[idx].copy() for k in ("tp", "fp", "fn", "tn", "niou_sum", "hits", "n_pred",
                                                      "fa_pixels", "pair_iou_sum")}
    return Counters(**arrays, n_gt=c.n_gt, n_pixels=c.n_pixels, n_images=c.n_images)


def _csv_cell(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return repr(float(v))  # shortest round-trip text; nan for undefined ratios
    return str(int(v))


def write_curves_csv(curves: dict[str, Any], path: str | Path) -> Path:
    """Write ``curves`` (a :func:`~irfoundry.metrics.summarize` dict) as CSV, one row per threshold.

    Columns :data:`CURVE_COLUMNS`; floats are written with full precision (``repr``), NaN as ``nan``.
    """
    t = np.asarray(curves["thresholds"], dtype=np.float64)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CURVE_COLUMNS)
    for k in range(t.size):
        row = []
        for col in CURVE_COLUMNS:
            v = t[k] if col == "threshold" else curves[col]
            row.append(_csv_cell(v[k] if isinstance(v, np.ndarray) else v))
        w.writerow(row)
    return _write_text(Path(path), buf.getvalue())


def write_per_image_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write :func:`score_maps`' per-image rows as CSV (empty cell for an undefined IoU)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PER_IMAGE_COLUMNS)
    for r in rows:
        w.writerow(["" if r[c] is None else (repr(r[c]) if isinstance(r[c], float) else r[c]) for c in PER_IMAGE_COLUMNS])
    return _write_text(Path(path), buf.getvalue())


def _write_text(path: Path, text: str) -> Path:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # open() keeps the umask's permissions
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_outputs(
    out: str | Path,
    result: dict[str, Any],
    scores: Scores,
    *,
    report_images: Callable[[], Iterable[Any]] | None = None,
    title: str = "irfoundry evaluation",
) -> dict[str, Path]:
    """Write ``metrics.json`` (= ``result``), and with requested curves ``curves.csv`` and the three plots,
    and with ``report_images`` ``report.html`` into ``out``.

    Args:
        out: output folder (created).
        result: the dict to save as ``metrics.json``.
        scores: :func:`score_maps`' result (curves and whether they were requested).
        report_images: a callable returning a fresh iterable of :class:`irfoundry.report.ImageRecord`
            (consumed once, streaming); ``None``: no report. The report shows the curves whenever they
            were computed (the default HSE grid when no thresholds were given).
        title: report title.

    Returns:
        ``{name: path}`` of the files written (``metrics``, ``curves``, the plot names, ``report``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"metrics": write_json(result, out / "metrics.json")}
    if scores.per_image:
        written["per_image"] = write_per_image_csv(scores.per_image, out / "per_image.csv")
    if scores.requested:
        written["curves"] = write_curves_csv(scores.curves, out / "curves.csv")
        from irfoundry.report.plots import save_curve_plots

        written.update(save_curve_plots(scores.curves, out))
    if report_images is not None:
        from irfoundry.report import write_report

        written["report"] = write_report(
            out / "report.html",
            title=title,
            metrics=summary_view(result),
            curves=scores.curves,
            images=report_images(),
            threshold=float(result["threshold"]),
        )
    return written
