"""research/fdep/legacy.py keeps the former FDEP benchmark's results files readable: the epoch recount,
the join of files of one budget and the branch gaps, as they were computed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from irfoundry.errors import ConfigError

_path = Path(__file__).resolve().parents[2] / "research" / "fdep" / "legacy.py"
_spec = importlib.util.spec_from_file_location("fdep_legacy", _path)
legacy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(legacy)

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def _row(arm: str, seed: int, iou: float, hse: float) -> dict:
    return {"dataset": "sirst", "host": "acm", "arm": arm, "seed": seed, "iou": iou, "niou": iou, "pd": 0.9,
            "fa": 1e-4, "hse": hse, "epoch_seconds": {"host": 2.0}.get(arm, 3.0), "val_iou": iou}


def _doc(rows: list[dict], epochs: int = 20) -> dict:
    return {"settings": {"epochs": epochs}, "machine": {"cpu": "x"}, "costs": {}, "rows": rows}


def _run_folder(root, name: str, epochs: list[tuple[float, bool]]):
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
    host = _row("host", 0, 0.3, 20.0) | {"run_dir": _run_folder(tmp_path, "h", [(4.0, False), (6.5, True), (4.2, False)])}
    fdep = _row("fdep", 0, 0.4, 22.0) | {"run_dir": _run_folder(tmp_path, "f", [(6.0, False), (16.0, True), (6.4, False)])}
    doc = legacy.recount_epochs(_doc([host, fdep]))
    rows = {r["arm"]: r for r in doc["rows"]}
    assert rows["host"]["epoch_seconds"] == pytest.approx(4.1) and rows["fdep"]["epoch_seconds"] == pytest.approx(6.2)
    assert rows["host"]["epoch_seconds_logged"] == 2.0
    assert doc["corrections"] == [legacy.EPOCH_TIMER_FIX] and legacy.recount_epochs(doc) == doc  # idempotent
    with pytest.raises(ConfigError, match="no training log under .*gone"):
        legacy.recount_epochs(_doc([_row("host", 0, 0.3, 20.0) | {"run_dir": str(tmp_path / "gone")}]))


def test_merge_joins_one_budget_only(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_doc([_row("host", 0, 0.3, 20.0), _row("fdep", 0, 0.4, 22.0)])))  # no kd_weight
    new_doc = _doc([_row("fdep_kd", 0, 0.45, 23.0)])
    new_doc["settings"]["kd_weight"] = 1.0  # the default the older file implies
    new.write_text(json.dumps(new_doc))
    assert "fdep_kd - fdep" in legacy.summary_text(legacy.merge([old, new]))
    new_doc["settings"]["kd_weight"] = 2.0
    new.write_text(json.dumps(new_doc))
    with pytest.raises(ConfigError, match="other settings"):
        legacy.merge([old, new])
    with pytest.raises(ConfigError, match="is in both"):
        legacy.merge([old, old])


def test_the_shipped_results_summarise_as_docs_results_fdep_md_prints_them():
    text = legacy.summary_text(legacy.merge([RESULTS / "fdep_gain_sirst.json"]), markdown=True)
    doc = (RESULTS / "fdep.md").read_text()
    for line in text.splitlines()[2:4] + [text.splitlines()[-1]]:
        assert line in doc, line


def test_branch_gaps_compare_both_branches_at_the_same_validations(tmp_path):
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
    (gap,) = legacy.branch_gaps(_doc(rows))
    assert (gap["arm"], gap["seeds"], gap["validations"], gap["ahead"]) == ("fdep", 2, 4, 2)
    assert gap["last"] == pytest.approx([0.1, 0.0]) and gap["mean_gap"] == pytest.approx((0.1 - 0.05) / 2)
