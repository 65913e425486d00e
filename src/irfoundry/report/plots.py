"""Curve plots from a threshold sweep (``MultiThresholdCurves.compute()`` / ``summarize``'s dict).

Three figures, each drawn on a :class:`matplotlib.figure.Figure` (no pyplot, no backend switch, no rc
changes, so a user's matplotlib state is untouched; PNGs go through the Agg renderer, SVGs through the
SVG renderer):

* ``iou_niou_vs_threshold``: IoU and nIoU (percent) against the threshold;
* ``pd_vs_fa``: Pd (percent) against Fa (x 1e-6, log axis), points annotated with their threshold;
* ``roc``: pixel TPR against pixel FPR (log axis: IRSTD false-positive rates are 1e-6 .. 1e-3, a
  linear axis would squeeze the curve against x = 0), with ``roc_auc`` of
  :func:`irfoundry.metrics.roc_pr` (linear trapezoid with end points) when the dict has the PR keys.

Points that a log axis cannot show (Fa or FPR equal to 0, or NaN) are dropped and counted in the plot.
"""

from __future__ import annotations

import io
import os
import re
import secrets
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from irfoundry.errors import ConfigError

__all__ = ["PLOT_NAMES", "curve_figures", "curve_svgs", "save_curve_plots"]

#: figure names, in page order; files are ``NAME.png``
PLOT_NAMES = ("iou_niou_vs_threshold", "pd_vs_fa", "roc")
_REQUIRED = ("thresholds", "iou", "niou", "pd", "fa", "tpr", "fpr")


def _arrays(curves: Mapping[str, Any]) -> dict[str, np.ndarray]:
    missing = [k for k in _REQUIRED if k not in curves]
    if missing:
        raise ConfigError(
            f"curve plots need the keys {missing}; pass MultiThresholdCurves.compute() (or summarize()) output."
        )
    out = {k: np.atleast_1d(np.asarray(curves[k], dtype=np.float64)) for k in _REQUIRED}
    n = out["thresholds"].size
    bad = [k for k, v in out.items() if v.shape != (n,)]
    if bad:
        raise ConfigError(f"curves {bad} do not have one value per threshold ({n}); pass one sweep's dict.")
    return out


def _annotate(ax, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> None:
    """Label about six points with their threshold."""
    step = max(1, int(np.ceil(x.size / 6)))
    for i in range(0, x.size, step):
        ax.annotate(f"{t[i]:g}", (x[i], y[i]), textcoords="offset points", xytext=(4, 4), fontsize=7,
                    color="0.3")


def _log_x(ax, x: np.ndarray) -> None:
    """Log x axis with readable labels: 1/2/5 x 10^k ticks over short ranges, decades otherwise."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    ax.set_xscale("log")
    decades = float(np.log10(x.max() / x.min())) if x.size else 0.0
    ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0) if decades < 1.5 else (1.0,)))
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=7)


def _note_dropped(ax, n: int, what: str) -> None:
    if n:
        ax.text(0.02, 0.02, f"{n} threshold(s) with {what} = 0 not shown (log axis)", transform=ax.transAxes,
                fontsize=7, color="0.4")


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.6))
    fig.subplots_adjust(left=0.13, right=0.96, bottom=0.14, top=0.92)  # fixed margins: cheaper than a layout engine
    return fig


def curve_figures(curves: Mapping[str, Any]):
    """``{name: matplotlib.figure.Figure}`` for :data:`PLOT_NAMES` (see the module docstring)."""
    c = _arrays(curves)
    t = c["thresholds"]
    figs = {}

    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(t, 100 * c["iou"], marker="o", ms=3, label="IoU")
    ax.plot(t, 100 * c["niou"], marker="s", ms=3, label="nIoU")
    ax.set_xlabel("threshold (foreground: p > t)")
    ax.set_ylabel("percent")
    ax.set_title("IoU and nIoU vs threshold", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figs["iou_niou_vs_threshold"] = fig

    fig = _figure()
    ax = fig.add_subplot()
    fa6 = 1e6 * c["fa"]
    ok = np.isfinite(fa6) & (fa6 > 0) & np.isfinite(c["pd"])
    if ok.any():
        ax.plot(fa6[ok], 100 * c["pd"][ok], marker="o", ms=3)
        _annotate(ax, fa6[ok], 100 * c["pd"][ok], t[ok])
        _log_x(ax, fa6[ok])
    else:
        ax.text(0.5, 0.5, "no point with Fa > 0 and a defined Pd", ha="center", transform=ax.transAxes)
    _note_dropped(ax, int((np.isfinite(c["pd"]) & (fa6 == 0)).sum()), "Fa")
    ax.set_xlabel("Fa (x 1e-6, log scale)")
    ax.set_ylabel("Pd (percent)")
    ax.set_title("Pd vs Fa (labels: threshold)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    figs["pd_vs_fa"] = fig

    fig = _figure()
    ax = fig.add_subplot()
    ok = np.isfinite(c["fpr"]) & (c["fpr"] > 0) & np.isfinite(c["tpr"])
    label = None
    if all(k in curves for k in ("pixel_precision", "pixel_recall")):
        from irfoundry.metrics import roc_pr

        auc = roc_pr(curves)["roc_auc"]
        label = f"AUC {auc:.4f} (linear, with end points)"
    if ok.any():
        ax.plot(c["fpr"][ok], c["tpr"][ok], marker="o", ms=3, label=label)
        _annotate(ax, c["fpr"][ok], c["tpr"][ok], t[ok])
        _log_x(ax, c["fpr"][ok])
        if label:
            ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no point with FPR > 0", ha="center", transform=ax.transAxes)
    _note_dropped(ax, int((np.isfinite(c["tpr"]) & (c["fpr"] == 0)).sum()), "FPR")
    ax.set_xlabel("pixel FPR (log scale)")
    ax.set_ylabel("pixel TPR")
    ax.set_title("pixel ROC (labels: threshold)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    figs["roc"] = fig
    return figs


def save_curve_plots(curves: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``iou_niou_vs_threshold.png``, ``pd_vs_fa.png`` and ``roc.png`` into ``out_dir``.

    Args:
        curves: ``MultiThresholdCurves.compute()`` / ``summarize()`` dict (``(T,)`` arrays
            ``thresholds``, ``iou``, ``niou``, ``pd``, ``fa`` (fraction), ``tpr``, ``fpr``).
        out_dir: folder, created if needed.

    Returns:
        ``{name: path}`` for the names in :data:`PLOT_NAMES`. Each file is written atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fig in curve_figures(curves).items():
        path = out / f"{name}.png"
        tmp = out / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.png.tmp"
        try:
            with open(tmp, "xb") as f:
                fig.savefig(f, format="png", dpi=120, metadata={"Software": None})
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        paths[name] = path
    return paths


_ID = re.compile(r'\bid="([^"]+)"')


def _prefix_ids(svg: str, prefix: str) -> str:
    """Make every ``id`` (and its ``#id`` references) unique to this SVG, so several SVGs can share a page."""
    ids = set(_ID.findall(svg))
    if not ids:
        return svg
    pattern = re.compile(r'(id="|#)(' + "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
                         + r')(?=["\)])')
    return pattern.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}", svg)


def curve_svgs(curves: Mapping[str, Any]) -> dict[str, str]:
    """``{name: "<svg ...>...</svg>"}`` for inline use in HTML (no XML prolog, ids prefixed per figure,
    text drawn as paths so no font is needed)."""
    out = {}
    for name, fig in curve_figures(curves).items():
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        svg = buf.getvalue()
        svg = svg[svg.index("<svg"):]
        svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)  # RDF boilerplate
        out[name] = _prefix_ids(svg, f"{name}-")
    return out
