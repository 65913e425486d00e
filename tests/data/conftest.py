"""Fixtures for tests/data: the real data folder (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers_data import REAL_DATA


@pytest.fixture
def real_data() -> Path:
    """``<repo>/../shared/data``; skips the test when it is absent."""
    root = REAL_DATA.resolve()
    if not (root / "sirst" / "images").is_dir() or not (root / "nudt_sirst" / "images").is_dir():
        pytest.skip(f"real data not found at {root} (SIRST v1 and NUDT-SIRST); tests on real data skipped")
    return root
