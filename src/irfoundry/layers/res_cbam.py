"""CBAM attention (Woo et al., ECCV 2018) and the residual CBAM block of DNANet, which MSHNet reuses
(parameter names as the DNANet reference)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError


class ChannelAttention(nn.Module):
    """CBAM channel attention (Woo et al., ECCV 2018) as written in the DNANet reference.

    ``B x C x H x W -> B x C x 1 x 1`` gate in (0, 1): shared MLP ``fc2(relu(fc1(.)))`` (1x1 convs, no bias,
    hidden width ``C // reduction``) on global average and max pooling, summed, sigmoid.
    The reference always uses ``reduction=16`` (its ``ratio`` argument is ignored).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ModelError(
                f"channel attention needs at least {reduction} channels, got {channels}; "
                f"use stage widths >= {reduction}"
            )
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        avg = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        mx = self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(x, 1))))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: ``B x C x H x W -> B x 1 x H x W`` gate in (0, 1) from a 7x7 conv (no bias)
    over the channel mean and channel max."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size not in (3, 7):
            raise ModelError(f"spatial attention kernel_size must be 3 or 7, got {kernel_size}")
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv1(pooled))


class ResCBAMBlock(nn.Module):
    """Residual block with CBAM (the reference's ``Res_CBAM_block``; MSHNet reuses it as ``ResNet``).

    ``conv3x3(bias) -> BN -> ReLU -> conv3x3(bias) -> BN -> x channel gate -> x spatial gate
    -> + shortcut -> ReLU``; the shortcut is ``conv1x1(bias) -> BN`` when the width or stride changes,
    identity otherwise. Shapes: ``B x in_ch x H x W -> B x out_ch x H/stride x W/stride``.
    Parameter names (``conv1, bn1, conv2, bn2, shortcut.0, shortcut.1, ca.fc1, ca.fc2, sa.conv1``) are the
    reference's.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride), nn.BatchNorm2d(out_ch))
        else:
            self.shortcut = None
        self.ca = ChannelAttention(out_ch)
        self.sa = SpatialAttention()

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.ca(out) * out
        out = self.sa(out) * out
        return F.relu(out + residual)


def make_layer(in_ch: int, out_ch: int, num_blocks: int = 1) -> nn.Sequential:
    """``num_blocks`` :class:`ResCBAMBlock` in sequence (the first changes the width), keys ``0, 1, ...``."""
    if num_blocks < 1:
        raise ModelError(f"a stage needs at least one block, got num_blocks={num_blocks}")
    return nn.Sequential(ResCBAMBlock(in_ch, out_ch), *(ResCBAMBlock(out_ch, out_ch) for _ in range(num_blocks - 1)))
