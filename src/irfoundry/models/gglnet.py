"""GGL-Net: a dual-branch U-shaped network that feeds the image's gradient magnitude into every encoder stage.

Zhao, Yu, Shi, Liu, Zhang, "Gradient-Guided Learning Network for Infrared Small Target Detection",
IEEE Geoscience and Remote Sensing Letters 20, 2023 (doi 10.1109/LGRS.2023.3308783, IEEE document 10230271;
arXiv 2512.09497). Reference code, all by the authors (Chuang Yu, YuChuang1205, is the second author):

* ``YuChuang1205/PAL`` ``model/GGL/GGL_no_sigmoid.py`` (``GGL_No_Sigmoid``, logits), ported here. It builds the
  same module tree as ``YuChuang1205/MSDA-Net`` ``model/GGL_Net/model_GGL.py``, the code the paper points to
  (which ends in a sigmoid); both hard-code a 3-channel input.
* ``YuChuang1205/Refined-IRSTD-Scheme-with-Single-Point-Supervision`` ``model/GGLNet/model_GGLNet.py``: the
  authors' LESPS variant, 1-channel input, with four sigmoid heads ``layer_4 .. layer_1`` (deep supervision)
  instead of ``layer``; it is our ``deep_supervision=True``.

Architecture (widths 16 / 32 / 64 / 128 / 256, fixed in the reference):

* gradient branch: the gradient magnitude of the input, ``G = sqrt(((x[j+1] - x[j-1]) / 2)^2 + ((x[i-1] -
  x[i+1]) / 2)^2)`` per channel with zero padding (:func:`gradient_magnitude`; no parameters), and its 2x2
  max-pooled copies at strides 2, 4, 8, 16;
* encoder ``stage`` (the paper's dual-branch feature extraction): a stem ``layer1`` (two conv-BN-ReLU), then
  per stage k = 1..5 ``resnet{k}_1`` (a plain residual block at k = 1, a stride-2 residual block otherwise)
  and two residual blocks with SE attention ``resnet{k}_2``, ``resnet{k}_3``; the gradient supplementary
  module ``Res{k}`` (GSM) encodes the gradient image of the same stride and fuses it residually;
* decoder: local contrast layers ``lcl1 .. lcl5`` (1x1 conv, ReLU, 3x3 conv, ReLU) on every stage, the two-way
  guidance fusion modules ``sbam4 .. sbam1`` (TGFM: the up-sampled deeper map gates the shallower one by
  channel attention, the shallower one gates it by spatial attention, the two are summed), head ``layer``
  (1x1 conv, ReLU, 1x1 conv to one logit map).

Submodule names and state-dict order are the reference's, so its checkpoints load strictly with no key filter:
PAL / MSDA-Net ``best_mIoU_checkpoint_*.pth.tar`` (``{"state_dict": ..., "optimizer": ..., ...}``, bare keys;
``in_chans=3``), and Refined-IRSTD / LESPS checkpoints (``{"state_dict": ...}`` with the ``model.`` prefix of
LESPS's ``Net`` wrapper; ``in_chans=1, deep_supervision=True``).

The gradient branch is an *input* branch: GGL-Net predicts no edge map and has no output besides the target
mask(s), so nothing here is an edge output. PAL's loss (``loss/Edge_loss.py::edgeSCE_loss``) uses an edge map
derived from the *ground-truth mask* by the data loader only to weight the per-pixel BCE (4x on mask edges)
before keeping the hardest half of the pixels; MSDA-Net trains GGL-Net with soft-IoU, LESPS with focal loss
summed over the four heads.

Deviations (none change the weights or the outputs): logits out (the heads' sigmoids of MSDA-Net and
Refined-IRSTD are dropped); no ``mode`` flag (``self.training`` decides); in eval mode with deep supervision
only the main head runs (the reference also computes and discards the side heads).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.models._registry import register_model
from irfoundry.models.base import HostNet

__all__ = ["GGLNet", "gglnet", "gradient_magnitude"]

#: stage widths of the reference (hard-coded there)
WIDTHS = (16, 32, 64, 128, 256)


def gradient_magnitude(x: Tensor) -> Tensor:
    """Per-channel gradient magnitude by central differences with zero padding (the reference's
    ``gradient_1order``): ``B x C x H x W -> B x C x H x W``, ``sqrt(gx^2 + gy^2)`` with
    ``gx[i, j] = (x[i, j+1] - x[i, j-1]) / 2`` and ``gy[i, j] = (x[i-1, j] - x[i+1, j]) / 2``."""
    p = F.pad(x, (1, 1, 1, 1))
    gx = (p[:, :, 1:-1, 2:] - p[:, :, 1:-1, :-2]) * 0.5
    gy = (p[:, :, :-2, 1:-1] - p[:, :, 2:, 1:-1]) * 0.5
    return torch.sqrt(gx * gx + gy * gy)


def _init_reference(module: nn.Module) -> None:
    """The reference's ``weights_init``: Kaiming-normal (fan_out, ReLU) convolutions with zero bias, BatchNorm
    weight 1 / bias 0; applied to the same submodules as there (SE linears and attention convs keep the
    PyTorch defaults)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv_bn(cin: int, cout: int, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    """3x3 conv (bias) -> BN (-> ReLU)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class Up2(nn.Module):
    """Bilinear x2 up-sampling with ``align_corners=True`` (the reference's ``nn.UpsamplingBilinear2d(2)``)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class SqueezeExcite(nn.Module):
    """SE channel gating (the reference's ``SEAttention``): ``x * sigmoid(fc(avgpool(x)))``, ``fc`` = Linear
    (no bias) ``C -> C / reduction``, ReLU, Linear (no bias) back, sigmoid. ``B x C x H x W`` in and out."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = channels // reduction
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False), nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)).view(x.shape[0], x.shape[1], 1, 1)


class ChannelGate(nn.Module):
    """CBAM-style channel gate (the reference's ``ChannelAttention``): ``sigmoid(se(maxpool) + se(avgpool))``
    with ``se`` = 1x1 conv (no bias) ``C -> C / 8``, ReLU, 1x1 conv back. ``B x C x H x W -> B x C x 1 x 1``."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.se = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False), nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.se(F.adaptive_max_pool2d(x, 1)) + self.se(F.adaptive_avg_pool2d(x, 1)))


class SpatialGate(nn.Module):
    """CBAM-style spatial gate (the reference's ``SpatialAttention``): 7x7 conv (with bias) over the channel max
    and channel mean (in that order), sigmoid. ``B x C x H x W -> B x 1 x H x W``."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.conv(torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], 1)))


class PlainResBlock(nn.Module):
    """``relu(x + layer(x))``, ``layer`` = conv-BN-ReLU-conv-BN at constant width (the reference's ``Resnet1``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(*_conv_bn(channels, channels), *_conv_bn(channels, channels, relu=False))
        _init_reference(self.layer)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.layer(x) + x)


class DownResBlock(nn.Module):
    """Stride-2 residual block (the reference's ``Resnet2``): ``relu(layer1(x) + layer2(x))`` with
    ``layer1`` = conv-BN-ReLU, 2x2 max pool, conv-BN and the shortcut ``layer2`` = stride-2 conv-BN-ReLU.
    ``B x cin x H x W -> B x cout x H/2 x W/2`` (H, W even)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(*_conv_bn(cin, cout), nn.MaxPool2d(2, 2), *_conv_bn(cout, cout, relu=False))
        self.layer2 = nn.Sequential(*_conv_bn(cin, cout, stride=2))
        _init_reference(self.layer1)
        _init_reference(self.layer2)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.layer1(x) + self.layer2(x))


class SEResBlock(nn.Module):
    """``relu(x + layer2(SE(layer1(x))))`` with ``layer1`` = conv-BN-ReLU, ``layer2`` = conv-BN (the reference's
    ``Resnet3``; the SE module is registered after ``layer2``, as there)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(*_conv_bn(channels, channels))
        self.layer2 = nn.Sequential(*_conv_bn(channels, channels, relu=False))
        self.SEAttention = SqueezeExcite(channels, reduction=4)
        _init_reference(self.layer1)
        _init_reference(self.layer2)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.layer2(self.SEAttention(self.layer1(x))) + x)


class GradientSupplement(nn.Module):
    """Gradient supplementary module, GSM (the reference's ``Res``).

    ``forward(feat, grad)``: ``feat`` ``B x C x h x w`` (main branch), ``grad`` ``B x in_chans x h x w`` (gradient
    magnitude at the same stride). ``g = layer1(grad)`` (conv-BN-ReLU, SE, conv-BN-ReLU to ``C`` channels), then
    ``relu(feat + layer2(cat(feat, g)))`` with ``layer2`` = conv ``2C -> C``-BN-ReLU, SE, conv-BN.
    """

    def __init__(self, grad_chans: int, channels: int) -> None:
        super().__init__()
        c = channels
        self.layer1 = nn.Sequential(*_conv_bn(grad_chans, c), SqueezeExcite(c, 4), *_conv_bn(c, c))
        self.layer2 = nn.Sequential(*_conv_bn(2 * c, c), SqueezeExcite(c, 4), *_conv_bn(c, c, relu=False))
        _init_reference(self.layer1)
        _init_reference(self.layer2)

    def forward(self, feat: Tensor, grad: Tensor) -> Tensor:
        return F.relu(self.layer2(torch.cat([feat, self.layer1(grad)], 1)) + feat)


class DualBranchEncoder(nn.Module):
    """The reference's ``Stage``: main branch and gradient branch, fused by a GSM at each of the five stages.

    ``forward(x) -> [f1, .., f5]``, ``f_k`` ``B x WIDTHS[k-1] x H/2^(k-1) x W/2^(k-1)``. Child names
    (``layer1``, ``resnet{k}_{1,2,3}``, ``Res{k}``, ``pool``) and their order are the reference's.
    """

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        w = WIDTHS
        self.layer1 = nn.Sequential(*_conv_bn(in_chans, w[0]), *_conv_bn(w[0], w[0]))
        for k in range(1, 6):
            c = w[k - 1]
            setattr(self, f"resnet{k}_1", PlainResBlock(c) if k == 1 else DownResBlock(w[k - 2], c))
            setattr(self, f"resnet{k}_2", SEResBlock(c))
            setattr(self, f"resnet{k}_3", SEResBlock(c))
            setattr(self, f"Res{k}", GradientSupplement(in_chans, c))
        self.pool = nn.MaxPool2d(2, 2)
        _init_reference(self.layer1)

    def forward(self, x: Tensor) -> list[Tensor]:
        grad = gradient_magnitude(x)
        out = self.layer1(x)
        feats = []
        for k in range(1, 6):
            if k > 1:
                grad = self.pool(grad)
            for j in (1, 2, 3):
                out = getattr(self, f"resnet{k}_{j}")(out)
            out = getattr(self, f"Res{k}")(out, grad)
            feats.append(out)
        return feats


class LocalContrast(nn.Module):
    """Local contrast learning layer (the reference's ``LCL``): 1x1 conv, ReLU, 3x3 conv, ReLU (biases, no norm);
    ``B x C x H x W`` in and out."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
        )
        _init_reference(self.layer1)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer1(x)


class TwoWayFusion(nn.Module):
    """Two-way guidance fusion module, TGFM (the reference's ``Sbam``).

    ``forward(high, low)``: ``high`` ``B x cin x h x w`` (deeper), ``low`` ``B x cout x 2h x 2w``.
    ``h = hl_layer(high)`` (x2 bilinear, 1x1 conv, BN, ReLU); returns ``low * hl_layer_2(h) + h * ll_layer(low)``
    (channel gate from the deeper map on the shallower one, spatial gate from the shallower one on the deeper).
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.hl_layer = nn.Sequential(Up2(), nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.hl_layer_2 = ChannelGate(cout)
        self.ll_layer = SpatialGate()
        _init_reference(self.hl_layer)

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        high = self.hl_layer(high)
        return low * self.hl_layer_2(high) + high * self.ll_layer(low)


def _side_head(cin: int, ups: int) -> nn.Sequential:
    """Refined-IRSTD's ``layer_k``: 1x1 conv to ``cin / 2``, ReLU, then ``ups`` times (x2 up-sampling, 1x1 conv
    halving the width), the last conv to one channel; 1x1 conv 16 -> 16, ReLU, 1x1 conv 16 -> 1 when ``ups = 0``.
    Module indices are the reference's (its trailing ``Sigmoid`` is dropped: logits out)."""
    if ups == 0:
        return nn.Sequential(nn.Conv2d(cin, cin, 1), nn.ReLU(), nn.Conv2d(cin, 1, 1))
    layers: list[nn.Module] = [nn.Conv2d(cin, cin // 2, 1), nn.ReLU()]
    c = cin // 2
    for i in range(ups):
        out = 1 if i == ups - 1 else c // 2
        layers += [Up2(), nn.Conv2d(c, out, 1)]
        c = out
    return nn.Sequential(*layers)


class GGLNet(HostNet):
    """GGL-Net. ``B x in_chans x H x W -> B x 1 x H x W`` logits (H, W divisible by 16).

    Encoder stages (:meth:`encode`): the five outputs of the reference's ``Stage`` (``stage``), i.e. each stage's
    features *after* its gradient supplementary module, ``stage_channels = (16, 32, 64, 128, 256)`` at
    ``stage_strides = (1, 2, 4, 8, 16)``; the last is the bottleneck. The gradient branch lives entirely inside
    the encoder (it is recomputed from ``x`` there and reaches the decoder only through these features), so a
    fusion module that modulates the stage features (SAMF on the bottleneck, SCAM on every stage) sees the
    gradient-fused features, exactly the tensors the reference's decoder (``lcl*``) consumes.
    :meth:`decode`: local contrast layers, the TGFM chain and the head(s).

    Outputs: ``deep_supervision=False`` (PAL / MSDA-Net, the paper): one map in both modes.
    ``deep_supervision=True`` (Refined-IRSTD): eval mode ``layer_1``'s map; training mode
    ``[main, side_2, side_4, side_8]`` = the logits of ``layer_1 .. layer_4`` (fed by the fused maps at strides
    1, 2, 4, 8; every head up-samples to full resolution itself), four ``B x 1 x H x W`` maps, main first. The
    reference returns them as ``[output4, output3, output2, output1]`` (main last) and LESPS sums one loss over
    the four with equal weights.
    """

    input_multiple = 16

    def __init__(self, *, in_chans: int = 1, deep_supervision: bool = False) -> None:
        super().__init__()
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ModelError(f"in_chans must be an integer >= 1, got {in_chans!r}")
        if not isinstance(deep_supervision, bool):
            raise ModelError(f"deep_supervision must be True or False, got {deep_supervision!r}")
        w = WIDTHS
        self.stage_channels = w
        self.stage_strides = (1, 2, 4, 8, 16)
        self.deep_supervision = deep_supervision

        self.stage = DualBranchEncoder(in_chans)
        for k in (5, 4, 3, 2, 1):
            setattr(self, f"lcl{k}", LocalContrast(w[k - 1]))
        for k in (4, 3, 2, 1):
            setattr(self, f"sbam{k}", TwoWayFusion(w[k], w[k - 1]))
        if deep_supervision:
            for k in (4, 3, 2, 1):
                setattr(self, f"layer_{k}", _side_head(w[k - 1], k - 1))
                _init_reference(getattr(self, f"layer_{k}"))
            self.logit_layers = ("layer_1.2", "layer_2.3", "layer_3.5", "layer_4.7")
        else:
            self.layer = nn.Sequential(nn.Conv2d(w[0], w[0], 1), nn.ReLU(inplace=True), nn.Conv2d(w[0], 1, 1))
            _init_reference(self.layer)
            self.logit_layers = ("layer.2",)

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[f1, .., f5]``, ``B x stage_channels[i] x H/2^i x W/2^i``."""
        return self.stage(x)

    def fused_features(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Stage features -> the decoder's fused maps ``[d1, d2, d3, d4]`` (the reference's ``out1_2 .. out4_2``),
        ``B x stage_channels[i] x H/2^i x W/2^i``: the inputs of the heads."""
        self.check_stage_features(features)
        local = [getattr(self, f"lcl{k}")(f) for k, f in zip(range(1, 6), features)]
        fused = [local[4]]
        for k in (4, 3, 2, 1):
            fused.insert(0, getattr(self, f"sbam{k}")(fused[0], local[k - 1]))
        return fused[:4]

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor | list[Tensor]:
        """Stage features -> logits ``B x 1 x H x W``; with ``deep_supervision`` in training mode the list
        ``[main, side_2, side_4, side_8]`` (all ``B x 1 x H x W``, main first)."""
        fused = self.fused_features(features)
        if not self.deep_supervision:
            return self.layer(fused[0])
        if not self.training:
            return self.layer_1(fused[0])
        return [getattr(self, f"layer_{k}")(fused[k - 1]) for k in (1, 2, 3, 4)]


@register_model(
    "gglnet",
    published_params=None,
    published_macs=None,
    paper="Zhao et al., Gradient-Guided Learning Network for Infrared Small Target Detection, IEEE GRSL 2023",
    reference="https://github.com/YuChuang1205/PAL",
)
def gglnet(*, in_chans: int = 1, deep_supervision: bool = False) -> GGLNet:
    """GGL-Net, reference configuration: 8,978,877 parameters at ``in_chans=1``; 8,988,093 at ``in_chans=3``, the
    PAL / MSDA-Net reference ``GGL_No_Sigmoid()`` (the input width enters ``stage.layer1.0`` and the five
    ``stage.Res{k}.layer1.0``). ``deep_supervision=True``: the authors' Refined-IRSTD / LESPS variant with four
    heads, 8,992,928 parameters at ``in_chans=1`` (as there). The paper publishes no parameter or MAC count.
    Untrained; load reference checkpoints with :func:`irfoundry.models.checkpoint.import_reference_checkpoint`.
    """
    return GGLNet(in_chans=in_chans, deep_supervision=deep_supervision)
