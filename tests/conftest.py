"""Shared fixtures: the real data folder (../shared/data relative to the repo root), thread limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from irfoundry.data import write_synthetic_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()

torch.set_num_threads(min(2, torch.get_num_threads()))
# train() / eval choose their threads (irfoundry.threads); an explicit OMP_NUM_THREADS keeps the suite at 2
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<repo>/../shared/data``; skips the test when the real datasets are not there."""
    if not (SHARED_DATA / "sirst").is_dir() or not (SHARED_DATA / "nudt_sirst").is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (SIRST v1 and NUDT-SIRST; see README 'Datasets')")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """24 synthetic images (60-120 px) in SIRST v1 layout: 14 train / 5 val / 5 test."""
    root = tmp_path_factory.mktemp("synth") / "tiny"
    write_synthetic_dataset(root, n=24, size=96, seed=3)
    return root
