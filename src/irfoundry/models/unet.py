"""A tiny U-Net for fast tests and CPU smoke runs (not a published host).

Five encoder stages at strides 1, 2, 4, 8, 16 (widths ``base * (1, 2, 4, 8, 8)``), bilinear up-sampling
decoder with skip concatenation. About 0.31 M parameters at ``base=8``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.layers import ConvBNAct
from irfoundry.models._registry import register_model
from irfoundry.models.base import HostNet


class _DoubleConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(ConvBNAct(in_ch, out_ch), ConvBNAct(out_ch, out_ch))


class TinyUNet(HostNet):
    """Tiny U-Net. ``B x in_chans x H x W -> B x 1 x H x W`` logits (H, W divisible by 32)."""

    logit_layers = ("head",)

    def __init__(self, *, in_chans: int = 1, base: int = 8) -> None:
        super().__init__()
        widths = (base, base * 2, base * 4, base * 8, base * 8)
        self.stage_channels = widths
        self.stage_strides = (1, 2, 4, 8, 16)
        self.enc = nn.ModuleList()
        prev = in_chans
        for i, w in enumerate(widths):
            pool = nn.Identity() if i == 0 else nn.MaxPool2d(2)
            self.enc.append(nn.Sequential(pool, _DoubleConv(prev, w)))
            prev = w
        self.dec = nn.ModuleList(
            _DoubleConv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    def encode(self, x: Tensor) -> list[Tensor]:
        feats = []
        for stage in self.enc:
            x = stage(x)
            feats.append(x)
        return feats

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor:
        self.check_stage_features(features)
        x = features[-1]
        for block, skip in zip(self.dec, reversed(features[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


@register_model("unet_tiny", paper="Ronneberger et al., U-Net, MICCAI 2015 (tiny variant for tests)")
def unet_tiny(*, in_chans: int = 1, base: int = 8) -> TinyUNet:
    """Tiny U-Net, widths 8-16-32-64-64."""
    return TinyUNet(in_chans=in_chans, base=base)
