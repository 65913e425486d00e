"""The FDEP gain benchmark's statistics: paired differences, their interval and the "beyond spread" verdict."""

from __future__ import annotations

import json
import math

import pytest

from irfoundry.bench.fdep import format_table, paired_difference, summarize


def test_paired_difference_matches_a_paired_t_interval():
    p = paired_difference([0.02, 0.04, 0.06])
    assert p["n"] == 3 and p["wins"] == 3
    assert p["mean"] == pytest.approx(0.04) and p["std"] == pytest.approx(0.02)
    # t(0.975, 2) = 4.302653: half width 4.302653 * 0.02 / sqrt(3)
    half = 4.302653 * 0.02 / math.sqrt(3)
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
            "fa": 1e-4, "hse": hse, "epoch_seconds": {"host": 2.0}.get(arm, 3.0), "val_iou": iou}


def test_summarize_pairs_by_seed_for_every_comparison():
    rows = [_row("host", s, 0.30 + 0.01 * s, 20.0) for s in (0, 1, 2)]
    rows += [_row("fdep", s, 0.40 + 0.01 * s, 21.0 + s) for s in (0, 1, 2)]
    rows += [_row("fdep_random", s, 0.35, 20.0) for s in (2, 1)]  # seed 0 missing: pairs use seeds 1, 2 only
    by_arm = {e["arm"]: e for e in summarize(rows)}
    fdep = by_arm["fdep"]["paired"]
    assert fdep["host"]["iou"]["diffs"] == pytest.approx([0.1, 0.1, 0.1]) and fdep["host"]["iou"]["beyond_spread"]
    assert fdep["host"]["hse"]["diffs"] == pytest.approx([1.0, 2.0, 3.0])
    assert fdep["fdep_random"]["iou"]["n"] == 2  # the prior's own effect, over the shared seeds
    assert set(by_arm["fdep_random"]["paired"]) == {"host"} and by_arm["host"]["paired"] == {}
    assert by_arm["fdep"]["epoch_ratio_vs_host"][0] == pytest.approx(1.5)
    table = format_table({"settings": {}, "summary": summarize(rows)})
    assert "fdep - host: dIoU +10.00" in table and "BEYOND spread" in table
    assert "fdep - fdep_random" in table and "fdep_random - host" in table


def _doc(rows: list[dict], epochs: int = 20) -> dict:
    return {"settings": {"epochs": epochs}, "machine": {"cpu": "x"}, "costs": {}, "rows": rows}


def test_summarize_joins_parallel_workers_and_refuses_mixed_budgets(tmp_path, capsys):
    from irfoundry.cli import main

    a, b, joined = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "joined.json"
    a.write_text(json.dumps(_doc([_row("host", 0, 0.3, 20.0), _row("fdep", 0, 0.4, 22.0)])))
    b.write_text(json.dumps(_doc([_row("fdep_random", 0, 0.35, 21.0)])))
    assert main(["bench", "fdep", "--summarize", str(a), str(b), "--out", str(joined)]) == 0
    assert "fdep - fdep_random" in capsys.readouterr().out
    assert [r["arm"] for r in json.loads(joined.read_text())["rows"]] == ["host", "fdep", "fdep_random"]
    # the same run twice, or another budget, is refused with both file names
    assert main(["bench", "fdep", "--summarize", str(a), str(a)]) == 1
    assert "is in both" in capsys.readouterr().err
    b.write_text(json.dumps(_doc([_row("fdep_random", 0, 0.35, 21.0)], epochs=10)))
    assert main(["bench", "fdep", "--summarize", str(a), str(b)]) == 1
    assert "only runs of one budget" in capsys.readouterr().err


def test_summarize_lists_collapsed_runs_and_keeps_them_in_the_mean():
    rows = [_row("host", 0, 0.4, 30.0), _row("host", 1, 0.0, 0.0), _row("fdep", 0, 0.4, 30.0), _row("fdep", 1, 0.4, 30.0)]
    by_arm = {e["arm"]: e for e in summarize(rows)}
    assert by_arm["host"]["collapsed"] == [1] and by_arm["fdep"]["collapsed"] == []
    assert by_arm["host"]["iou"][0] == pytest.approx(0.2)
    assert "acm host seed 1" in format_table({"settings": {}, "summary": summarize(rows)})


def test_markdown_summary_has_every_arm_and_comparison(tmp_path, capsys):
    from irfoundry.cli import main

    rows = [_row("host", s, 0.3, 20.0 + s) for s in (0, 1)] + [_row("fdep", s, 0.35 + 0.01 * s, 21.0) for s in (0, 1)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_doc(rows)))
    assert main(["bench", "fdep", "--summarize", str(path), "--markdown"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| data | host | arm |") and "| sirst | acm | fdep | 2 | 0 | 35.50 +/- 0.71 |" in table
    assert "| sirst | acm | fdep - host | +5.50 (" in table and "| 2/2 |" in table


def _run_folder(root, name: str, epochs: list[tuple[float, bool]]):
    """A run folder whose metrics.csv logs ``(train/epoch_seconds, validated)`` per epoch, as Lightning's CSV
    logger writes it (validation metrics on their own row of the same epoch)."""
    logs = root / name / "logs"
    logs.mkdir(parents=True)
    lines = ["epoch,step,train/epoch_seconds,val/iou"]
    for epoch, (seconds, validated) in enumerate(epochs):
        if validated:
            lines.append(f"{epoch},{epoch},,0.5")
        lines.append(f"{epoch},{epoch},{seconds},")
    (logs / "metrics.csv").write_text("\n".join(lines) + "\n")
    return str(root / name)


def test_recount_epochs_keeps_only_unvalidated_epochs_and_records_it(tmp_path):
    from irfoundry.bench.fdep import EPOCH_TIMER_FIX, recount_epochs

    host = _row("host", 0, 0.3, 20.0) | {
        "run_dir": _run_folder(tmp_path, "h", [(4.0, False), (6.5, True), (4.2, False), (6.4, True)])}
    fdep = _row("fdep", 0, 0.4, 22.0) | {
        "run_dir": _run_folder(tmp_path, "f", [(6.0, False), (16.0, True), (6.4, False), (15.8, True)])}
    doc = recount_epochs(_doc([host, fdep]))
    rows = {r["arm"]: r for r in doc["rows"]}
    assert rows["host"]["epoch_seconds"] == pytest.approx(4.1) and rows["fdep"]["epoch_seconds"] == pytest.approx(6.2)
    assert rows["host"]["epoch_seconds_logged"] == 2.0  # the value the benchmark had written stays beside it
    assert doc["corrections"] == [EPOCH_TIMER_FIX] and recount_epochs(doc) == doc  # idempotent
    by_arm = {e["arm"]: e for e in summarize(doc["rows"])}
    assert by_arm["fdep"]["epoch_ratio_vs_host"][0] == pytest.approx(6.2 / 4.1)


def test_recount_epochs_refuses_rows_without_their_run_folder(tmp_path):
    from irfoundry.bench.fdep import recount_epochs
    from irfoundry.errors import ConfigError

    row = _row("host", 0, 0.3, 20.0) | {"run_dir": str(tmp_path / "gone")}
    with pytest.raises(ConfigError, match="no training log under .*gone.*run folders"):
        recount_epochs(_doc([row]))


def test_summarize_refuses_to_join_recounted_and_raw_files(tmp_path):
    from irfoundry.bench.fdep import merge_results
    from irfoundry.errors import ConfigError

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_doc([_row("host", 0, 0.3, 20.0)]) | {"corrections": ["recounted"]}))
    b.write_text(json.dumps(_doc([_row("host", 1, 0.3, 20.0)])))
    with pytest.raises(ConfigError, match="corrections"):
        merge_results([a, b])
    b.write_text(json.dumps(_doc([_row("host", 1, 0.3, 20.0)]) | {"corrections": ["recounted"]}))
    assert merge_results([a, b])["corrections"] == ["recounted"]


def test_fdep_kd_arm_distills_and_is_compared_with_host_and_fdep():
    import argparse

    from irfoundry.bench.fdep import add_arguments, run_config

    a = vars(add_arguments(argparse.ArgumentParser()).parse_args(["--kd-weight", "0.5"]))
    assert run_config("sirst", "acm", "fdep_kd", 0, a)["method"]["options"]["kd_weight"] == 0.5
    assert "kd_weight" not in run_config("sirst", "acm", "fdep", 0, a)["method"]["options"]  # FDEP as published
    rows = [_row("host", s, 0.30, 20.0) for s in (0, 1)] + [_row("fdep", s, 0.32, 21.0) for s in (0, 1)]
    rows += [_row("fdep_kd", s, 0.36, 22.0) for s in (0, 1)]
    summary = summarize(rows)
    assert [e["arm"] for e in summary] == ["host", "fdep", "fdep_kd"]
    kd = summary[2]["paired"]
    assert set(kd) == {"host", "fdep"} and kd["fdep"]["iou"]["diffs"] == pytest.approx([0.04, 0.04])
    assert "fdep_kd - fdep: dIoU +4.00" in format_table({"settings": {}, "summary": summary})


def test_summarize_joins_files_written_before_kd_weight_was_a_setting(tmp_path, capsys):
    from irfoundry.cli import main

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_doc([_row("host", 0, 0.3, 20.0), _row("fdep", 0, 0.4, 22.0)])))  # no kd_weight
    new_doc = _doc([_row("fdep_kd", 0, 0.45, 23.0)])
    new_doc["settings"]["kd_weight"] = 1.0  # the default, which the older file implies
    new.write_text(json.dumps(new_doc))
    assert main(["bench", "fdep", "--summarize", str(old), str(new)]) == 0
    assert "fdep_kd - fdep" in capsys.readouterr().out
    new_doc["settings"]["kd_weight"] = 2.0  # another distillation weight is another budget
    new.write_text(json.dumps(new_doc))
    assert main(["bench", "fdep", "--summarize", str(old), str(new)]) == 1
    assert "only runs of one budget" in capsys.readouterr().err


def test_branch_gaps_compare_both_branches_at_the_same_validations(tmp_path):
    from irfoundry.bench.fdep import branch_gaps
    from irfoundry.errors import ConfigError

    def run(name: str, light: list[float], main: list[float]) -> str:
        logs = tmp_path / name / "logs"
        logs.mkdir(parents=True)
        lines = ["epoch,step,train/epoch_seconds,val/iou,val_main/iou"]
        for epoch, (a, b) in enumerate(zip(light, main)):
            lines += [f"{epoch},{epoch},,{a},{b}", f"{epoch},{epoch},1.0,,"]
        (logs / "metrics.csv").write_text("\n".join(lines) + "\n")
        return str(tmp_path / name)

    rows = [_row("host", 0, 0.3, 20.0) | {"run_dir": str(tmp_path / "no_folder_needed")},
            _row("fdep", 0, 0.4, 20.0) | {"run_dir": run("f0", [0.2, 0.4], [0.3, 0.5])},
            _row("fdep", 1, 0.4, 20.0) | {"run_dir": run("f1", [0.2, 0.4], [0.1, 0.4])}]
    (gap,) = branch_gaps(_doc(rows))
    assert (gap["arm"], gap["seeds"], gap["validations"], gap["ahead"]) == ("fdep", 2, 4, 2)
    assert gap["last"] == pytest.approx([0.1, 0.0]) and gap["mean_gap"] == pytest.approx((0.1 - 0.05) / 2)
    rows.append(_row("fdep_random", 0, 0.4, 20.0) | {"run_dir": str(tmp_path / "gone")})
    with pytest.raises(ConfigError, match="gone.*run folders"):
        branch_gaps(_doc(rows))
