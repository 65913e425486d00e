"""``train/epoch_seconds`` times the training batches of an epoch and never its validation;
``train/epoch_batches`` counts the batches it timed."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from types import SimpleNamespace

from conftest import tiny_config

from irfoundry.engine import from_dict, train
from irfoundry.engine import module as module_mod

VALIDATION_STEP_SECONDS = 1000.0  # simulated, far longer than the real tiny epoch


def test_epoch_seconds_excludes_validation(tiny_synth, tmp_path, monkeypatch):
    # a clock that jumps whenever a validation batch runs: if validation leaked into the epoch timer, the
    # logged epoch would last at least that long
    offset = {"s": 0.0}
    monkeypatch.setattr(module_mod, "time", SimpleNamespace(perf_counter=lambda: time.perf_counter() + offset["s"]))
    original = module_mod.IRSTDModule.validation_step

    def slow_validation_step(self, batch, batch_idx):
        offset["s"] += VALIDATION_STEP_SECONDS
        return original(self, batch, batch_idx)

    monkeypatch.setattr(module_mod.IRSTDModule, "validation_step", slow_validation_step)
    result = train(from_dict(tiny_config(tiny_synth, tmp_path, max_epochs=3)))

    with open(Path(result["run_dir"]) / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    seconds = [float(r["train/epoch_seconds"]) for r in rows if r.get("train/epoch_seconds")]
    validated = [r for r in rows if r.get("val/iou")]
    assert len(seconds) == 3 and len(validated) == 3 and offset["s"] >= 3 * VALIDATION_STEP_SECONDS
    assert all(0 < s < VALIDATION_STEP_SECONDS for s in seconds), seconds
    batches = [float(r["train/epoch_batches"]) for r in rows if r.get("train/epoch_seconds")]
    steps = [int(r["step"]) for r in rows if r.get("train/epoch_seconds")]  # the global step at each epoch's end
    assert batches[1:] == [b - a for a, b in zip(steps, steps[1:])] and batches[0] == batches[1] > 0
