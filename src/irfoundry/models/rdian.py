"""RDIAN: receptive-field and direction induced attention network.

Sun, Bai, Yang, Bai, "Receptive-Field and Direction Induced Attention Network for Infrared Dim Small Target
Detection With a Large-Scale Dataset IRDST", IEEE TGRS 61, 2023 (doi 10.1109/TGRS.2023.3235150; no arXiv
version). Reference code: BasicIRSTD's copy ``model/RDIAN/model_RDIAN.py``, ``cbam.py``, ``direction.py``
(XinyiYing/BasicIRSTD @ 95650c3), identical module tree to the authors' ``model/segmentation.py`` in
sun11999/RDIAN (@ e1df518), which also publishes trained weights (``params/best.pth``).

Architecture (widths fixed by the reference; 1-channel input):

* direction-induced attention (DiA, computed on the input image): eight fixed 5x5 kernels ``d11 .. d18``,
  each ``x(p) - x(p + o)`` for an offset ``o`` of length 2 in one of the eight compass directions; the
  products of opposite directions are summed, ``md = sigmoid(d11 d15 + d12 d16 + d13 d17 + d14 d18)``
  (``B x 1 x H x W``), a local-contrast map that is large where a pixel differs from both neighbours along
  a line (a small target) and small along edges;
* ``conv1``: conv3x3-BN-LeakyReLU ``in_chans -> 16`` (full resolution), modulated ``out1 + out1 * md``;
  ``conv2``: the same block ``16 -> 32`` at stride 2;
* receptive-field branches ``residual_block0 .. 3`` on that stride-2 map: 1 / 2 / 2 / 2 residual bottleneck
  blocks (conv-BN-LeakyReLU ``32 -> 16 -> 32`` plus identity) with kernels 1 / 3 / 5 / 7;
  concatenated (128 channels), fused by ``conv_cat`` (conv3x3-BN-LeakyReLU ``-> 32``) and refined by
  ``cbam`` (CBAM, Woo et al. ECCV 2018, see :class:`RDIANCBAM`);
* head: bilinear up-sampling of the CBAM output to the input size (``align_corners=False``), plus
  ``conv_res(out1)`` (conv1x1-BN-LeakyReLU ``16 -> 32``), ReLU, and the FCN head ``head`` (conv3x3-BN-ReLU
  ``32 -> 8``, dropout 0.1, conv1x1 ``8 -> 1`` with bias).

There is no deep supervision: one output in both modes. Submodule names are the reference's, so its
checkpoints load strictly with no key filter: the authors' ``train.py`` and ``params/best.pth`` store a bare
state dict (a ``module.`` prefix if trained with several GPUs, ``DataParallel``); BasicIRSTD's ``train.py``
stores ``{"epoch", "state_dict", "total_loss"}`` with the ``model.`` prefix of its ``Net`` wrapper.
:func:`irfoundry.models.checkpoint.import_reference_checkpoint` reads all three.

Deviations (none change the values or the weights):

* logits out: BasicIRSTD's copy ends with ``pred.sigmoid()`` (its SoftIoU loss takes probabilities); the
  authors' copy returns logits and applies the sigmoid in its loss, as we expect of training code;
* the fixed direction kernels are persistent buffers (key ``d1k.weight``, as the reference's frozen
  ``nn.Parameter(requires_grad=False)``), so code that sets ``requires_grad`` on every parameter cannot make
  them trainable, and they are not counted as parameters (BasicIRSTD's thop table does not count them either);
* the reference stores the pre-head feature map as ``self.x_new`` on every forward (for its visualisations);
  we do not keep tensors on the module;
* CBAM options the reference never uses (``'lp'`` / ``'lse'`` pooling, ``no_spatial``) are not offered;
* ``in_chans > 1`` (not in the reference, which hard-codes one input channel): ``conv1`` takes ``in_chans``
  channels and DiA is computed on the channel mean, so a grey image replicated to three channels gets the
  attention map of the grey image.

Initialisation: PyTorch's defaults, as under BasicIRSTD (the authors' ``train.py`` re-draws conv weights from
``N(0, 0.02)`` and BatchNorm weights / biases from ``N(1, 0.02)`` / ``N(0, 1)``; a training choice).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.layers.fcn_head import FCNHead
from irfoundry.models._registry import register_model
from irfoundry.models.base import HostNet

__all__ = ["DIRECTION_OFFSETS", "RDIAN", "RDIANCBAM", "DirectionKernel", "rdian"]

#: (row, col) of the ``-1`` tap of the 5x5 kernels ``d11 .. d18`` (the ``+1`` tap is the centre (2, 2)):
#: up-left, up, up-right, right, down-right, down, down-left, left; ``d1k`` and ``d1(k+4)`` are opposite
DIRECTION_OFFSETS = ((0, 0), (0, 2), (0, 4), (2, 4), (4, 4), (4, 2), (4, 0), (2, 0))

#: widths fixed by the reference: ``conv1`` output, and everything at stride 2
_C1, _C2 = 16, 32
#: (number of blocks, kernel size) of ``residual_block0 .. 3``
_BRANCHES = ((1, 1), (2, 3), (2, 5), (2, 7))


def _conv_bn_lrelu(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """The reference's ``conv_batch``: conv (no bias, 'same' padding) -> BN -> LeakyReLU(0.01).
    ``B x in_ch x H x W -> B x out_ch x H/stride x W/stride``; keys ``0`` (conv), ``1`` (BN)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(),
    )


class DirectionKernel(nn.Module):
    """One fixed 5x5 difference filter of DiA (the reference's ``Conv_d1k``): ``y(p) = x(p) - x(p + o)``.

    ``B x 1 x H x W -> B x 1 x H x W`` (zero padding 2). The kernel is the persistent buffer ``weight``
    (``1 x 1 x 5 x 5``), loaded from checkpoints like any weight but never trained.
    """

    def __init__(self, row: int, col: int) -> None:
        super().__init__()
        kernel = torch.zeros(1, 1, 5, 5)
        kernel[0, 0, 2, 2] = 1.0
        kernel[0, 0, row, col] = -1.0
        self.register_buffer("weight", kernel)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, padding=2)


class ReceptiveFieldBlock(nn.Module):
    """The reference's ``NewBlock``: ``x + layer2(layer1(x))`` with conv-BN-LeakyReLU layers
    ``C -> C/2 -> C`` of kernel ``kernel_size``. Shapes: ``B x C x H x W -> B x C x H x W``."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.layer1 = _conv_bn_lrelu(channels, channels // 2, kernel_size)
        self.layer2 = _conv_bn_lrelu(channels // 2, channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer2(self.layer1(x)) + x


class _ConvBN(nn.Module):
    """Conv (no bias) -> BN (momentum 0.01), the reference's ``BasicConv(relu=False)``; keys ``conv``, ``bn``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-5, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class _ChannelGate(nn.Module):
    """CBAM channel attention as RDIAN writes it: an MLP of linear layers *with* bias (keys ``mlp.1``,
    ``mlp.3``; hidden width ``C // reduction``) on global average and max pooling, summed, sigmoid, times
    the input. ``B x C x H x W -> B x C x H x W``."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: Tensor) -> Tensor:
        att = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(att)[:, :, None, None]


class _SpatialGate(nn.Module):
    """CBAM spatial attention as RDIAN writes it: channel max and channel mean (in that order), 7x7 conv
    (no bias) -> BN, sigmoid, times the input (key ``spatial``). ``B x C x H x W -> B x C x H x W``."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = _ConvBN(2, 1, 7)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class RDIANCBAM(nn.Module):
    """RDIAN's CBAM: channel gate then spatial gate. ``B x C x H x W -> B x C x H x W``.

    Not the DNANet / MSHNet CBAM (:mod:`irfoundry.layers.res_cbam`): that one uses bias-free 1x1 convs, a
    spatial gate without BN over (mean, max), and returns the gates rather than the gated input; the key
    names differ too (``ChannelGate.mlp.1/3``, ``SpatialGate.spatial.conv/bn`` here). RDIAN builds it as
    ``CBAM(32, 32)``: the second argument is the reduction ratio, so the MLP's hidden width is 1.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ModelError(f"CBAM needs channels // reduction >= 1, got channels={channels}, reduction={reduction}")
        self.ChannelGate = _ChannelGate(channels, reduction)
        self.SpatialGate = _SpatialGate()

    def forward(self, x: Tensor) -> Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class RDIAN(HostNet):
    """RDIAN. ``B x in_chans x H x W -> B x 1 x H x W`` logits (H, W even); one output in both modes.

    Encoder stages (:meth:`encode`), ``stage_channels = (16, 32)`` at ``stage_strides = (1, 2)``:

    * ``out1``, the ``conv1`` output (before the DiA modulation): the full-resolution skip that the head
      reads through ``conv_res``;
    * ``x_a``, the ``cbam`` output (the bottleneck): the receptive-field branches fused by ``conv_cat`` and
      refined by CBAM, i.e. everything the network computes at stride 2.

    :meth:`decode` is the reference's head: up-sample ``x_a``, add ``conv_res(out1)``, ReLU, FCN head.
    Why this split: RDIAN has a single down-sampling, so these are the only two tensors that cross from
    feature extraction into the output path. A fusion module on the bottleneck (FDEP's SAMF) therefore
    changes the attention-refined stride-2 features, and one on every stage (SCAM) also changes the skip.
    DiA, ``conv2`` and the branches stay inside the encoder: ``out1`` feeds them there, so a change of
    ``features[0]`` between the two calls reaches the output through ``conv_res`` only.

    ``input_multiple`` is 2 (one stride-2 convolution; the head up-samples to the input size).
    """

    input_multiple = 2
    logit_layers = ("head.block.4",)

    def __init__(self, *, in_chans: int = 1) -> None:
        super().__init__()
        if not isinstance(in_chans, int) or in_chans < 1:
            raise ModelError(f"in_chans must be an integer >= 1, got {in_chans!r}")
        self.stage_channels = (_C1, _C2)
        self.stage_strides = (1, 2)

        self.conv1 = _conv_bn_lrelu(in_chans, _C1)
        self.conv2 = _conv_bn_lrelu(_C1, _C2, stride=2)
        for i, (blocks, k) in enumerate(_BRANCHES):
            self.add_module(f"residual_block{i}", nn.Sequential(*(ReceptiveFieldBlock(_C2, k) for _ in range(blocks))))
        self.cbam = RDIANCBAM(_C2, reduction=_C2)
        self.conv_cat = _conv_bn_lrelu(len(_BRANCHES) * _C2, _C2)
        self.conv_res = _conv_bn_lrelu(_C1, _C2, 1)
        for k, (row, col) in enumerate(DIRECTION_OFFSETS, start=1):
            self.add_module(f"d1{k}", DirectionKernel(row, col))
        self.head = FCNHead(_C2, 1, bn_momentum=0.1)

    def direction_attention(self, x: Tensor) -> Tensor:
        """DiA map ``md`` in (0, 1): ``B x in_chans x H x W -> B x 1 x H x W`` (channel mean if
        ``in_chans > 1``)."""
        if x.shape[1] > 1:
            x = x.mean(dim=1, keepdim=True)
        d = [getattr(self, f"d1{k}")(x) for k in range(1, 9)]
        return torch.sigmoid(d[0] * d[4] + d[1] * d[5] + d[2] * d[6] + d[3] * d[7])

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[out1 (B x 16 x H x W), x_a (B x 32 x H/2 x W/2)]``."""
        md = self.direction_attention(x)
        out1 = self.conv1(x)
        out = self.conv2(out1 + out1 * md)
        branches = [self.residual_block0(out), self.residual_block1(out),
                    self.residual_block2(out), self.residual_block3(out)]
        x_a = self.cbam(self.conv_cat(torch.cat(branches, dim=1)))
        return [out1, x_a]

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor:
        """``[out1, x_a]`` -> logits ``B x 1 x H x W`` (``(H, W) = input_size``), in both modes."""
        self.check_stage_features(features)
        out1, x_a = features
        up = F.interpolate(x_a, size=tuple(input_size), mode="bilinear", align_corners=False)
        return self.head(F.relu(up + self.conv_res(out1)))


@register_model(
    "rdian",
    published_params=217_000,
    published_macs=3.718e9,
    paper="Sun et al., Receptive-Field and Direction Induced Attention Network for Infrared Dim Small Target "
    "Detection With a Large-Scale Dataset IRDST, IEEE TGRS 2023",
    reference="https://github.com/sun11999/RDIAN",
)
def rdian(*, in_chans: int = 1) -> RDIAN:
    """RDIAN, the reference configuration (it has no options): 216,558 trainable parameters at ``in_chans=1``
    (published 0.217M in BasicIRSTD's table, 0.22M rounded), 216,846 at ``in_chans=3`` (``conv1`` only), plus
    200 fixed direction-kernel values held as buffers. Untrained; the authors' released weights
    (``params/best.pth`` of sun11999/RDIAN, a bare state dict) and BasicIRSTD checkpoints load with
    :func:`irfoundry.models.checkpoint.import_reference_checkpoint`.

    MACs at 1x1x256x256: 3.690G by :func:`~irfoundry.models.complexity.count_macs`; BasicIRSTD's 3.718G is
    thop's count (convolutions and linear layers plus 4 operations per BatchNorm element; the direction
    kernels, being functional convolutions, are not counted).
    """
    return RDIAN(in_chans=in_chans)
