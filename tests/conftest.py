"""Shared fixtures: the real data folder (../shared/data relative to the repo root), thread limits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<repo>/../shared/data``; skips the test when the real datasets are not there."""
    if not (SHARED_DATA / "sirst").is_dir() or not (SHARED_DATA / "nudt_sirst").is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (SIRST v1 and NUDT-SIRST; see README 'Datasets')")
    return SHARED_DATA
