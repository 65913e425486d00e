"""Parameter and MAC counts, measured with PyTorch's own FLOP counter.

MACs are ``FlopCounterMode`` FLOPs / 2 (convolutions, matrix products, interpolation-free), which is
how the IRSTD literature's ``thop``/``ptflops`` tables count them to within a few percent.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from irfoundry.models.base import count_params


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 256, 256)) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a zero input of ``input_shape``."""
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(input_shape, device=next(model.parameters()).device)
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() // 2
    finally:
        model.train(was_training)


def complexity(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 256, 256)) -> dict:
    """``{"params": int, "macs": int}`` for ``model`` at ``input_shape``."""
    return {"params": count_params(model), "macs": count_macs(model, input_shape)}
