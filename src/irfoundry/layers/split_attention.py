"""Split-attention convolution and the ResNeSt bottleneck (Zhang et al., "ResNeSt: Split-Attention Networks",
CVPR Workshops 2022, arXiv 2004.08955), as ISTDU-Net's encoder uses them.

Written after ISTDU-Net's copy of Hang Zhang's ResNeSt code (XinyiYing/BasicIRSTD ``model/ISTDUNet/splat.py`` and
``resnet2020.py``, classes ``SplAtConv2d``, ``Bottleneck`` and ``ResNetCt``); parameter names are that code's, so
its checkpoints load strictly. Only the options ISTDU-Net uses are implemented: no DropBlock, no rectified
convolution, ResNet-D down-sampling shortcuts (``avg_down``) and the stride taken by an average pool after the
split-attention convolution (``avd=True, avd_first=False``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError

#: channel expansion of the bottleneck's last 1x1 convolution
EXPANSION = 4


class SplitAttentionConv2d(nn.Module):
    """Split-attention 3x3 convolution (the reference's ``SplAtConv2d`` with a BatchNorm and no bias).

    ``B x in_ch x H x W -> B x channels x H/stride x W/stride``: a grouped 3x3 conv (``cardinality * radix``
    groups) gives ``radix`` splits of ``channels`` each (BN, ReLU); their sum is pooled globally and passed through
    ``fc1`` (1x1, ``max(in_ch * radix // reduction, 32)`` channels, BN, ReLU) and ``fc2`` (1x1, ``channels * radix``);
    a softmax over the splits of each cardinal group (a sigmoid when ``radix == 1``) weights the splits, which are
    summed. Names: ``conv, bn0, fc1, bn1, fc2``.

    ``bn1`` normalises ``B x C x 1 x 1`` maps, so in training mode a batch needs at least two images.
    """

    def __init__(
        self, in_ch: int, channels: int, stride: int = 1, radix: int = 2, cardinality: int = 4, reduction: int = 4
    ) -> None:
        super().__init__()
        if radix < 1 or cardinality < 1:
            raise ModelError(f"split attention needs radix >= 1 and cardinality >= 1, got {radix}, {cardinality}")
        if in_ch % (cardinality * radix) or channels % cardinality:
            raise ModelError(
                f"split attention with {cardinality} groups and radix {radix} needs in_ch divisible by "
                f"{cardinality * radix} and channels by {cardinality}, got in_ch={in_ch}, channels={channels}"
            )
        inter = max(in_ch * radix // reduction, 32)
        if inter % cardinality:
            raise ModelError(f"split attention: hidden width {inter} is not divisible by cardinality {cardinality}")
        self.radix, self.cardinality, self.channels = radix, cardinality, channels
        self.conv = nn.Conv2d(
            in_ch, channels * radix, 3, stride=stride, padding=1, groups=cardinality * radix, bias=False
        )
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.fc1 = nn.Conv2d(channels, inter, 1, groups=cardinality)
        self.bn1 = nn.BatchNorm2d(inter)
        self.fc2 = nn.Conv2d(inter, channels * radix, 1, groups=cardinality)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn0(self.conv(x)))
        b, _, h, w = x.shape
        splits = x.view(b, self.radix, self.channels, h, w)  # radix-major, as the reference's torch.split
        gap = F.adaptive_avg_pool2d(splits.sum(1) if self.radix > 1 else x, 1)
        att = self.fc2(F.relu(self.bn1(self.fc1(gap))))
        if self.radix == 1:
            return att.sigmoid() * x
        # per cardinal group: softmax over the radix splits ("rSoftMax")
        att = att.view(b, self.cardinality, self.radix, -1).transpose(1, 2).softmax(dim=1)
        att = att.reshape(b, self.radix, self.channels, 1, 1)
        return (att * splits).sum(1)


class SplitAttentionBottleneck(nn.Module):
    """ResNeSt bottleneck (the reference's ``Bottleneck`` with ``radix >= 1``).

    ``conv1`` (1x1) -> BN -> ReLU -> :class:`SplitAttentionConv2d` -> (3x3 average pool of stride ``stride``
    when it down-samples, ``avd_layer``) -> ``conv3`` (1x1 to ``planes * 4``) -> BN -> + shortcut -> ReLU.
    The inner width is ``int(planes * bottleneck_width / 64) * cardinality``. Shapes:
    ``B x inplanes x H x W -> B x 4 planes x ceil(H / stride) x ceil(W / stride)``.
    Names: ``conv1, bn1, conv2.*, conv3, bn3, downsample.*`` (in that state-dict order).
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        radix: int = 2,
        cardinality: int = 4,
        bottleneck_width: int = 16,
        is_first: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * (bottleneck_width / 64.0)) * cardinality
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # the stride moves to an average pool after the split-attention conv ("avd", ResNeSt-D)
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if stride > 1 or is_first else None
        self.conv2 = SplitAttentionConv2d(
            width, width, stride=1 if self.avd_layer is not None else stride, radix=radix, cardinality=cardinality
        )
        self.conv3 = nn.Conv2d(width, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.bn1(self.conv1(x))))
        if self.avd_layer is not None:
            out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def make_split_attention_layer(
    inplanes: int, planes: int, blocks: int, stride: int = 1, *, is_first: bool = True, **block_kwargs
) -> nn.Sequential:
    """``blocks`` bottlenecks, the first one down-sampling by ``stride`` (the reference's ``_make_layer``).

    The first block's shortcut, when the width or stride changes, is ResNet-D's: ``AvgPool2d(stride, stride,
    ceil_mode=True, count_include_pad=False)`` (an identity ``AvgPool2d(1, 1)`` at stride 1, kept as the reference
    has it) -> 1x1 conv (no bias) -> BN, i.e. keys ``downsample.1.weight``, ``downsample.2.*``.
    """
    if blocks < 1:
        raise ModelError(f"a split-attention layer needs at least one block, got {blocks}")
    downsample = None
    if stride != 1 or inplanes != planes * EXPANSION:
        downsample = nn.Sequential(
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(inplanes, planes * EXPANSION, 1, bias=False),
            nn.BatchNorm2d(planes * EXPANSION),
        )
    layers = [SplitAttentionBottleneck(inplanes, planes, stride, downsample, is_first=is_first, **block_kwargs)]
    layers += [SplitAttentionBottleneck(planes * EXPANSION, planes, **block_kwargs) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class SplitAttentionResNet(nn.Module):
    """Four ResNeSt stages without stem or classifier (the reference's ``ResNetCt``).

    ``B x inplanes x H x W -> [x1, x2, x3, x4]`` with ``4 * planes[i]`` channels at strides 1, 2, 4, 8 (``layer1``
    keeps the resolution, ``layer2..4`` halve it). Names ``layer1 .. layer4``. Initialisation as the reference:
    convolution weights ``N(0, 2 / (k * k * C_out))``, BatchNorms ``weight = 1, bias = 0``.
    """

    def __init__(
        self,
        inplanes: int,
        layers: Sequence[int] = (1, 2, 4, 8),
        planes: Sequence[int] = (16, 32, 64, 128),
        **block_kwargs,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(planes) != 4:
            raise ModelError(f"SplitAttentionResNet needs 4 block counts and 4 widths, got {layers}, {planes}")
        widths = [inplanes] + [p * EXPANSION for p in planes]
        for i in range(4):
            stride, first = (1, False) if i == 0 else (2, True)
            layer = make_split_attention_layer(
                widths[i], planes[i], layers[i], stride, is_first=first, **block_kwargs
            )
            self.add_module(f"layer{i + 1}", layer)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            feats.append(x)
        return feats
