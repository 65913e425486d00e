"""Helpers of the deployment tests: seeded hosts saved as weights files with their normalisation, mosaics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def mosaic(images: list[np.ndarray], height: int = 1024, width: int = 1280) -> np.ndarray:
    """``float32 height x width``: ``images`` repeated row by row (cropped at the right / bottom edges)."""
    out = np.zeros((height, width), dtype=np.float32)
    y = 0
    k = 0
    while y < height:
        x, row = 0, 0
        while x < width:
            im = images[k % len(images)]
            k += 1
            h, w = min(im.shape[0], height - y), min(im.shape[1], width - x)
            out[y : y + h, x : x + w] = im[:h, :w]
            x, row = x + w, max(row, h)
        y += row
    return out
