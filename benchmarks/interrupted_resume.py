"""The case of issue 17, item 4, on real data: a run interrupted inside an epoch and resumed equals the
uninterrupted run.

    OMP_NUM_THREADS=1 python benchmarks/interrupted_resume.py --data ../shared/data/sirst --out /tmp/resume_check

Three runs of ``cpu/acm_sirst427 --set trainer.max_epochs=10`` (1 torch thread each, one after another):
uninterrupted; Ctrl-C (SIGINT) in epoch 7 then ``--resume``; SIGKILL in epoch 5 with the resume state also
written every 3 batches (``trainer.state_every_batches=3``) then ``--resume``. The signal is sent from
outside, at a wall-clock moment half an epoch after the previous epoch's end was logged. Writes
``OUT/interrupted_resume.json`` with every run's per-epoch training loss and validation IoU / Pd, the exit codes and whether the
final weights are bit-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from irfoundry.engine.logs import METRICS_LOG, read_rows


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "irfoundry", *args]


def _train(data: str, out: Path, name: str, *extra: str) -> list[str]:
    return _cmd("train", "cpu/acm_sirst427", "--set", f"data.root={data}", "--set", "trainer.max_epochs=10",
                "--set", f"trainer.out_dir={out}", "--set", f"trainer.run_name={name}", "--set", "trainer.threads=1",
                "--set", "trainer.progress_bar=false", *extra)


def _per_epoch(run: Path, key: str) -> dict[str, float]:
    return {r["epoch"]: float(r[key]) for r in read_rows(run / METRICS_LOG) if r.get(key)}


def _curves(run: Path) -> dict[str, dict[str, float]]:
    """Per-epoch training loss and (every ``val_every`` epochs) validation IoU / Pd of a run."""
    return {k: _per_epoch(run, k) for k in ("train/loss_epoch", "val/iou", "val/pd")}


def _epochs_logged(run: Path) -> int:
    return len(_per_epoch(run, "train/loss_epoch")) if (run / METRICS_LOG).is_file() else 0


def _interrupted(data: str, out: Path, name: str, sig: signal.Signals, epoch: int, *extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    # a background job started by a non-interactive shell inherits SIGINT ignored; a terminal's Ctrl-C is not
    proc = subprocess.Popen(_train(data, out, name, *extra), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run = out / name
    # an epoch's rows reach the CSV log as the next epoch starts: wait until epoch `epoch` (1-based) runs
    while _epochs_logged(run) < epoch - 1 and proc.poll() is None:
        time.sleep(0.5)
    per_epoch = (time.monotonic() - t0) / max(1, epoch - 1)
    time.sleep(per_epoch / 2)
    proc.send_signal(sig)
    _, err = proc.communicate()
    resumed = subprocess.run(_cmd("train", "--resume", str(run)), env=env, capture_output=True, text=True)
    return {"signal": sig.name, "in_epoch_1_based": epoch, "exit_code": proc.returncode,
            "resume_hint_printed": f"irfoundry train --resume {run}" in err, "resume_exit_code": resumed.returncode,
            "curves": _curves(run)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_train(a.data, a.out, "full"), env=env, check=True, stdout=subprocess.DEVNULL)
    full = a.out / "full"
    report = {"command": "cpu/acm_sirst427 --set trainer.max_epochs=10, 1 thread", "data": a.data,
              "uninterrupted": {"curves": _curves(full)}, "interrupted": []}
    cases = [("ctrl_c", signal.SIGINT, 7), ("kill", signal.SIGKILL, 5, "--set", "trainer.state_every_batches=3")]
    for name, sig, epoch, *extra in cases:
        case = _interrupted(a.data, a.out, name, sig, epoch, *extra)
        ref, got = load_file(full / "last.safetensors"), load_file(a.out / name / "last.safetensors")
        case["weights_identical"] = ref.keys() == got.keys() and all((ref[k] == got[k]).all() for k in ref)
        case["curves_identical"] = case["curves"] == report["uninterrupted"]["curves"]
        report["interrupted"].append(case)
    (a.out / "interrupted_resume.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
