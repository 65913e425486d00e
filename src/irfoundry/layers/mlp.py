"""The small multi-layer perceptron of DETR / Mask2Former / SAM (``MLP(input, hidden, output, num_layers)``):
``num_layers`` linear layers with ReLU between them; parameter names ``layers.{i}`` as in those codebases.
Used as SAM's hypernetwork / IoU heads (:mod:`irfoundry.models.sam_decoder`) and SimIR's mask-embedding heads
(:mod:`irfoundry.models.simir`)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """``... x input_dim -> ... x output_dim``."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x).relu() if i < len(self.layers) - 1 else layer(x)
        return x
