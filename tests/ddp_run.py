"""Train a config in two CPU processes (DDP, gloo) the way a user would, for the tests that compare DDP with one
process. Lightning re-executes the launching script for rank 1, so methods that only tests define are
registered by a small script that imports their modules first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest
import torch

#: variables of an outer launcher that would make the run think it is already one of several processes
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                "SLURM_NTASKS", "IRFOUNDRY_RUN_DIR")


def train_two_processes(config: Path, cwd: Path, *, modules: Sequence[str] = (), module_dir: Path | None = None,
                        env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``irfoundry train CONFIG`` under ``trainer.strategy=ddp`` with 2 CPU devices, one thread each; ``modules``
    (importable from ``module_dir``) are imported first in every process. Skips without gloo."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    clean = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    clean.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    script = cwd / "run_two_processes.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(module_dir or cwd)!r})\n"
                      + "".join(f"import {m}\n" for m in modules)
                      + "from irfoundry.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    cmd = [sys.executable, str(script), "train", str(config), "--set", "trainer.strategy=ddp", "--set",
           "trainer.devices=2", "--set", "trainer.accelerator=cpu"]
    return subprocess.run(cmd, env=clean, cwd=cwd, capture_output=True, text=True, timeout=timeout)
