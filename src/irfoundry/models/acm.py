"""ACM: Asymmetric Contextual Modulation (ASKCResUNet), as implemented in BasicIRSTD.

Paper: Y. Dai, Y. Wu, F. Zhou, K. Barnard, "Asymmetric Contextual Modulation for Infrared Small Target
Detection", WACV 2021 (original MXNet code: YimianDai/open-acm).
Reference code whose checkpoints we import: XinyiYing/BasicIRSTD ``model/ACM/model_ACM.py`` and
``model/ACM/fusion.py`` (class ``ASKCResUNet``, built by BasicIRSTD's ``Net`` as ``ACM()``); LESPS
(XinyiYing/LESPS) uses the same PyTorch port. Submodule names follow that code, so a BasicIRSTD
checkpoint (``.pth.tar``, keys ``model.<name>``) loads strictly with no key filter.

Architecture (default ``layers=(3, 3, 3)``, ``channels=(8, 16, 32, 64)``), input ``B x C x H x W``:

* ``stem``: BN(C) -> conv3x3/2 (8) -> conv3x3 (8) -> conv3x3 (16) -> maxpool3x3/2: ``16 x H/4 x W/4``;
* ``layer1`` / ``layer2`` / ``layer3``: ResNet basic-block stages -> ``c1`` 16 @ H/4, ``c2`` 32 @ H/8,
  ``c3`` 64 @ H/16 (the encoder stages, :attr:`stage_channels` / :attr:`stage_strides`);
* decoder: ``deconv2`` (transposed conv 4x4/2) -> ``fuse2`` (asymmetric bi-directional channel
  modulation with ``c2``) -> ``uplayer2`` -> ``deconv1`` -> ``fuse1`` (with ``c1``) -> ``uplayer1`` ->
  ``head`` (FCN head, 16 -> 4 -> 1) at H/4 -> bilinear up-sampling to ``H x W``.

No deep supervision: a ``B x 1 x H x W`` logit tensor in both training and eval mode.

Deviations from the reference, all without effect on the weights:

* ``forward`` returns logits; the reference applies ``sigmoid`` inside ``forward``.
* The final up-sampling targets the input size (the reference uses ``scale_factor=4``; identical for
  H, W divisible by 32, the only sizes a host accepts).

Kept on purpose (it changes training, not the architecture): the reference passes ``momentum=0.9`` to
the stem, down-sample, fusion and head BatchNorms, a literal port of MXNet's momentum 0.9, which in
PyTorch weights the *current* batch by 0.9 (MXNet's 0.9 is PyTorch's 0.1). The residual blocks use
PyTorch's default 0.1. ``bn_momentum`` selects the value of the former group (default 0.9, as trained).

Shared blocks (:class:`AsymBiChaFuse`, :class:`ResBasicBlock`, :class:`FCNHead`, :func:`make_stem`,
:func:`make_res_layer`) are also used by :mod:`irfoundry.models.alcnet`, which the reference keeps in
the same folder.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.models._registry import register_model
from irfoundry.models.base import HostNet

#: BatchNorm momentum the reference passes to its stem, down-sample, fusion and head norms (see module doc)
REFERENCE_BN_MOMENTUM = 0.9


class AsymBiChaFuse(nn.Module):
    """Asymmetric bi-directional channel fusion (ACM's "AsymBi" module).

    ``out = post(2 * xl * topdown(xh) + 2 * xh * bottomup(xl))`` where ``topdown`` is a global
    (average-pooled) channel attention computed from the deep feature ``xh`` and ``bottomup`` a
    point-wise (per-pixel) channel attention computed from the shallow feature ``xl``.

    Shapes: ``xh``, ``xl``: ``B x C x H x W`` -> ``B x C x H x W``.
    Submodule indices follow BasicIRSTD ``model/ACM/fusion.py`` (``topdown.1`` is the first conv, etc.).
    """

    def __init__(self, channels: int, r: int = 4, bn_momentum: float = REFERENCE_BN_MOMENTUM) -> None:
        super().__init__()
        mid = channels // r
        if mid < 1:
            raise ModelError(f"AsymBiChaFuse needs channels >= r ({channels} < {r}); widen the 'channels' option")
        self.topdown = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, mid, 1),
            nn.BatchNorm2d(mid, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1),
            nn.BatchNorm2d(channels, momentum=bn_momentum),
            nn.Sigmoid(),
        )
        self.bottomup = nn.Sequential(
            nn.Conv2d(channels, mid, 1),
            nn.BatchNorm2d(mid, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1),
            nn.BatchNorm2d(channels, momentum=bn_momentum),
            nn.Sigmoid(),
        )
        self.post = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels, momentum=bn_momentum),
            nn.ReLU(inplace=True),
        )

    def forward(self, xh: Tensor, xl: Tensor) -> Tensor:
        return self.post(2 * xl * self.topdown(xh) + 2 * xh * self.bottomup(xl))


class ResBasicBlock(nn.Module):
    """ResNet basic block (two 3x3 conv-BN, identity or 1x1 projection shortcut).

    Same parameter names as ``torchvision.models.resnet.BasicBlock`` (``conv1``, ``bn1``, ``conv2``,
    ``bn2``, ``downsample.0/1``), which the reference uses; its BatchNorms keep PyTorch's momentum 0.1.
    Shapes: ``B x in_ch x H x W -> B x out_ch x H/stride x W/stride``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def make_res_layer(in_ch: int, out_ch: int, blocks: int, stride: int, bn_momentum: float) -> nn.Sequential:
    """``blocks`` basic blocks; the first one strides and projects (1x1 conv + BN with ``bn_momentum``,
    as the reference's ``_make_layer``) when the shape changes."""
    downsample = None
    if stride != 1 or in_ch != out_ch:
        downsample = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
            nn.BatchNorm2d(out_ch, momentum=bn_momentum),
        )
    layers = [ResBasicBlock(in_ch, out_ch, stride, downsample)]
    layers += [ResBasicBlock(out_ch, out_ch) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def make_stem(in_chans: int, width: int, bn_momentum: float) -> nn.Sequential:
    """Input BN, three 3x3 conv-BN-ReLU (the first strided) and a 3x3/2 max-pool.

    Shapes: ``B x in_chans x H x W -> B x 2*width x H/4 x W/4``. Indices as the reference
    (``stem.0`` input BN, ``stem.1`` first conv, ... ``stem.10`` max-pool).
    """
    return nn.Sequential(
        nn.BatchNorm2d(in_chans, momentum=bn_momentum),
        nn.Conv2d(in_chans, width, 3, 2, padding=1, bias=False),
        nn.BatchNorm2d(width, momentum=bn_momentum),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, 1, padding=1, bias=False),
        nn.BatchNorm2d(width, momentum=bn_momentum),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width * 2, 3, 1, padding=1, bias=False),
        nn.BatchNorm2d(width * 2, momentum=bn_momentum),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1),
    )


class FCNHead(nn.Module):
    """FCN head: 3x3 conv-BN-ReLU to ``in_ch // 4`` channels, dropout 0.1, 1x1 conv (with bias).

    Shapes: ``B x in_ch x H x W -> B x out_ch x H x W`` (logits). Keys ``block.0/1/4`` as the reference.
    """

    def __init__(self, in_ch: int, out_ch: int = 1, bn_momentum: float = REFERENCE_BN_MOMENTUM) -> None:
        super().__init__()
        mid = in_ch // 4
        if mid < 1:
            raise ModelError(f"FCNHead needs at least 4 input channels, got {in_ch}; widen the 'channels' option")
        self.block = nn.Sequential(
            nn.Conv2d(in_ch, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(mid, out_ch, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


def check_widths(
    name: str, layers: Sequence[int], channels: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validate the ``layers`` (3 block counts) and ``channels`` (4 widths) options of ACM / ALCNet."""
    layers, channels = tuple(int(n) for n in layers), tuple(int(c) for c in channels)
    if len(layers) != 3 or min(layers) < 1:
        raise ModelError(f"{name}: 'layers' must be 3 positive block counts, got {layers}")
    if len(channels) != 4 or min(channels) < 4:
        raise ModelError(f"{name}: 'channels' must be 4 widths >= 4 (stem, stage 1..3), got {channels}")
    return layers, channels


class ACM(HostNet):
    """ACM host (BasicIRSTD ``ASKCResUNet``). ``B x in_chans x H x W -> B x 1 x H x W`` logits.

    Encoder stages (:meth:`encode`): ``c1`` ``B x 16 x H/4 x W/4``, ``c2`` ``B x 32 x H/8 x W/8``,
    ``c3`` ``B x 64 x H/16 x W/16`` (bottleneck) for the default widths. H and W must be divisible by 32.
    """

    logit_layers = ("head.block.4",)

    def __init__(
        self,
        *,
        in_chans: int = 1,
        layers: Sequence[int] = (3, 3, 3),
        channels: Sequence[int] = (8, 16, 32, 64),
        bn_momentum: float = REFERENCE_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        layers, channels = check_widths("acm", layers, channels)
        m = bn_momentum
        self.stage_channels = channels[1:]
        self.stage_strides = (4, 8, 16)
        self.stem = make_stem(in_chans, channels[0], m)
        self.layer1 = make_res_layer(channels[0] * 2, channels[1], layers[0], 1, m)
        self.layer2 = make_res_layer(channels[1], channels[2], layers[1], 2, m)
        self.layer3 = make_res_layer(channels[2], channels[3], layers[2], 2, m)
        self.deconv2 = nn.ConvTranspose2d(channels[3], channels[2], 4, stride=2, padding=1)
        self.uplayer2 = make_res_layer(channels[2], channels[2], layers[1], 1, m)
        self.fuse2 = AsymBiChaFuse(channels[2], bn_momentum=m)
        self.deconv1 = nn.ConvTranspose2d(channels[2], channels[1], 4, stride=2, padding=1)
        self.uplayer1 = make_res_layer(channels[1], channels[1], layers[0], 1, m)
        self.fuse1 = AsymBiChaFuse(channels[1], bn_momentum=m)
        self.head = FCNHead(channels[1], 1, m)

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[c1, c2, c3]`` at strides 4, 8, 16."""
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [c1, c2, c3]

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor:
        """``[c1, c2, c3]`` -> logits ``B x 1 x H x W`` (``input_size = (H, W)``)."""
        c1, c2, c3 = features
        x = self.uplayer2(self.fuse2(self.deconv2(c3), c2))
        x = self.uplayer1(self.fuse1(self.deconv1(x), c1))
        pred = self.head(x)
        return F.interpolate(pred, size=tuple(input_size), mode="bilinear", align_corners=False)


@register_model(
    "acm",
    published_params=398_000,  # BasicIRSTD table: 0.398M (ours: 397,823)
    published_macs=0.402e9,
    paper="Dai et al., Asymmetric Contextual Modulation for Infrared Small Target Detection, WACV 2021",
    reference="https://github.com/XinyiYing/BasicIRSTD (model/ACM/model_ACM.py, ASKCResUNet)",
)
def acm(
    *,
    in_chans: int = 1,
    layers: Sequence[int] = (3, 3, 3),
    channels: Sequence[int] = (8, 16, 32, 64),
    bn_momentum: float = REFERENCE_BN_MOMENTUM,
) -> ACM:
    """ACM (ASKCResUNet) with BasicIRSTD's defaults: 397,823 parameters for 1-channel input (published
    0.398M; BasicIRSTD builds it with ``in_channels=1`` on grey images). BasicIRSTD publishes 0.402 G
    "FLOPs" (thop MACs) at 1x1x256x256; :func:`irfoundry.models.complexity.complexity` measures 0.343 G
    MACs. The gap is thop's counting rules: a transposed convolution is charged ``C_in * k^2`` per
    *output* element (4x its true MACs at stride 2: 0.067 G instead of 0.017 G here) and every
    BatchNorm 4 operations per element (0.009 G); applied to this model they give 0.402 G exactly.
    No pretrained weights are downloaded; import a BasicIRSTD / LESPS checkpoint with
    :func:`irfoundry.models.checkpoint.import_reference_checkpoint`."""
    return ACM(in_chans=in_chans, layers=layers, channels=channels, bn_momentum=bn_momentum)


__all__ = ["ACM", "AsymBiChaFuse", "FCNHead", "ResBasicBlock", "acm", "make_res_layer", "make_stem"]
