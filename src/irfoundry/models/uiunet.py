"""UIU-Net: U-Net in U-Net for infrared small object detection.

Paper: X. Wu, D. Hong, J. Chanussot, "UIU-Net: U-Net in U-Net for Infrared Small Object Detection",
IEEE Transactions on Image Processing 32, 2023. Reference code: ``danfenghong/IEEE_TIP_UIU-Net``
(``model/uiunet.py``, ``model/fusion.py``) and the copy in ``XinyiYing/BasicIRSTD``
(``model/UIUNet/model_UIUNet.py``, ``fusion.py``), which builds it with ``in_ch=1``.

Architecture (as in the reference code, default configuration):

* An outer U-Net (U^2-Net layout) whose every stage is a *residual U-block* (RSU): a small U-Net of
  height L inside the stage, plus a residual connection (:class:`RSU`). Encoder stages
  ``stage1..stage6`` = RSU7, RSU6, RSU5, RSU4, RSU4F, RSU4F (``F``: dilated, no inner down-sampling),
  with 2x2 max-pooling between stages (ceil mode). Decoder stages ``stage5d..stage1d`` = RSU4F, RSU4,
  RSU5, RSU6, RSU7.
* Interactive-cross attention (IC-A, ``AsymBiChaFuseReduce`` in the reference) fuses the up-sampled deep
  feature with the encoder skip at decoder levels 5, 4, 3 and 2 (:class:`InteractiveCrossAttention`);
  level 1 uses plain concatenation.
* Resolution-maintenance deep supervision: a 3x3 side convolution on ``stage6`` and on every decoder
  stage, each up-sampled to the input size, and a 1x1 ``outconv`` fusing the six side maps into ``d0``.

Submodule names are the reference's, so a BasicIRSTD checkpoint (keys ``model.<ref key>``, 1-channel
input) or one saved by the authors' code (a bare state dict of ``UIUNET(3, 1)``: pass ``in_chans=3``)
loads strictly with :func:`irfoundry.models.checkpoint.import_reference_checkpoint` and no key filter.

Size at ``in_chans=1``: 50,540,309 parameters (the reference code's count, printed as 50.5 M in
BasicIRSTD's table; 50,541,461 at ``in_chans=3``); 54.22 G MACs at 1x1x256x256 by
:func:`irfoundry.models.complexity.complexity` (BasicIRSTD publishes 54.4 G).

Deviations from the reference (behaviour, not weights):

* ``forward`` returns logits; the reference applies a sigmoid to every output.
* Deep supervision follows ``self.training``; the reference uses a ``mode='train'|'test'`` constructor
  flag. Training mode returns ``[d0, d1, ..., d6]`` (fused output first, as the reference orders it).
* The output has one channel (the reference's ``out_ch`` argument is fixed to 1).
* Training needs a batch of at least 2 samples: the IC-A channel branch applies BatchNorm to globally
  pooled 1x1 features (a limit of the reference too); we raise :class:`ModelError` saying so.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.models._registry import register_model
from irfoundry.models.base import HostNet

__all__ = ["RSU", "InteractiveCrossAttention", "UIUNet", "uiunet"]


def _upsample_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize to ``size`` (``align_corners=False``, what the reference's ``F.upsample`` does)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _pool(x: Tensor) -> Tensor:
    """2x2 max-pooling, stride 2, ceil mode (``B x C x H x W -> B x C x ceil(H/2) x ceil(W/2)``)."""
    return F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


class REBNConv(nn.Module):
    """3x3 conv (with bias, dilation ``dilation``, same padding) -> BatchNorm -> ReLU.

    ``B x in_ch x H x W -> B x out_ch x H x W``. Attribute names ``conv_s1`` / ``bn_s1`` are the
    reference's ``REBNCONV`` ones (checkpoint keys).
    """

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of height ``height`` (RSU-L of U^2-Net, the "inner U-Net" of UIU-Net).

    ``B x in_ch x H x W -> B x out_ch x H x W``.

    ``x_in = rebnconvin(x)``; an inner encoder ``rebnconv1 .. rebnconv{L-1}`` (``rebnconv1`` maps
    ``out_ch -> mid_ch``) with 2x2 max-pooling after each of the first ``L-2`` convolutions; a bridge
    ``rebnconvL`` with dilation 2; an inner decoder ``rebnconv{L-1}d .. rebnconv1d`` on the concatenation
    (deeper, skip), bilinear up-sampling back to the skip size, ``rebnconv1d`` mapping ``2 mid_ch ->
    out_ch``; output ``x_in + decoder output``.

    ``dilated=True`` gives RSU-4F: no pooling, dilations ``1, 2, 4, 8`` for ``rebnconv1..4`` and
    ``4, 2, 1`` for ``rebnconv3d..1d``.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int, *, dilated: bool = False) -> None:
        super().__init__()
        if height < 3:
            raise ModelError(f"RSU height must be at least 3, got {height}")
        self.height = height
        self.dilated = dilated
        self.rebnconvin = REBNConv(in_ch, out_ch)
        for i in range(1, height + 1):
            dil = 2 ** (i - 1) if dilated else (2 if i == height else 1)
            self.add_module(f"rebnconv{i}", REBNConv(out_ch if i == 1 else mid_ch, mid_ch, dil))
        for i in range(height - 1, 0, -1):
            dil = 2 ** (i - 1) if dilated else 1
            self.add_module(f"rebnconv{i}d", REBNConv(2 * mid_ch, out_ch if i == 1 else mid_ch, dil))

    def forward(self, x: Tensor) -> Tensor:
        x_in = self.rebnconvin(x)
        skips: list[Tensor] = []
        h = x_in
        for i in range(1, self.height):
            h = getattr(self, f"rebnconv{i}")(h)
            skips.append(h)
            if not self.dilated and i < self.height - 1:
                h = _pool(h)
        h = getattr(self, f"rebnconv{self.height}")(h)
        for i in range(self.height - 1, 0, -1):
            h = getattr(self, f"rebnconv{i}d")(torch.cat((h, skips[i - 1]), dim=1))
            if not self.dilated and i > 1:
                h = _upsample_to(h, skips[i - 2].shape[-2:])
        return h + x_in


class SpatialAttention(nn.Module):
    """Channel mean and max -> 3x3 conv (no bias) -> one spatial logit map.

    ``B x C x H x W -> B x 1 x H x W`` (no sigmoid here; the caller applies it).
    """

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size not in (3, 7):
            raise ModelError(f"SpatialAttention kernel_size must be 3 or 7, got {kernel_size}")
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        stats = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)
        return self.conv1(stats)


class InteractiveCrossAttention(nn.Module):
    """Interactive-cross attention (IC-A) of UIU-Net (reference class ``AsymBiChaFuseReduce``, r = 4).

    Inputs: ``xh`` (deep, up-sampled) ``B x high_ch x H x W`` and ``xl`` (encoder skip)
    ``B x ch x H x W``. Outputs two ``B x ch x H x W`` maps, which the decoder concatenates:

    * ``xh = ReLU(BN(conv1x1(xh)))``;
    * top-down channel weights ``wc = sigmoid(BN(conv(ReLU(BN(conv(GAP(xh)))))))`` (``B x ch x 1 x 1``,
      bottleneck ``ch / 4``);
    * bottom-up spatial weights ``ws = sigmoid(SA(ReLU(BN(conv1x1(xl * wc)))))`` (``B x 1 x H x W``);
    * ``out1 = post(2 xl wc)``, ``out2 = post(2 xh ws)`` -- ``post`` (3x3 conv-BN-ReLU) is ONE module
      applied to both, as in the reference.

    Submodule names and ``nn.Sequential`` indices are the reference's (checkpoint keys).
    """

    def __init__(self, high_ch: int, ch: int, reduction: int = 4) -> None:
        super().__init__()
        mid = ch // reduction
        self.feature_high = nn.Sequential(nn.Conv2d(high_ch, ch, 1), nn.BatchNorm2d(ch), nn.ReLU(inplace=True))
        self.topdown = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(ch, mid, 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, ch, 1),
            nn.BatchNorm2d(ch),
            nn.Sigmoid(),
        )
        self.bottomup = nn.Sequential(
            nn.Conv2d(ch, mid, 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            SpatialAttention(3),
            nn.Sigmoid(),
        )
        self.post = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(inplace=True))

    def forward(self, xh: Tensor, xl: Tensor) -> tuple[Tensor, Tensor]:
        xh = self.feature_high(xh)
        channel_w = self.topdown(xh)
        spatial_w = self.bottomup(xl * channel_w)
        return self.post(2 * xl * channel_w), self.post(2 * xh * spatial_w)


class UIUNet(HostNet):
    """UIU-Net host. ``B x in_chans x H x W -> B x 1 x H x W`` logits (H, W divisible by 32).

    Encoder stages (``encode``), shallow to deep, ``B x C_i x H/s_i x W/s_i``:
    ``stage1`` (64, 1), ``stage2`` (128, 2), ``stage3`` (256, 4), ``stage4`` (512, 8), ``stage5`` (512, 16),
    ``stage6`` = bottleneck (512, 32).

    ``decode`` returns, in training mode, ``[d0, d1, ..., d6]`` (seven ``B x 1 x H x W`` logits: fused map
    first, then the side outputs of ``stage1d, stage2d, stage3d, stage4d, stage5d, stage6``); in eval mode
    ``d0`` alone.
    """

    logit_layers = ("side1", "side2", "side3", "side4", "side5", "side6")
    logit_fusion_layers = ("outconv",)

    def __init__(self, *, in_chans: int = 1) -> None:
        super().__init__()
        self.stage_channels = (64, 128, 256, 512, 512, 512)
        self.stage_strides = (1, 2, 4, 8, 16, 32)
        # encoder (reference names stage1..stage6)
        self.stage1 = RSU(7, in_chans, 32, 64)
        self.stage2 = RSU(6, 64, 32, 128)
        self.stage3 = RSU(5, 128, 64, 256)
        self.stage4 = RSU(4, 256, 128, 512)
        self.stage5 = RSU(4, 512, 256, 512, dilated=True)
        self.stage6 = RSU(4, 512, 256, 512, dilated=True)
        # decoder
        self.stage5d = RSU(4, 1024, 256, 512, dilated=True)
        self.stage4d = RSU(4, 1024, 128, 256)
        self.stage3d = RSU(5, 512, 64, 128)
        self.stage2d = RSU(6, 256, 32, 64)
        self.stage1d = RSU(7, 128, 16, 64)
        # deep supervision: side outputs of stage1d..stage5d and stage6, fused by a 1x1 conv
        self.side1 = nn.Conv2d(64, 1, 3, padding=1)
        self.side2 = nn.Conv2d(64, 1, 3, padding=1)
        self.side3 = nn.Conv2d(128, 1, 3, padding=1)
        self.side4 = nn.Conv2d(256, 1, 3, padding=1)
        self.side5 = nn.Conv2d(512, 1, 3, padding=1)
        self.side6 = nn.Conv2d(512, 1, 3, padding=1)
        self.outconv = nn.Conv2d(6, 1, 1)
        # interactive-cross attention at decoder levels 5..2
        self.fuse5 = InteractiveCrossAttention(512, 512)
        self.fuse4 = InteractiveCrossAttention(512, 512)
        self.fuse3 = InteractiveCrossAttention(256, 256)
        self.fuse2 = InteractiveCrossAttention(128, 128)

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[hx1, ..., hx6]`` (see the class docstring for shapes)."""
        if self.training and x.shape[0] < 2:
            raise ModelError(
                "UIU-Net cannot train on a batch of 1: its attention applies BatchNorm to 1x1 pooled "
                "features. Use a batch size of at least 2 (or call model.eval() for inference)."
            )
        feats = []
        for i, stage in enumerate((self.stage1, self.stage2, self.stage3, self.stage4, self.stage5, self.stage6)):
            x = stage(x if i == 0 else _pool(x))
            feats.append(x)
        return feats

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor | list[Tensor]:
        """``[hx1, ..., hx6]`` -> ``d0`` (eval) or ``[d0, d1, ..., d6]`` (training), ``B x 1 x H x W`` logits."""
        self.check_stage_features(features)
        hx1, hx2, hx3, hx4, hx5, hx6 = features
        h = hx6
        decoded = []
        for fuse, stage, skip in (
            (self.fuse5, self.stage5d, hx5),
            (self.fuse4, self.stage4d, hx4),
            (self.fuse3, self.stage3d, hx3),
            (self.fuse2, self.stage2d, hx2),
        ):
            h = stage(torch.cat(fuse(_upsample_to(h, skip.shape[-2:]), skip), dim=1))
            decoded.append(h)
        hx5d, hx4d, hx3d, hx2d = decoded
        hx1d = self.stage1d(torch.cat((_upsample_to(hx2d, hx1.shape[-2:]), hx1), dim=1))

        size = tuple(input_size)
        sides = [self.side1(hx1d)]
        deeper = ((self.side2, hx2d), (self.side3, hx3d), (self.side4, hx4d), (self.side5, hx5d), (self.side6, hx6))
        for side, feat in deeper:
            sides.append(_upsample_to(side(feat), size))
        d0 = self.outconv(torch.cat(sides, dim=1))
        return [d0, *sides] if self.training else d0


@register_model(
    "uiunet",
    published_params=50_540_309,
    published_macs=54.4e9,
    paper="Wu, Hong, Chanussot, UIU-Net: U-Net in U-Net for Infrared Small Object Detection, IEEE TIP 2023",
    reference="https://github.com/danfenghong/IEEE_TIP_UIU-Net (BasicIRSTD: XinyiYing/BasicIRSTD model/UIUNet)",
)
def uiunet(*, in_chans: int = 1) -> UIUNet:
    """UIU-Net, reference configuration (RSU7-6-5-4-4F-4F encoder, IC-A fusion at 4 decoder levels).

    Builds untrained weights. Checkpoints of the reference code load strictly with
    ``import_reference_checkpoint(path, "uiunet")`` (BasicIRSTD, ``model.`` prefix, 1-channel) or
    ``import_reference_checkpoint(path, "uiunet", in_chans=3)`` (the authors' repository, RGB input).
    """
    return UIUNet(in_chans=in_chans)
