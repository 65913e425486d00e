"""Study statistics: paired differences, their interval and the "beyond spread" verdict; the summary tables."""

from __future__ import annotations

import math

import pytest

from irfoundry.study import format_markdown, format_table, paired_difference, summarize

COMPARISONS = [["fdep", "host"], ["fdep_random", "host"], ["fdep", "fdep_random"], ["fdep_kd", "host"],
               ["fdep_kd", "fdep"]]
METRICS = ["iou", "niou", "pd", "fa", "hse"]
ARMS = ["host", "fdep", "fdep_random", "fdep_kd"]


def _summary(rows):
    return summarize(rows, COMPARISONS, ["iou", "hse"], METRICS, "host", ARMS)


def _table(rows):
    return format_table(_summary(rows), metrics=METRICS, paired=["iou", "hse"])


def test_paired_difference_matches_a_paired_t_interval():
    p = paired_difference([0.02, 0.04, 0.06])
    assert p["n"] == 3 and p["wins"] == 3
    assert p["mean"] == pytest.approx(0.04) and p["std"] == pytest.approx(0.02)
    half = 4.302653 * 0.02 / math.sqrt(3)  # t(0.975, 2) = 4.302653
    assert p["ci"] == pytest.approx((0.04 - half, 0.04 + half), abs=1e-6)
    assert p["ci"][0] < 0 and not p["beyond_spread"]  # three seeds this spread: not beyond it


def test_paired_difference_beyond_spread_needs_the_whole_interval_above_zero():
    assert paired_difference([0.05, 0.051, 0.049, 0.05])["beyond_spread"]
    assert not paired_difference([-0.05, -0.051, -0.049])["beyond_spread"]  # consistent loss
    one = paired_difference([0.3])
    assert one["n"] == 1 and not one["beyond_spread"] and all(math.isnan(v) for v in one["ci"])
    assert paired_difference([float("nan"), 0.1, 0.1])["n"] == 2  # NaN seeds are dropped, not averaged


def _row(arm: str, seed: int, iou: float, hse: float) -> dict:
    return {"dataset": "sirst", "host": "acm", "arm": arm, "seed": seed, "iou": iou, "niou": iou, "pd": 0.9,
            "fa": 1e-4, "hse": hse, "epoch_seconds": {"host": 2.0}.get(arm, 3.0), "val_iou": iou,
            "step_seconds": {"host": 0.1}.get(arm, 0.13)}


def test_summarize_pairs_by_seed_for_every_comparison():
    rows = [_row("host", s, 0.30 + 0.01 * s, 20.0) for s in (0, 1, 2)]
    rows += [_row("fdep", s, 0.40 + 0.01 * s, 21.0 + s) for s in (0, 1, 2)]
    rows += [_row("fdep_random", s, 0.35, 20.0) for s in (2, 1)]  # seed 0 missing: pairs use seeds 1, 2 only
    by_arm = {e["arm"]: e for e in _summary(rows)}
    fdep = by_arm["fdep"]["paired"]
    assert fdep["host"]["iou"]["diffs"] == pytest.approx([0.1, 0.1, 0.1]) and fdep["host"]["iou"]["beyond_spread"]
    assert fdep["host"]["hse"]["diffs"] == pytest.approx([1.0, 2.0, 3.0])
    assert fdep["fdep_random"]["iou"]["n"] == 2  # the prior's own effect, over the shared seeds
    assert set(by_arm["fdep_random"]["paired"]) == {"host"} and by_arm["host"]["paired"] == {}
    assert by_arm["fdep"]["epoch_ratio"][0] == pytest.approx(1.5)
    assert by_arm["fdep"]["step_ratio"][0] == pytest.approx(1.3) and "step_ratio" not in by_arm["host"]
    rows[-1] = {k: v for k, v in rows[-1].items() if k != "step_seconds"}  # a row from before step_seconds
    assert {e["arm"]: e for e in _summary(rows)}["fdep_random"]["step_ratio"][0] == pytest.approx(1.3)
    table = _table(rows)
    assert "1.30" in table.splitlines()[2]  # fdep's line: epoch x ref 1.50, step x ref 1.30
    assert "fdep - host: dIoU +10.00" in table and "BEYOND spread" in table
    assert "fdep - fdep_random" in table and "fdep_random - host" in table


def test_summarize_lists_collapsed_runs_and_keeps_them_in_the_mean():
    rows = [_row("host", 0, 0.4, 30.0), _row("host", 1, 0.0, 0.0), _row("fdep", 0, 0.4, 30.0), _row("fdep", 1, 0.4, 30.0)]
    by_arm = {e["arm"]: e for e in _summary(rows)}
    assert by_arm["host"]["collapsed"] == [1] and by_arm["fdep"]["collapsed"] == []
    assert by_arm["host"]["iou"][0] == pytest.approx(0.2)
    assert "acm host seed 1" in _table(rows)


def test_markdown_summary_has_every_arm_and_comparison_in_the_field_s_units():
    rows = [_row("host", s, 0.3, 20.0 + s) for s in (0, 1)] + [_row("fdep", s, 0.35 + 0.01 * s, 21.0) for s in (0, 1)]
    rows += [_row("fdep_kd", s, 0.36, 22.0) for s in (0, 1)]
    table = format_markdown(_summary(rows), metrics=METRICS, paired=["iou", "hse"])
    assert table.startswith("| data | host | arm |") and "| sirst | acm | fdep | 2 | 0 | 35.50 +/- 0.71 |" in table
    assert table.splitlines()[0].endswith("| step x ref |") and "| 1.30 +/- 0.00 |" in table
    assert table.splitlines()[2].endswith("| - |")  # the reference arm
    old = [{k: v for k, v in r.items() if k != "step_seconds"} for r in rows]  # rows from before step_seconds
    assert "step x ref" not in format_markdown(_summary(old), metrics=METRICS, paired=["iou", "hse"])
    assert "| 100 +/- 0 |" in table  # Fa x1e-6
    assert "| sirst | acm | fdep - host | +5.50 (" in table and "| 2/2 |" in table
    assert [e["arm"] for e in _summary(rows)] == ["host", "fdep", "fdep_kd"]
    assert "| sirst | acm | fdep_kd - fdep |" in table
