"""Every run leaves weights and a final validation; a folder without weights says why; Ctrl-C exits 130
and names the resume command, which then finishes the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config

from irfoundry.engine import evaluate, from_dict, train
from irfoundry.errors import CheckpointError


def test_a_run_shorter_than_val_every_is_validated_at_its_end(tiny_synth, tmp_path):
    result = train(from_dict(tiny_config(tiny_synth, tmp_path, "short", max_epochs=2, val_every=5)))
    assert result["best"] is not None and result["last"] is not None and result["best_epoch"] == 1
    meta = json.loads((Path(result["run_dir"]) / "last.json").read_text())
    assert meta["epoch"] == 1 and "val/iou" in meta["metrics"]


def test_max_steps_within_an_epoch_still_leaves_last(tiny_synth, tmp_path):
    result = train(from_dict(tiny_config(tiny_synth, tmp_path, "steps", max_epochs=5, max_steps=5)))
    meta = json.loads((Path(result["run_dir"]) / "last.json").read_text())
    assert result["last"] is not None and meta["global_step"] == 5  # written after the last step, mid-epoch


def test_a_folder_without_weights_says_why(tmp_path):
    run = tmp_path / "run"
    (run / "state").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="not a run folder"):
        evaluate(run, tmp_path, split="test")
    (run / "config.yaml").write_text("{}")
    with pytest.raises(CheckpointError, match="before the end of its first epoch"):
        evaluate(run, tmp_path, split="test")
    (run / "state" / "resume.ckpt").write_text("x")
    with pytest.raises(CheckpointError, match=f"irfoundry train --resume {run}"):
        evaluate(run, tmp_path, split="test")


@pytest.mark.slow
def test_ctrl_c_exits_130_with_the_resume_command_and_the_resume_finishes(tiny_synth, tmp_path):
    cfg = tiny_config(tiny_synth, tmp_path / "runs", "cut", max_epochs=40)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "irfoundry", "train", str(path)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "runs" / "cut" / "state" / "resume.ckpt"
    deadline = time.monotonic() + 120
    while not state.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert state.is_file(), "the run never finished an epoch"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    run = tmp_path / "runs" / "cut"
    assert f"irfoundry train --resume {run}" in err
    done = subprocess.run([sys.executable, "-m", "irfoundry", "train", "--resume", str(run)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run / "train_result.json").read_text())["epochs"] == 40


def test_a_finished_run_is_extended_with_resume_and_max_epochs(tiny_synth, tmp_path, capsys):
    from irfoundry.cli import main

    two = train(from_dict(tiny_config(tiny_synth, tmp_path / "a", "ext", max_epochs=2)))
    three = train(from_dict(tiny_config(tiny_synth, tmp_path / "b", "full", max_epochs=3)))
    run = Path(two["run_dir"])
    assert main(["train", "--resume", str(run), "--set", "optim.lr=1"]) == 1
    assert "--resume cannot change optim.lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--set", "trainer.max_epochs=1"]) == 1
    assert "cannot shorten" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--set", "trainer.max_epochs=3"]) == 0
    extended = json.loads((run / "train_result.json").read_text())
    assert extended["epochs"] == 3 and yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_epochs"] == 3
    assert extended["val_metrics"] == three["val_metrics"]  # as if it had been started for 3 epochs


def test_extending_a_run_whose_schedule_depends_on_its_length_is_refused(tiny_synth, tmp_path, capsys):
    from irfoundry.cli import main

    cfg = tiny_config(tiny_synth, tmp_path, "cos", max_epochs=1)
    cfg["optim"].update(scheduler="cosine")
    run = Path(train(from_dict(cfg))["run_dir"])
    assert main(["train", "--resume", str(run), "--set", "trainer.max_epochs=2"]) == 1
    assert "cosine schedule was laid out over its original length" in capsys.readouterr().err
