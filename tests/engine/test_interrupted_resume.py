"""A training process killed (SIGKILL) or interrupted (SIGINT) inside an epoch, then ``--resume``: the
same weights, validation metrics and log as the uninterrupted run (issue 17, item 4).

The interruption is real: the training process sends itself the signal at a chosen batch
(``random_draws_method``), after the resume state of an earlier batch of that epoch was written
(``trainer.state_every_batches: 1``). The method draws from torch's global generator and from a named
loader every batch, so equality needs every piece of the resume state.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config
from safetensors.torch import load_file

from irfoundry.engine.logs import METRICS_LOG, read_rows

HERE = Path(__file__).resolve().parent
TIMING = ("train/epoch_seconds", "train/epoch_batches")  # what the epoch timer saw: a restart cuts it


def _config(root, out, name):
    cfg = tiny_config(root, out, name, max_epochs=4, state_every_batches=1)
    cfg["method"] = {"name": "random_draws_test"}
    return cfg


def _irfoundry(args, cwd, signal_at=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("IRFOUNDRY_TEST_SIGNAL", None)
    if signal_at:
        env["IRFOUNDRY_TEST_SIGNAL"] = signal_at
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import random_draws_method; "
            f"from irfoundry.cli import main; sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def _log(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_rows(Path(run_dir) / METRICS_LOG)]


@pytest.fixture(scope="module")
def uninterrupted(tiny_synth, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(_config(tiny_synth, tmp / "runs", "full")))
    done = _irfoundry(["train", str(path)], tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "runs" / "full"


@pytest.mark.slow
@pytest.mark.parametrize("signal_at, exit_code", [
    ("KILL:2:2", -9),  # resumes from the state after batch 1 of epoch 2
    ("KILL:2:0", -9),  # before any state of epoch 2: resumes from the end of epoch 1 (whose log rows must survive)
    ("INT:1:1", 130),
])
def test_an_interrupted_epoch_resumes_to_the_uninterrupted_run(tiny_synth, tmp_path, uninterrupted, signal_at,
                                                               exit_code):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_config(tiny_synth, tmp_path / "runs", "cut")))
    run = tmp_path / "runs" / "cut"
    cut = _irfoundry(["train", str(path)], tmp_path, signal_at=signal_at)
    assert cut.returncode == exit_code, cut.stderr[-3000:]
    if exit_code == 130:
        assert f"irfoundry train --resume {run}" in cut.stderr
    assert not (run / "train_result.json").exists()

    done = _irfoundry(["train", "--resume", str(run)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_file(uninterrupted / name), load_file(run / name)
        assert a.keys() == b.keys()
        assert all((a[k] == b[k]).all() for k in a), name
    full_log, cut_log = _log(uninterrupted), _log(run)
    assert [r["step"] for r in cut_log] == [r["step"] for r in full_log]
    assert cut_log == full_log  # every logged loss, random draw and validation metric, to the digit
    assert not list(run.glob("state/*.tmp"))
