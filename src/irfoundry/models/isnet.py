"""ISNet: a shape-aware host with a Taylor-finite-difference edge branch and row / column attention fusion.

Zhang, Zhang, Yang, Bai, Zhang, Guo, "ISNet: Shape Matters for Infrared Small Target Detection", CVPR 2022
(pp. 877-886, IEEE Xplore 9880295; we found no arXiv version). Ported from XinyiYing/BasicIRSTD
``model/ISNet/model_ISNet.py`` (class ``ISNet``, with ``model/ISNet/DCNv2/TTOA.py``,
``model/ISNet/my_functionals/GatedSpatialConv.py`` and ``model/ISNet/network/Resnet.py``), checked against
the authors' RuiZhang97/ISNet (branch ``master``, ``model/ISNet.py``) and PAL's CPU copy (YuChuang1205/PAL
``model/ISNet/ISNet_no_sigmoid.py``).

Architecture (defaults ``layer_blocks=(4, 4, 4)``, ``channels=(8, 16, 32, 64)``), input ``B x C x H x W``:

* texture stream: ``stem`` (ACM's: input BN, three 3x3 conv-BN-ReLU, the first strided, 3x3/2 max-pool)
  -> ``layer1`` / ``layer2`` / ``layer3`` residual stages: ``c1`` 16 @ H/4, ``c2`` 32 @ H/8, ``c3`` 64 @ H/16;
  ``deconv2`` -> ``TTOA_low`` (with ``c2``) -> ``uplayer2`` -> ``deconv1`` -> ``TTOA_high`` (with ``c1``) ->
  ``uplayer1``: ``upc1`` 16 @ H/4;
* edge (shape) stream, at full resolution and 64 channels: the input's gradient magnitude
  (:func:`gradient_magnitude`) -> ``dsup`` (1x1 conv) -> three TFD blocks ``myb1..3``, each gated
  (:class:`~irfoundry.layers.gated_spatial_conv.GatedSpatialConv2d`) by a side map of the texture stream
  (``dsn1(c3)``, ``dsn2(upc2)``, ``dsn3(upc1)``, 1x1 convs to one channel, bilinearly up-sampled with
  ``align_corners=True``) -> ``fuse`` (1x1 conv 64 -> 1, no bias): the edge logits;
* head: ``up = bilinear(upc1 -> H x W)`` (``align_corners=False``), ``head(up * (1 + sigmoid(edge)))``
  (``_FCNHead``: 3x3 conv-BN-ReLU to 4 channels, dropout 0.1, 1x1 conv): the mask logits.

Outputs. The reference returns ``(sigmoid(mask), sigmoid(edge))`` in BasicIRSTD's ``mode='train'`` and
``sigmoid(mask)`` otherwise. The edge map is not a mask prediction, so it is not a deep-supervision
output: ``forward`` returns the mask logits ``B x 1 x H x W`` in both modes, and
:meth:`ISNet.forward_with_edge` returns ``(mask_logits, edge_logits)``. BasicIRSTD's ``ISNetLoss``
(``loss.py``) trains with ``SoftIoU(sigmoid(mask), gt) + 10 * BCE(sigmoid(edge), edge_gt) +
SoftIoU(sigmoid(sigmoid(edge)), edge_gt)`` (the reference applies the sigmoid twice in that last term),
where ``edge_gt = gradient_magnitude(gt)`` (the same finite differences as the edge input, on the mask;
about 0.001 off the border, up to sqrt(2) at corners);
the authors' ``train_ISNet.py`` does the same with their ``SoftLoULoss1`` and the gradient of an edge label.

Key names and order are the reference's, so BasicIRSTD checkpoints (``{'state_dict': Net.state_dict()}``,
keys ``model.<name>``) load strictly. Reference variants as options:

* ``modulated_dcn``: BasicIRSTD's ``TTOA`` uses DCN v1 (``DeformConvPack``, ``conv_offset``); the authors'
  repository and PAL use DCN v2 (``conv_offset_mask``): ``modulated_dcn=True``.
* ``in_chans``: the gradient is taken of every input channel and ``dsup`` reads ``in_chans`` maps. For
  ``in_chans=1`` this is BasicIRSTD (which reads channel 0 of a grey image), for ``in_chans=3`` it is the
  authors' and PAL's three-channel model (whose ``Get_gradient_nopadding`` treats each channel alike).
  PAL's copy also stores the two fixed gradient kernels as buffers (``grad_extractor.weight_v/h``); the
  registered checkpoint filter :func:`isnet_reference_keys` drops them.
* ``keep_unused_layers``: the reference builds 15 submodules that ``forward`` never calls
  (:attr:`ISNet.unused_modules`, 103,709 parameters); they are in its checkpoints and are kept by default.

Kept as the reference: ``TTOA_low(deconv2(c3), c2)`` passes the decoder map as TTOA's "low-level" input
(XinyiYing/BasicIRSTD#31 asks whether the arguments are swapped; every copy of the code, hence every
checkpoint trained with it, uses this order).

Deviations without effect on the outputs: logits out (no sigmoid), no ``mode`` flag; the reference's
identity resizes (the gradient map and the edge logits to ``H x W``, the head output to ``H x W``) are
omitted; the gradient uses slicing instead of a convolution with the fixed kernels; deformable convolutions
run on ``torchvision.ops.deform_conv2d`` instead of the references' compiled CUDA extensions (same offset layout).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import CheckpointError, ModelError
from irfoundry.layers.acm_stem import make_stem
from irfoundry.layers.fcn_head import FCNHead
from irfoundry.layers.gated_spatial_conv import GatedSpatialConv2d
from irfoundry.layers.res_basic_block import ResBasicBlock
from irfoundry.layers.resize import resize_aligned
from irfoundry.layers.ttoa import TTOA
from irfoundry.models._registry import register_model
from irfoundry.models.base import HostNet, check_input_size

__all__ = ["ISNet", "gradient_magnitude", "isnet", "isnet_reference_keys"]

#: width of the edge stream (hard-coded in the reference)
EDGE_WIDTH = 64
#: PyTorch's default BatchNorm momentum, which every ISNet norm keeps
_BN_MOMENTUM = 0.1
#: what the reference builds but never calls, in registration order
UNUSED = ("res1", "d1", "res2", "d2", "res3", "d3", "cw", "gate1", "gate2", "gate3", "SA", "SA_att",
          "head2", "conv2_1", "conv16")
#: PAL's persistent copies of the fixed gradient kernels (no parameters)
_PAL_GRADIENT_BUFFERS = ("grad_extractor.weight_v", "grad_extractor.weight_h")


def gradient_magnitude(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-channel central-difference gradient magnitude, ``B x C x H x W -> B x C x H x W``.

    ``sqrt((x[i+1, j] - x[i-1, j])^2 + (x[i, j+1] - x[i, j-1])^2 + eps)`` with zeros outside the image:
    the reference's ``Get_gradient_nopadding`` (3x3 kernels ``[-1, 0, 1]``, padding 1; not a Sobel
    filter). ISNet's edge input (of the image) and BasicIRSTD's edge target (of the mask).
    """
    p = F.pad(x, (1, 1, 1, 1))
    v = p[..., 2:, 1:-1] - p[..., :-2, 1:-1]
    h = p[..., 1:-1, 2:] - p[..., 1:-1, :-2]
    return torch.sqrt(v * v + h * h + eps)


def isnet_reference_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Checkpoint filter: drop PAL's two gradient-kernel buffers (constants, not weights); other keys pass.

    Raises :class:`CheckpointError` if they hold anything but the fixed kernels (a different model)."""
    state = dict(state)
    kernels = {"grad_extractor.weight_v": torch.tensor([[0.0, -1, 0], [0, 0, 0], [0, 1, 0]]),
               "grad_extractor.weight_h": torch.tensor([[0.0, 0, 0], [-1, 0, 1], [0, 0, 0]])}
    for key in _PAL_GRADIENT_BUFFERS:
        if key in state:
            value = state.pop(key)
            if value.shape != (1, 1, 3, 3) or not torch.equal(value.float()[0, 0], kernels[key]):
                raise CheckpointError(f"{key} is not ISNet's fixed gradient kernel; not an ISNet checkpoint")
    return state


class _ResBlock(nn.Module):
    """ISNet's ``ResidualBlock``: ``relu(body(x) + shortcut(x))``, ``body`` = 3x3 conv-BN-ReLU-3x3 conv-BN
    (first conv strided), shortcut a strided 1x1 conv-BN when the shape changes (an empty ``downsample``
    otherwise). ``B x in_ch x H x W -> B x out_ch x H/stride x W/stride``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(out_ch),
        )
        project = stride != 1 or in_ch != out_ch
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
            if project else nn.Sequential()
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.downsample(x))


def _res_stage(in_ch: int, out_ch: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(_ResBlock(in_ch, out_ch, stride), *(_ResBlock(out_ch, out_ch, 1) for _ in range(blocks - 1)))


def _kaiming_fan_out(module: nn.Module) -> nn.Module:
    """The reference ``Resnet`` blocks' initialisation (Kaiming-normal, fan-out, ReLU) of their convs."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return module


class _BranchBasicBlock(ResBasicBlock):
    """The reference ``BasicBlock1``: a ResNet basic block (identity shortcut) that also returns its residual
    branch, ``x -> (relu(x + f(x)), relu(f(x)))`` with ``f`` = conv-BN-ReLU-conv-BN; ``B x C x H x W``."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels)
        _kaiming_fan_out(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        f = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return F.relu(x + f), F.relu(f)


class TFD(nn.Module):
    """Taylor-finite-difference edge block: ``u1, du0 = res1(u0)``; ``_, u2 = res2(u1)``;
    ``out = 3 * du0 + u2 + gate(u2, side)``. ``u0`` ``B x C x H x W``, ``side`` ``B x 1 x H x W``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.res1 = _BranchBasicBlock(channels)
        self.res2 = _BranchBasicBlock(channels)
        self.gate = GatedSpatialConv2d(channels, channels)

    def forward(self, u0: Tensor, side: Tensor) -> Tensor:
        u1, du0 = self.res1(u0)
        _, u2 = self.res2(u1)
        return 3 * du0 + u2 + self.gate(u2, side)


class _ShuffleAttention(nn.Module):
    """The reference's ``sa_layer`` (shuffle attention, SA-Net), built but never called by ISNet (kept for
    its checkpoint keys ``cweight``, ``cbias``, ``sweight``, ``sbias``, ``gn``). ``B x C x H x W``."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.groups, c = groups, channels // (2 * groups)
        self.cweight = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, c, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, c, 1, 1))
        self.gn = nn.GroupNorm(c, c)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        x0, x1 = x.reshape(b * self.groups, -1, h, w).chunk(2, dim=1)
        xn = x0 * torch.sigmoid(self.cweight * x0.mean((2, 3), keepdim=True) + self.cbias)
        xs = x1 * torch.sigmoid(self.sweight * self.gn(x1) + self.sbias)
        out = torch.cat([xn, xs], dim=1).reshape(b, 2, -1, h, w).transpose(1, 2)
        return out.reshape(b, -1, h, w)


class ISNet(HostNet):
    """ISNet. ``B x in_chans x H x W -> B x 1 x H x W`` mask logits in eval and training mode (H, W
    divisible by 16); :meth:`forward_with_edge` also returns the edge logits.

    Encoder-decoder split (:meth:`encode`): ``[e, c1, c2, c3]`` with ``stage_channels = (64, 16, 32, 64)``
    at ``stage_strides = (1, 4, 8, 16)`` for the default widths:

    * ``e = dsup(gradient_magnitude(x))``, ``B x 64 x H x W``: the edge stream's input features. The edge
      branch needs the input image, which :meth:`decode` does not receive, so its (only) image-dependent
      layer ends the encoder; the TFD blocks that refine it with the texture stream's side maps are decode;
    * ``c1``, ``c2``, ``c3``: the texture stream's residual stages (``c3`` is the bottleneck, which FDEP's
      SAMF modulates); the stem output only feeds ``layer1`` and is not a stage.

    A fusion module that modulates every stage therefore also reaches the edge stream (through ``e``) and
    the TTOA skips (``c1``, ``c2``).
    """

    input_multiple = 16
    logit_layers = ("head.block.4",)
    unused_modules: tuple[str, ...] = UNUSED

    def __init__(
        self,
        *,
        in_chans: int = 1,
        layer_blocks: Sequence[int] = (4, 4, 4),
        channels: Sequence[int] = (8, 16, 32, 64),
        modulated_dcn: bool = False,
        keep_unused_layers: bool = True,
    ) -> None:
        super().__init__()
        blocks, c = tuple(int(n) for n in layer_blocks), tuple(int(n) for n in channels)
        if in_chans < 1:
            raise ModelError(f"in_chans must be >= 1, got {in_chans}")
        if len(blocks) != 3 or min(blocks) < 1:
            raise ModelError(f"isnet: 'layer_blocks' must be 3 positive block counts, got {blocks}")
        if len(c) != 4 or min(c) < 4 or c[1] != 2 * c[0]:
            raise ModelError(f"isnet: 'channels' must be 4 widths >= 4 with channels[1] == 2 * channels[0] "
                             f"(the stem doubles its width), got {c}")
        self.stage_channels = (EDGE_WIDTH, c[1], c[2], c[3])
        self.stage_strides = (1, 4, 8, 16)
        self.modulated_dcn = bool(modulated_dcn)
        e = EDGE_WIDTH

        self.stem = make_stem(in_chans, c[0], _BN_MOMENTUM)
        self.TTOA_low = TTOA(c[2], modulated=modulated_dcn)
        self.TTOA_high = TTOA(c[1], modulated=modulated_dcn)
        self.layer1 = _res_stage(c[1], c[1], blocks[0], 1)
        self.layer2 = _res_stage(c[1], c[2], blocks[1], 2)
        self.layer3 = _res_stage(c[2], c[3], blocks[2], 2)
        self.deconv2 = nn.ConvTranspose2d(c[3], c[2], 4, 2, 1)
        self.uplayer2 = _res_stage(c[2], c[2], blocks[1], 1)
        self.deconv1 = nn.ConvTranspose2d(c[2], c[1], 4, 2, 1)
        self.uplayer1 = _res_stage(c[1], c[1], blocks[0], 1)
        self.head = FCNHead(c[1], 1, _BN_MOMENTUM)
        self.dsn1 = nn.Conv2d(c[3], 1, 1)
        self.dsn2 = nn.Conv2d(c[2], 1, 1)
        self.dsn3 = nn.Conv2d(c[1], 1, 1)
        if keep_unused_layers:  # never called; widths hard-coded as in the reference
            self.res1, self.d1 = _kaiming_fan_out(ResBasicBlock(64, 64)), nn.Conv2d(64, 32, 1)
            self.res2, self.d2 = _kaiming_fan_out(ResBasicBlock(32, 32)), nn.Conv2d(32, 16, 1)
            self.res3, self.d3 = _kaiming_fan_out(ResBasicBlock(16, 16)), nn.Conv2d(16, 8, 1)
        else:
            self.unused_modules = ()
        self.fuse = nn.Conv2d(e, 1, 1, bias=False)
        if keep_unused_layers:
            self.cw = nn.Conv2d(4, 1, 1, bias=False)
            self.gate1 = GatedSpatialConv2d(32, 32)
            self.gate2 = GatedSpatialConv2d(16, 16)
            self.gate3 = GatedSpatialConv2d(8, 8)
            self.SA = _ShuffleAttention(4, 2)
            self.SA_att = _ShuffleAttention(17, 2)
        self.dsup = nn.Conv2d(in_chans, e, 1)
        if keep_unused_layers:
            self.head2 = FCNHead(c[1], 3, _BN_MOMENTUM)
            self.conv2_1 = nn.Conv2d(3, 1, 1)
            self.conv16 = nn.Conv2d(3, 16, 1)
        self.myb1 = TFD(e)
        self.myb2 = TFD(e)
        self.myb3 = TFD(e)

    def encode(self, x: Tensor) -> list[Tensor]:
        """``B x in_chans x H x W`` -> ``[e, c1, c2, c3]``: ``B x 64 x H x W``, ``B x 16 x H/4 x W/4``,
        ``B x 32 x H/8 x W/8``, ``B x 64 x H/16 x W/16`` (default widths)."""
        e = self.dsup(gradient_magnitude(x))
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [e, c1, c2, c3]

    def decode_with_edge(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``[e, c1, c2, c3]`` -> ``(mask_logits, edge_logits)``, both ``B x 1 x H x W`` (``input_size``)."""
        self.check_stage_features(features)
        e, c1, c2, c3 = features
        size = tuple(input_size)
        upc2 = self.uplayer2(self.TTOA_low(self.deconv2(c3), c2))
        upc1 = self.uplayer1(self.TTOA_high(self.deconv1(upc2), c1))
        sides = [resize_aligned(self.dsn1(c3), size), resize_aligned(self.dsn2(upc2), size),
                 resize_aligned(self.dsn3(upc1), size)]
        for block, side in zip((self.myb1, self.myb2, self.myb3), sides):
            e = block(e, side)
        edge = self.fuse(e)
        up = F.interpolate(upc1, size=size, mode="bilinear", align_corners=False)
        mask = self.head(torch.sigmoid(edge) * up + up)
        return mask, edge

    def decode(self, features: Sequence[Tensor], input_size: tuple[int, int]) -> Tensor:
        """``[e, c1, c2, c3]`` -> mask logits ``B x 1 x H x W`` (``input_size = (H, W)``), in both modes."""
        return self.decode_with_edge(features, input_size)[0]

    def forward_with_edge(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``B x in_chans x H x W`` -> ``(mask_logits, edge_logits)``, both ``B x 1 x H x W``: the reference's
        training-mode ``(mask, edge)`` before their sigmoids (see the module docstring for the loss)."""
        check_input_size(x, self.input_multiple)
        return self.decode_with_edge(self.encode(x), (x.shape[-2], x.shape[-1]))


@register_model(
    "isnet",
    published_params=1_089_519,
    published_macs=30.618e9,
    paper="Zhang et al., ISNet: Shape Matters for Infrared Small Target Detection, CVPR 2022",
    reference="https://github.com/XinyiYing/BasicIRSTD (model/ISNet/model_ISNet.py); authors: RuiZhang97/ISNet",
    checkpoint_filter=isnet_reference_keys,
)
def isnet(
    *,
    in_chans: int = 1,
    layer_blocks: Sequence[int] = (4, 4, 4),
    channels: Sequence[int] = (8, 16, 32, 64),
    modulated_dcn: bool = False,
    keep_unused_layers: bool = True,
) -> ISNet:
    """ISNet with BasicIRSTD's defaults: 1,089,519 trainable parameters at ``in_chans=1`` (what BasicIRSTD's
    ``ISNet()`` builds and its checkpoints hold), 1,089,795 at ``in_chans=3`` (the authors' and PAL's input;
    with ``modulated_dcn=True``, their DCN v2, 1,090,671). BasicIRSTD's README prints 0.966M and 30.618G
    "FLOPs": thop's counts (``cal_params.py``) at 1x1x256x256, which skip the 103,709 parameters of the unused
    layers and the 20,064 held directly by the deformable and gated convolutions, and count MACs with thop's
    rules (see ``tests/models/test_isnet.py``, which reproduces both figures exactly).

    Options: ``layer_blocks`` (the authors' ``--blocks-per-layer``) and ``channels`` (the texture stream's
    widths; the edge stream stays 64 wide) as the reference constructor; ``modulated_dcn``,
    ``keep_unused_layers``: see the module docstring. Untrained; load reference checkpoints with
    :func:`irfoundry.models.checkpoint.import_reference_checkpoint`.
    """
    return ISNet(in_chans=in_chans, layer_blocks=layer_blocks, channels=channels, modulated_dcn=modulated_dcn,
                 keep_unused_layers=keep_unused_layers)
