"""Gated spatial convolution (Takikawa et al., "Gated-SCNN: Gated Shape CNNs for Semantic Segmentation",
ICCV 2019), as ISNet's edge blocks use it (reference ``model/ISNet/my_functionals/GatedSpatialConv.py`` of
XinyiYing/BasicIRSTD, ``GatedSpatialConv2d``, NVIDIA's Gated-SCNN code)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError

__all__ = ["GatedSpatialConv2d"]


class GatedSpatialConv2d(nn.Module):
    """A 1x1 convolution (no bias) of shape features re-weighted by a gate computed with a 1-channel guide.

    ``forward(x, guide)``: ``x`` ``B x C x H x W`` (shape-stream features), ``guide`` ``B x 1 x H x W``;
    ``alpha = _gate_conv(cat(x, guide))`` (``B x 1 x H x W`` in (0, 1): BN, 1x1 conv ``C+1 -> C+1``, ReLU,
    1x1 conv ``C+1 -> 1``, BN, sigmoid), output ``conv1x1(x * (1 + alpha))``, ``B x out_ch x H x W``.

    Parameter names as the reference (``weight``, ``_gate_conv.0/1/3/4``); the reference subclasses
    ``_ConvNd`` with a 1x1 kernel and no bias, the only configuration ISNet builds, which is what this
    implements. ``weight`` is Xavier-normal initialised, as there.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        if in_ch < 1 or out_ch < 1:
            raise ModelError(f"GatedSpatialConv2d needs positive channels, got {in_ch} -> {out_ch}")
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, 1, 1))
        nn.init.xavier_normal_(self.weight)
        self._gate_conv = nn.Sequential(
            nn.BatchNorm2d(in_ch + 1),
            nn.Conv2d(in_ch + 1, in_ch + 1, 1),
            nn.ReLU(),
            nn.Conv2d(in_ch + 1, 1, 1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor, guide: Tensor) -> Tensor:
        alpha = self._gate_conv(torch.cat([x, guide], dim=1))
        return F.conv2d(x * (alpha + 1), self.weight)
