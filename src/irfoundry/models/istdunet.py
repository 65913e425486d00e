"""ISTDU-Net: a U-Net with a ResNeSt encoder, external attention on the skips and additive skip connections.

Hou, Zhang, Tan, Xi, Zheng, Li, "ISTDU-Net: Infrared Small-Target Detection U-Net", IEEE Geoscience and Remote
Sensing Letters 19, 7506205, 2022 (doi:10.1109/LGRS.2022.3141584; no arXiv version). Ported from BasicIRSTD's copy,
XinyiYing/BasicIRSTD @ 95650c3 ``model/ISTDUNet/model_ISTDUNet.py`` (with ``resnet2020.py``, ``splat.py``,
``eta.py``, ``minet.py``), checked against the authors' code (zhanglw882/ISTDU-Net, copied in BasicIRSTD as
``model/ISTDU-Net-main``: ``model/ctNet/ctNet.py``, ``train_DS.py``, ``detect.py``), which builds the same modules.

Architecture (widths and depths hard-coded in the reference; ``channels`` / ``layers`` below):

* ``down`` (encoder): ``stem`` = BatchNorm of the raw input (``affine=False``: the network standardises its input
  with running statistics) -> 3x3 conv ``in_chans -> 16`` (no bias) -> BN -> ReLU; then ``down`` = four ResNeSt
  stages (:class:`irfoundry.layers.split_attention.SplitAttentionResNet`: split attention with radix 2,
  cardinality 4, bottleneck width 16, ResNet-D shortcuts) of 1, 2, 4, 8 bottlenecks, widths 64 / 128 / 256 / 512
  at strides 1 / 2 / 4 / 8;
* ``DN``: residual external attention (Guo et al., "Beyond Self-attention: External Attention using Two Linear
  Layers for Visual Tasks", arXiv 2105.02358; 64 memory units) on each of the four stages, ``DN.X1 .. DN.X4``;
* ``up``: from the bottleneck, three 1x1 conv-BN-ReLU steps (``up1 .. up3``, 512 -> 256 -> 128 -> 64), each followed
  by x2 bilinear up-sampling (``align_corners=False``) and the *addition* of the attended stage of that stride;
* ``headSeg``: 3x3 conv 64 -> 16 (no bias), BN, ReLU, 1x1 conv 16 -> 1 (bias): the mask logits;
  ``headDet``: the same head, for a target-centre heatmap (below).

Outputs. BasicIRSTD's ``forward`` returns ``sigmoid(headSeg(.))`` only; the authors' returns
``(sigmoid(headDet(.)), sigmoid(headSeg(.)))``: ``train_DS.py`` trains ``headDet`` with an MSE loss against a
CenterNet-style Gaussian heatmap of the target centres (radius 3) and ``headSeg`` with an MSE loss against the mask,
and selects checkpoints on the heatmap's peaks; ``detect.py`` shows the mask output (``'ds'``) or the element-wise
maximum of both (``'dsadd'``). Ours returns logits (no sigmoid), the mask logits ``B x 1 x H x W`` in both modes
(there is no deep supervision, so a tensor in training too). The heatmap is not a mask prediction, so it is not a
deep-supervision output: :meth:`ISTDUNet.forward_with_heatmap` returns ``(mask_logits, heatmap_logits)``; the
default path never calls ``headDet`` (BasicIRSTD's training leaves it at its initial values), hence
``unused_modules = ("headDet",)``. It is kept so both codes' checkpoints load strictly.

Weights tied in the reference only by accident: its external attention sets ``linear_1.weight.data`` to a
transposed *view* of ``linear_0.weight``, so on a freshly built CPU model the two share storage. ``.cuda()``,
``.to()`` and ``.double()`` copy each parameter separately, and both BasicIRSTD (``Net(...).cuda()``) and the authors
(``DataParallel(...).cuda()``) move the model before training, so in every trained checkpoint the two are
independent. Ours are independent parameters from the start, ``linear_0`` initialised to the transpose of
``linear_1`` as the reference's initial values are.

Other deviations (none change the weights or the outputs for valid inputs): up-sampling to the skip's size
instead of a scale factor (identical when the sides are multiples of 8); logits instead of probabilities.

Reference checkpoints: BasicIRSTD's ``train.py`` writes ``{'epoch', 'state_dict', 'total_loss'}`` with keys
prefixed ``model.`` (its ``Net`` wrapper); the authors' ``save_pth/ISTDU_Net/best.pth`` is a bare state dict of
``nn.DataParallel`` (``module.`` prefix). Both load with
:func:`irfoundry.models.checkpoint.import_reference_checkpoint`, no key filter.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.layers.split_attention import EXPANSION, SplitAttentionResNet
from irfoundry.models._registry import register_model
from irfoundry.models.base import HostNet, check_input_size

__all__ = ["ExternalAttention", "ISTDUNet", "istdunet"]

#: stem width of the reference (``stemWidth * 2`` with ``stemWidth = 8``), the encoder's input width
STEM_WIDTH = 16


def _init_conv(conv: nn.Conv2d | nn.Conv1d) -> None:
    """The reference's ``N(0, 2 / (prod(kernel) * C_out))`` weight initialisation (biases keep PyTorch's)."""
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (math.prod(conv.kernel_size) * conv.out_channels)))


class ExternalAttention(nn.Module):
    """Residual external attention (the reference's ``External_attention``): ``B x C x H x W -> B x C x H x W``.

    ``conv1`` (1x1, bias) -> ``linear_0`` (``C -> k`` memory units, 1x1 Conv1d, no bias) -> softmax over the
    ``H * W`` positions -> division by the sum over the ``k`` units (+1e-9) -> ``linear_1`` (``k -> C``) ->
    ``conv2`` (1x1 conv, no bias, BN) -> + input. Names ``conv1, linear_0, linear_1, conv2.0, conv2.1``.
    """

    def __init__(self, channels: int, memory: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.linear_0 = nn.Conv1d(channels, memory, 1, bias=False)
        self.linear_1 = nn.Conv1d(memory, channels, 1, bias=False)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        _init_conv(self.conv1)
        _init_conv(self.conv2[0])
        _init_conv(self.linear_1)
        with torch.no_grad():  # the reference's (storage-shared) initial values: linear_0 = linear_1 transposed
            self.linear_0.weight.copy_(self.linear_1.weight.permute(1, 0, 2))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        attn = self.linear_0(self.conv1(x).view(b, c, h * w)).softmax(dim=-1)  # B x k x HW
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))
        return self.conv2(self.linear_1(attn).view(b, c, h, w)) + x


class _Encoder(nn.Module):
    """The reference's ``Down``: ``stem`` then ``down`` (four ResNeSt stages); returns the four stage maps."""

    def __init__(self, in_chans: int, layers: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.BatchNorm2d(in_chans, affine=False),
            nn.Conv2d(in_chans, STEM_WIDTH, 3, padding=1, bias=False),
            nn.BatchNorm2d(STEM_WIDTH),
            nn.ReLU(inplace=True),
        )
        self.down = SplitAttentionResNet(STEM_WIDTH, layers, channels, radix=2, cardinality=4, bottleneck_width=16)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.down(self.stem(x))


def _conv1x1_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class _AdditiveDecoder(nn.Module):
    """The reference's ``UPCt``: ``[x1, x2, x3, x4] -> B x C1 x H x W`` with
    ``y = x3 + up(up1(x4)); y = x2 + up(up2(y)); y = x1 + up(up3(y))`` (``up``: bilinear to the skip's size)."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        self.up1 = _conv1x1_bn_relu(widths[3], widths[2])
        self.up2 = _conv1x1_bn_relu(widths[2], widths[1])
        self.up3 = _conv1x1_bn_relu(widths[1], widths[0])

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        x1, x2, x3, x4 = feats
        y = x4
        for conv, skip in ((self.up1, x3), (self.up2, x2), (self.up3, x1)):
            y = skip + F.interpolate(conv(y), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return y


class _Head(nn.Module):
    """The reference's ``Head``: 3x3 conv ``C -> C // 4`` (no bias), BN, ReLU, 1x1 conv ``-> 1`` (bias)."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        mid = in_ch // 4
        self.head = nn.Sequential(
            nn.Conv2d(in_ch, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, 1, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x)


class _StageAttention(nn.Module):
    """The reference's ``EDN``: one :class:`ExternalAttention` per stage, ``X1 .. X4``."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        for i, c in enumerate(widths):
            self.add_module(f"X{i + 1}", ExternalAttention(c))

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        return [getattr(self, f"X{i + 1}")(f) for i, f in enumerate(feats)]


class ISTDUNet(HostNet):
    """ISTDU-Net. ``B x in_chans x H x W -> B x 1 x H x W`` mask logits (H, W divisible by 8), in both modes.

    Encoder stages (:meth:`encode`, the reference's ``Down``): ``[x1, x2, x3, x4]``, the four ResNeSt stage
    outputs, ``stage_channels = 4 * channels`` (default 64, 128, 256, 512) at ``stage_strides = (1, 2, 4, 8)``;
    ``x4`` is the bottleneck. The stem's 16-channel map feeds only ``x1`` and is not a stage.

    Decoder (:meth:`decode`): the external attention ``DN`` on every stage, the additive decoder ``up`` and the
    mask head ``headSeg``. The split is the reference's own (``funIndividual`` = ``down``; ``funDecode`` = ``DN``
    then ``up``): the external attention only re-weights each stage on its way into the skip connection, so a
    fusion module placed between :meth:`encode` and :meth:`decode` (FDEP's SAMF on ``x4``, SCAM on every stage)
    modulates the ResNeSt features themselves, and the external attention then acts on the fused features.

    ``headDet`` (heatmap head of the authors' code) is not called by :meth:`forward`; see
    :meth:`forward_with_heatmap` and the module docstring. In training mode a batch needs at least two images
    (split attention normalises ``B x C x 1 x 1`` vectors; BasicIRSTD skips one-image batches).
    """

    input_multiple = 8
    logit_layers = ("headSeg.head.3",)
    unused_modules = ("headDet",)

    def __init__(
        self, *, in_chans: int = 1, layers: Sequence[int] = (1, 2, 4, 8), channels: Sequence[int] = (16, 32, 64, 128)
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ModelError(f"in_chans must be >= 1, got {in_chans}")
        layers, channels = tuple(int(n) for n in layers), tuple(int(c) for c in channels)
        if len(layers) != 4 or min(layers) < 1:
            raise ModelError(f"ISTDU-Net needs 4 block counts >= 1, got layers={layers}")
        if len(channels) != 4 or any(c < 8 or c % 8 for c in channels):
            raise ModelError(
                f"ISTDU-Net needs 4 bottleneck widths that are positive multiples of 8 (split attention: "
                f"cardinality 4, radix 2), got channels={channels}"
            )
        widths = tuple(EXPANSION * c for c in channels)
        self.stage_channels = widths
        self.stage_strides = (1, 2, 4, 8)
        # registration order = the reference's state-dict order: down, up, headDet, headSeg, DN
        self.down = _Encoder(in_chans, layers, channels)
        self.up = _AdditiveDecoder(widths)
        self.headDet = _Head(widths[0])
        self.headSeg = _Head(widths[0])
        self.DN = _StageAttention(widths)

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[x1, x2, x3, x4]``, ``B x stage_channels[i] x H / 2^i x W / 2^i``."""
        return self.down(x)

    def decoder_features(self, features: Sequence[Tensor]) -> Tensor:
        """Stage features -> the decoder's full-resolution map ``B x stage_channels[0] x H x W`` (both heads' input)."""
        self.check_stage_features(features)
        return self.up(self.DN(features))

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor:
        """Stage features -> mask logits ``B x 1 x H x W`` (a tensor in both modes: no deep supervision)."""
        return self.headSeg(self.decoder_features(features))

    def forward_with_heatmap(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``B x in_chans x H x W`` -> ``(mask_logits, heatmap_logits)``, both ``B x 1 x H x W``: the authors'
        two outputs before their sigmoid (in their order ``(headDet, headSeg)`` reversed, mask first). Their
        ``train_DS.py`` fits ``sigmoid(heatmap_logits)`` to a Gaussian heatmap of the target centres and
        ``sigmoid(mask_logits)`` to the mask, both with MSE."""
        check_input_size(x, self.input_multiple)
        y = self.decoder_features(self.encode(x))
        return self.headSeg(y), self.headDet(y)


@register_model(
    "istdunet",
    published_params=2_752_000,  # BasicIRSTD table: 2.752M (= ours without the unused headDet: 2,751,873)
    published_macs=7.944e9,  # BasicIRSTD table (thop): 7.944G; true MACs 7.711G (see tests/models/test_istdunet.py)
    paper="Hou et al., ISTDU-Net: Infrared Small-Target Detection U-Net, IEEE GRSL 2022",
    reference="https://github.com/zhanglw882/ISTDU-Net (BasicIRSTD: XinyiYing/BasicIRSTD model/ISTDUNet)",
)
def istdunet(
    *, in_chans: int = 1, layers: Sequence[int] = (1, 2, 4, 8), channels: Sequence[int] = (16, 32, 64, 128)
) -> ISTDUNet:
    """ISTDU-Net, reference configuration: 2,761,138 parameters at ``in_chans=1`` (the reference's only input
    width), of which 2,751,873 outside the unused ``headDet`` (BasicIRSTD's published 2.752M); 2,761,426 at
    ``in_chans=3``. Untrained; load reference checkpoints with
    :func:`irfoundry.models.checkpoint.import_reference_checkpoint`.

    ``layers``: bottlenecks per ResNeSt stage (reference 1, 2, 4, 8); ``channels``: their bottleneck widths
    (reference 16, 32, 64, 128; stage widths are 4x, multiples of 8 required). Fixed in the reference, exposed for
    ablations.
    """
    return ISTDUNet(in_chans=in_chans, layers=layers, channels=channels)
