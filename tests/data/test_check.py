"""irfoundry.data.check: every problem of a deliberately broken dataset is reported with its file."""

from __future__ import annotations

import numpy as np
import pytest

from helpers_data import make_dataset, write_png, write_split
from irfoundry.data.check import check_dataset
from irfoundry.data.synth import write_synthetic_dataset


def test_clean_dataset_has_no_problems(tmp_path):
    root = write_synthetic_dataset(tmp_path / "s", n=10, size=48, seed=0)
    report = check_dataset(str(root))
    assert report.ok and report.problems == []
    assert report.layout == "sirst_v1" and report.splits["train"] == 6 and report.splits["test"] == 2
    assert report.summary["images"] == 10 and report.summary["modes"] == {"L": 10}
    text = report.format()
    assert "layout: sirst_v1" in text and "0 error(s)" in text and "targets:" in text


def test_broken_dataset_reports_every_problem(tmp_path):
    root = make_dataset(tmp_path / "b", "dnanet", n=10)
    (root / "images" / "000001.png").write_bytes(b"corrupt")  # unreadable image
    (root / "masks" / "000002.png").unlink()  # missing mask
    write_png(root / "masks" / "000003.png", np.zeros((30, 30), np.uint8))  # wrong size, other aspect
    big = np.zeros((40, 48), np.uint8)
    big[4:8, 4:8] = 255
    write_png(root / "masks" / "000004.png", big)  # same aspect ratio: warning only
    nb = np.zeros((20, 24), np.uint8)
    nb[2:5, 2:5] = 128
    nb[3, 3] = 255
    write_png(root / "masks" / "000006.png", nb)  # non-binary
    (root / "masks" / "000007.png").write_bytes(b"bad mask")  # unreadable mask
    write_split(root / "50_50" / "test.txt", ["000006", "000007", "000099", "000006"])  # missing id, duplicate
    write_split(root / "70_30" / "test.txt", [])  # empty split

    report = check_dataset(str(root))
    assert not report.ok
    joined = "\n".join(str(p) for p in report.problems)
    assert any(p.file.endswith("images/000001.png") and "cannot read" in p.message for p in report.errors), joined
    assert any(p.file.endswith("images/000002.png") and "no mask" in p.message for p in report.errors)
    assert any(p.file.endswith("masks/000003.png") and "different aspect" in p.message for p in report.errors)
    assert any(p.file.endswith("masks/000006.png") and "not binary" in p.message for p in report.errors)
    assert any(p.file.endswith("masks/000007.png") for p in report.errors)
    assert any(p.file.endswith("50_50/test.txt") and "'000099'" in p.message for p in report.errors)
    assert any(p.file.endswith("50_50/test.txt") and "more than once" in p.message for p in report.errors)
    assert any(p.file.endswith("70_30/test.txt") and "empty" in p.message for p in report.errors)
    assert [p.file.split("/")[-1] for p in report.warnings] == ["000004.png"]
    assert len(report.errors) == 8, joined


def test_layout_and_split_failures_are_reported(tmp_path):
    report = check_dataset(str(tmp_path))
    assert not report.ok and "no known dataset layout" in report.errors[0].message
    root = make_dataset(tmp_path / "n", "dnanet")
    report = check_dataset(str(root), split="nope")
    assert not report.ok and "available splits" in report.errors[0].message
    ok = check_dataset(f"{root}:test")
    assert ok.ok and list(ok.splits) == ["test"] and ok.summary["images"] == 3


@pytest.mark.realdata
def test_real_sirst_test_split_only_warns_for_misc_111(real_data):
    report = check_dataset(f"{real_data / 'sirst'}:test")
    assert report.ok, report.format()
    assert [p.file.split("/")[-1] for p in report.warnings] == ["Misc_111_pixels0.png"]
    assert report.splits == {"test": 86} and report.summary["images"] == 86
