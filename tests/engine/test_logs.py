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
        assert not (tmp_path / METRICS_LOG).exists()  # the resumed fit's writer starts its own file
        _log(tmp_path, [{"epoch": "1", "step": "5", "b": "x"}, {"epoch": "1", "step": "6", "b": "z"},
                        {"epoch": "2", "step": "7", "b": "y"}])
    rows = read_rows(tmp_path / METRICS_LOG)
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "2"), ("1", "3"), ("1", "5"), ("1", "6"), ("2", "7")]
    assert rows[0]["a"] == "1" and rows[0]["b"] == "" and rows[3]["b"] == "z"  # union of the columns
    assert not (tmp_path / METRICS_LOG.parent / SET_ASIDE).exists()


def test_a_failing_fit_still_writes_the_old_rows_back(tmp_path):
    _log(tmp_path, [{"epoch": "0", "step": "2", "a": "1"}])
    with pytest.raises(RuntimeError), continued_metrics_log(tmp_path, resuming=True):
        raise RuntimeError("killed")
    assert read_rows(tmp_path / METRICS_LOG) == [{"epoch": "0", "step": "2", "a": "1"}]


def test_rows_left_aside_by_an_earlier_dead_resume_are_kept_and_fresh_runs_are_untouched(tmp_path):
    _log(tmp_path, [{"epoch": "1", "step": "3"}])
    write_rows(tmp_path / METRICS_LOG.parent / SET_ASIDE, [{"epoch": "0", "step": "1"}])
    with continued_metrics_log(tmp_path, resuming=True):
        pass
    assert [r["epoch"] for r in read_rows(tmp_path / METRICS_LOG)] == ["0", "1"]
    with continued_metrics_log(tmp_path / "fresh", resuming=True):  # nothing logged yet: a no-op
        pass
    with continued_metrics_log(tmp_path, resuming=False):
        (tmp_path / METRICS_LOG).unlink()
    assert not (tmp_path / METRICS_LOG).exists()


def test_a_resumed_log_whose_first_epoch_lacks_columns_of_the_old_rows_is_kept_whole(tmp_path):
    # Lightning's CSV writer created before the resumed fit (so it deleted nothing), then a first epoch without
    # validation, then one with it: its header rewrite must not meet the old rows' validation columns
    from lightning.fabric.loggers.csv_logs import _ExperimentWriter

    log = tmp_path / METRICS_LOG
    _log(tmp_path, [{"epoch": "0", "step": "4", "train/loss": "1.0", "val/iou": "0.1"},
                    {"epoch": "1", "step": "9", "train/loss": "0.9"}])
    writer = _ExperimentWriter.__new__(_ExperimentWriter)  # as if created before the fit: it deleted nothing
    writer.metrics, writer.metrics_keys = [], []
    writer._fs = __import__("fsspec").filesystem("file")
    writer.log_dir, writer.metrics_file_path = str(log.parent), str(log)
    with continued_metrics_log(tmp_path, resuming=True):
        writer.log_metrics({"epoch": 2, "train/loss": 0.8}, step=14)
        writer.save()
        writer.log_metrics({"epoch": 3, "train/loss": 0.7, "val/iou": 0.3}, step=19)
        writer.save()
    rows = read_rows(log)
    assert [r["step"] for r in rows] == ["4", "9", "14", "19"] and rows[0]["val/iou"] == "0.1"
    assert rows[3]["val/iou"] == "0.3" and rows[2]["val/iou"] == ""
