"""``continued_metrics_log``: a resumed run's metrics.csv keeps the epochs logged before the interruption."""

from __future__ import annotations

import pytest

from irfoundry.engine.logs import METRICS_LOG, SET_ASIDE, continued_metrics_log, read_rows, write_rows


def _log(run_dir, rows):
    (run_dir / METRICS_LOG).parent.mkdir(parents=True, exist_ok=True)
    write_rows(run_dir / METRICS_LOG, rows)


def test_rows_before_the_resumed_step_come_back_in_front_and_redone_steps_keep_their_new_rows(tmp_path):
    # the cut run logged steps 2, 3 and 6; its state was saved inside epoch 1 after step 4
    _log(tmp_path, [{"epoch": "0", "step": "2", "a": "1"}, {"epoch": "1", "step": "3", "a": "2"},
                    {"epoch": "1", "step": "6", "a": "3"}])
    with continued_metrics_log(tmp_path, resuming=True):
        assert read_rows(tmp_path / METRICS_LOG.parent / SET_ASIDE)  # set aside while the fit runs
        (tmp_path / METRICS_LOG).unlink()  # what Lightning's CSV writer does when it starts
        _log(tmp_path, [{"epoch": "1", "step": "5", "b": "x"}, {"epoch": "1", "step": "6", "b": "z"},
                        {"epoch": "2", "step": "7", "b": "y"}])
    rows = read_rows(tmp_path / METRICS_LOG)
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "2"), ("1", "3"), ("1", "5"), ("1", "6"), ("2", "7")]
    assert rows[0]["a"] == "1" and rows[0]["b"] == "" and rows[3]["b"] == "z"  # union of the columns
    assert not (tmp_path / METRICS_LOG.parent / SET_ASIDE).exists()


def test_a_failing_fit_still_writes_the_old_rows_back(tmp_path):
    _log(tmp_path, [{"epoch": "0", "step": "2", "a": "1"}])
    with pytest.raises(RuntimeError), continued_metrics_log(tmp_path, resuming=True):
        (tmp_path / METRICS_LOG).unlink()
        raise RuntimeError("killed")
    assert read_rows(tmp_path / METRICS_LOG) == [{"epoch": "0", "step": "2", "a": "1"}]


def test_rows_left_aside_by_an_earlier_dead_resume_are_kept_and_fresh_runs_are_untouched(tmp_path):
    _log(tmp_path, [{"epoch": "1", "step": "3"}])
    write_rows(tmp_path / METRICS_LOG.parent / SET_ASIDE, [{"epoch": "0", "step": "1"}])
    with continued_metrics_log(tmp_path, resuming=True):
        (tmp_path / METRICS_LOG).unlink()
    assert [r["epoch"] for r in read_rows(tmp_path / METRICS_LOG)] == ["0", "1"]
    with continued_metrics_log(tmp_path / "fresh", resuming=True):  # nothing logged yet: a no-op
        pass
    with continued_metrics_log(tmp_path, resuming=False):
        (tmp_path / METRICS_LOG).unlink()
    assert not (tmp_path / METRICS_LOG).exists()
