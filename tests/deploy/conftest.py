"""Fixtures of the deployment tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_helpers import saved_host


@pytest.fixture(scope="session")
def unet_weights(tmp_path_factory) -> Path:
    """A seeded ``unet_tiny`` weights file (no global context: tiling is exact for it)."""
    return saved_host("unet_tiny", tmp_path_factory.mktemp("weights"))
