"""Evaluation reports: one self-contained HTML page (metrics table, curves, per-image error gallery)
and PNG / SVG curve plots.

API::

    from irfoundry.report import ImageRecord, write_report, save_curve_plots
    write_report("eval/report.html", title="ACM on SIRST test", metrics=metrics, curves=curves,
                 images=(ImageRecord(id, image_hw, mask_hw, prob_hw) for ...), threshold=0.5)
    save_curve_plots(curves, "eval/")   # iou_niou_vs_threshold.png, pd_vs_fa.png, roc.png

``metrics``: e.g. ``IRSTDMetrics.compute()``; ``curves``: ``MultiThresholdCurves.compute()``. The
gallery's missed targets and false alarms come from :func:`irfoundry.metrics.match_targets`, so they
agree with Pd / Fa computed with the same settings. Details: :mod:`irfoundry.report.html`,
:mod:`irfoundry.report.plots`.
"""

from irfoundry.report.html import ImageRecord, render_panel, write_report
from irfoundry.report.plots import PLOT_NAMES, curve_svgs, save_curve_plots

__all__ = ["ImageRecord", "write_report", "render_panel", "PLOT_NAMES", "curve_svgs", "save_curve_plots"]
