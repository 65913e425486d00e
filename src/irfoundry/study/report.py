"""Summaries of a study's rows: per arm mean +/- std over seeds, paired comparisons, Markdown tables.

``summarize(rows, comparisons, paired)`` groups rows by dataset x host x arm; ``entry["paired"][reference]
[metric]`` is :func:`~irfoundry.study.stats.paired_difference` of ``arm - reference`` over the seeds both
arms ran. Collapsed runs (no validation of the selected network predicted a target: selection score 0) stay in every mean -- dropping them would favour whichever arm collapses more -- and are listed so a
reader can see what drives a difference. Values are printed as the field prints them: IoU / nIoU / Pd in
percent, Fa x 1e-6, HSE in percent.
"""

from __future__ import annotations

from typing import Any, Sequence

from irfoundry.engine.metrics_text import PRINTED
from irfoundry.study.stats import mean_std, paired_difference

__all__ = ["collapsed", "format_markdown", "format_table", "summarize"]

#: print scale and label of each row metric, as ``irfoundry eval`` prints them
SCALE = {k: (scale, label + unit) for k, (label, scale, unit) in PRINTED.items()}


def collapsed(row: dict) -> bool:
    """A run that never left the all-background start: its selected network found no target on val (selection
    score 0: val IoU, or click F1 for a point-supervised run; files before ``best_score`` carry ``val_iou``)."""
    score = row.get("best_score", row.get("val_iou"))
    return score is not None and score <= 0.0


def summarize(rows: Sequence[dict], comparisons: Sequence[Sequence[str]], paired: Sequence[str] = ("iou", "hse"),
              metrics: Sequence[str] = ("iou", "niou", "pd", "fa", "hse"), reference: str | None = None,
              arm_order: Sequence[str] = ()) -> list[dict]:
    """Per dataset x host x arm: ``seeds``, ``collapsed`` seeds, mean / std of every metric and of the epoch
    time, the paired comparisons, ``epoch_ratio`` (per-seed median epoch time over the ``reference`` arm's) and
    ``step_ratio`` (the same of the seconds per training batch: fair where epochs differ in length)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["host"], r["arm"]), []).append(r)
    order = list(arm_order)

    def listing(item: tuple) -> tuple:
        ds, host, arm = item
        return ds, host, order.index(arm) if arm in order else len(order), arm

    out = []
    for ds, host, arm in sorted(groups, key=listing):
        rs = groups[(ds, host, arm)]
        entry: dict[str, Any] = {"dataset": ds, "host": host, "arm": arm, "seeds": sorted(r["seed"] for r in rs),
                                 "collapsed": sorted(r["seed"] for r in rs if collapsed(r)), "paired": {}}
        for k in (*metrics, "epoch_seconds", "step_seconds"):
            entry[k] = mean_std([r.get(k) for r in rs])
        for ref in (b for a, b in comparisons if a == arm):
            base = {r["seed"]: r for r in groups.get((ds, host, ref), [])}
            pairs = [(r, base[r["seed"]]) for r in rs if r["seed"] in base]
            if pairs:
                entry["paired"][ref] = {k: paired_difference([r[k] - b[k] for r, b in pairs
                                                              if r.get(k) is not None and b.get(k) is not None])
                                        for k in paired}
        base = {r["seed"]: r for r in groups.get((ds, host, reference), [])} if reference else {}
        for cost in ("epoch", "step"):
            k = f"{cost}_seconds"
            ratios = [r[k] / base[r["seed"]][k] for r in rs
                      if arm != reference and r["seed"] in base and r.get(k) and base[r["seed"]].get(k)]
            if ratios:
                entry[f"{cost}_ratio"] = mean_std(ratios)
        out.append(entry)
    return out


def _pm(ms: Sequence[float], scale: float, digits: int = 2) -> str:
    m, s = ms
    return "n/a" if m != m else f"{m * scale:.{digits}f} +/- {s * scale:.{digits}f}"


def _ci(p: dict, scale: float, sep: str) -> str:
    return sep.join(f"{v * scale:+.2f}" if v == v else "n/a" for v in p["ci"])


def verdicts(summary: Sequence[dict], paired: Sequence[str]) -> list[str]:
    """One line per comparison: the paired differences and whether they clear the seed spread."""
    lines = []
    for e in summary:
        for ref, by_metric in e["paired"].items():
            parts = []
            for k in paired:
                scale, label = SCALE[k]
                p = by_metric[k]
                parts.append(f"d{label} {p['mean'] * scale:+.2f} (95% CI {_ci(p, scale, '..')}, wins {p['wins']}/{p['n']}): "
                             f"{'BEYOND spread' if p['beyond_spread'] else 'within spread'}")
            lines.append(f"{e['dataset']:<11} {e['host']:<8} {e['arm']} - {ref}: " + "; ".join(parts))
    return lines


def format_table(summary: Sequence[dict], *, metrics: Sequence[str], paired: Sequence[str], title: str = "") -> str:
    """Plain-text table: one line per arm, then the paired comparisons."""
    head = f"{'dataset':<11} {'host':<8} {'arm':<12} {'n':>2} {'dead':>4} " + " ".join(
        f"{SCALE[m][1]:>17}" for m in metrics) + f" {'epoch x ref':>11} {'step x ref':>10}"
    lines = ([title] if title else []) + [head]
    for e in summary:
        ratio, step = (f"{e[k][0]:.2f}" if k in e else "-" for k in ("epoch_ratio", "step_ratio"))
        lines.append(f"{e['dataset']:<11} {e['host']:<8} {e['arm']:<12} {len(e['seeds']):>2} {len(e['collapsed']):>4} "
                     + " ".join(f"{_pm(e[m], SCALE[m][0]):>17}" for m in metrics) + f" {ratio:>11} {step:>10}")
    dead = [f"{e['dataset']} {e['host']} {e['arm']} seed {', '.join(map(str, e['collapsed']))}"
            for e in summary if e["collapsed"]]
    if dead:
        lines += ["", "dead = runs that never predicted a target on val (kept in every mean): " + "; ".join(dead)]
    lines_v = verdicts(summary, paired)
    if lines_v:
        lines += ["", "paired per-seed differences (test split; beyond spread = the 95% CI of the mean lies above 0):",
                  *lines_v]
    return "\n".join(lines)


def format_markdown(summary: Sequence[dict], *, metrics: Sequence[str], paired: Sequence[str]) -> str:
    """The summary as two Markdown tables (per arm; paired comparisons), for pasting into docs unchanged."""
    steps = any("step_ratio" in e for e in summary)  # results files from before step_seconds print as they did
    lines = ["| data | host | arm | seeds | dead | " + " | ".join(SCALE[m][1] for m in metrics)
             + (" | step x ref |" if steps else " |"), "|---" * (5 + len(metrics) + steps) + "|"]
    for e in summary:
        cells = [_pm(e[m], SCALE[m][0], 0 if m == "fa" else 2) for m in metrics]
        if steps:
            cells.append(_pm(e["step_ratio"], 1.0) if "step_ratio" in e else "-")
        lines.append(f"| {e['dataset']} | {e['host']} | {e['arm']} | {len(e['seeds'])} | {len(e['collapsed'])} | "
                     + " | ".join(cells) + " |")
    header = " | ".join(f"d{SCALE[k][1]} (95% CI) | wins" for k in paired)
    lines += ["", f"| data | host | comparison | {header} | beyond spread ({' / '.join(SCALE[k][1] for k in paired)}) |",
              "|---" * (4 + 2 * len(paired)) + "|"]
    for e in summary:
        for ref, by_metric in e["paired"].items():
            cells = []
            for k in paired:
                scale = SCALE[k][0]
                p = by_metric[k]
                cells += [f"{p['mean'] * scale:+.2f} ({_ci(p, scale, ' .. ')})", f"{p['wins']}/{p['n']}"]
            verdict = " / ".join("yes" if by_metric[k]["beyond_spread"] else "no" for k in paired)
            lines.append(f"| {e['dataset']} | {e['host']} | {e['arm']} - {ref} | {' | '.join(cells)} | {verdict} |")
    return "\n".join(lines)
