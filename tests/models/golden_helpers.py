"""Shared helper of the model tests whose golden files list ``{"state": {key: {"shape", "dtype"}}}``."""

from __future__ import annotations

import torch


def fake_reference_state(golden: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the reference's keys, shapes and dtypes (positive running variances)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, spec in golden["state"].items():
        shape, dtype = spec["shape"], getattr(torch, spec["dtype"])
        if dtype.is_floating_point:
            t = torch.randn(shape, generator=gen) * 0.1
            if key.endswith("running_var"):
                t = t.abs() + 0.5
        else:
            t = torch.randint(0, 100, shape, generator=gen, dtype=dtype)
        state[key] = t
    return state
