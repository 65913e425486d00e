"""Helpers of the deployment tests: seeded hosts saved as weights files with their normalisation."""

from __future__ import annotations

from pathlib import Path

import torch

from irfoundry.models import create_model
from irfoundry.models.checkpoint import save_weights

NORM = {"mean": 0.42, "std": 0.18}


def saved_host(name: str, folder: Path, seed: int = 0) -> Path:
    """``folder/NAME.safetensors``: host ``name`` with seeded random weights (BatchNorm statistics moved off
    their defaults, so eval-mode normalisation is exercised) and :data:`NORM`."""
    torch.manual_seed(seed)
    model = create_model(name)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.8, 1.2)
    return save_weights(model, folder / f"{name}.safetensors", extra={"norm": NORM})
