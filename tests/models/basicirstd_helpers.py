"""Shared helpers of the BasicIRSTD-family host tests (ACM, ALCNet).

The deterministic weight rule here is the one the script that wrote ``golden/{acm,alcnet}_reference_state.json``
used for the reference outputs stored there; change it and those outputs no longer apply.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

# --- deterministic reference weights (same rule as the script that wrote the golden outputs) -------------
def reference_tensor(index: int, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Tensor number ``index`` (position in the golden key list): hash-like values, BN statistics kept sane."""
    if dtype == torch.int64:
        return torch.full(shape, 7, dtype=torch.int64)
    n = math.prod(shape)
    h = torch.sin(12.9898 * torch.arange(n, dtype=torch.float64) + 78.233 * (index + 1)) * 43758.5453
    base = 2 * (h - torch.floor(h)) - 1
    if key.endswith("running_var"):
        v = 1.0 + 0.5 * (base + 1)
    elif key.endswith("running_mean"):
        v = 0.1 * base
    elif len(shape) == 1 and key.endswith("weight"):
        v = 1.0 + 0.25 * base
    elif len(shape) == 1:
        v = 0.2 + 0.2 * base
    else:
        v = base * math.sqrt(6.0 / (n / shape[0]))
    return v.reshape(shape).to(torch.float32)


def reference_input(h: int, w: int) -> torch.Tensor:
    """Smooth deterministic ``1 x 1 x h x w`` test image."""
    yy = torch.arange(h, dtype=torch.float64)[:, None]
    xx = torch.arange(w, dtype=torch.float64)[None, :]
    x = torch.sin(0.3 * yy) * torch.cos(0.2 * xx) + 0.5 * torch.sin(0.11 * (yy + 2 * xx))
    return x.to(torch.float32)[None, None]


def golden_state(golden: dict, random: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the reference's keys and shapes: deterministic rule or random tensors."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i, (key, shape, dtype) in enumerate(golden["state_dict"]):
        shape, dt = tuple(shape), getattr(torch, dtype)
        if not random:
            state[key] = reference_tensor(i, key, shape, dt)
        elif dt == torch.int64:
            state[key] = torch.randint(0, 1000, shape, generator=gen)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.2
    return state


def save_basicirstd_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """What BasicIRSTD's train.py writes: ``Net`` wrapper => ``model.`` prefix, plus epoch and loss log."""
    torch.save({"epoch": 400, "state_dict": {"model." + k: v for k, v in state.items()},
                "total_loss": [0.61, 0.42]}, path)
    return path


def macs_by_module_type(model: torch.nn.Module, size: tuple[int, int] = (256, 256)) -> dict[str, int]:
    """Per-type operation counts of one eval forward on ``1 x 1 x H x W``, by forward hooks.

    ``conv``: Conv2d MACs; ``deconv``: true ConvTranspose2d MACs (``C_out * k^2`` per *input* element);
    ``deconv_thop``: the transposed convolutions as the thop version BasicIRSTD's ``cal_params.py`` used
    counts them (``C_in * k^2`` per *output* element, 4x at stride 2); ``bn_thop``: 4 per BatchNorm element.
    """
    counts = {"conv": 0, "deconv": 0, "deconv_thop": 0, "bn_thop": 0}

    def hook(mod, inputs, out):
        x = inputs[0]
        if isinstance(mod, torch.nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            counts["deconv"] += x.numel() * mod.out_channels // mod.groups * k
            counts["deconv_thop"] += out.numel() * x.shape[1] // mod.groups * k
        elif isinstance(mod, torch.nn.Conv2d):
            counts["conv"] += out.numel() * x.shape[1] // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, torch.nn.BatchNorm2d):
            counts["bn_thop"] += 4 * x.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, *size))
    for h in handles:
        h.remove()
    return counts
