"""Deformable convolutions that predict their own offsets ("pack" modules), on ``torchvision.ops.deform_conv2d``.

Two variants, with the parameter names of the CUDA extensions that ISNet's reference code compiles, so their
checkpoints load strictly:

* :class:`DeformConv2dPack` (DCN v1, Dai et al., ICCV 2017): a plain convolution ``conv_offset`` predicts
  ``2 * kh * kw`` offsets per output position. Keys ``weight``, ``bias``, ``conv_offset.weight``,
  ``conv_offset.bias``, as ``DeformConvPack`` of chengdazhi/Deformable-Convolution-V2-PyTorch
  (``modules/deform_conv.py``), the module BasicIRSTD's ISNet uses (``model/ISNet/DCNv2/DCN``).
* :class:`ModulatedDeformConv2dPack` (DCN v2, Zhu et al., CVPR 2019): ``conv_offset_mask`` predicts
  ``3 * kh * kw`` channels, split in thirds ``(o1, o2, m)``; the offsets are ``cat(o1, o2)`` and the
  modulation mask ``sigmoid(m)``. Keys ``weight``, ``bias``, ``conv_offset_mask.*``, as ``DCN`` of
  CharlesShang/DCNv2 (``dcn_v2.py``), the module of the ISNet authors' repository (RuiZhang97/ISNet
  ``model/DCNv2``) and of PAL's CPU copy.

Both extensions use torchvision's offset layout (channel ``2k`` is the vertical, ``2k + 1`` the horizontal
offset of kernel tap ``k`` in row-major order; bilinear sampling, zero outside the map), so the weights
transfer as they are. The offset predictors start at zero (a regular convolution), as in the references.
Only ``groups = deformable_groups = 1`` is implemented, the only setting ISNet uses.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

from irfoundry.errors import ModelError

__all__ = ["DeformConv2dPack", "ModulatedDeformConv2dPack"]


class _DeformConvBase(nn.Module):
    """Shared parameters (``weight``, ``bias``) and geometry; subclasses add the offset predictor."""

    #: output channels of the offset predictor per kernel tap (2: offsets, 3: offsets and mask)
    channels_per_tap = 2
    #: attribute (state-dict) name of the offset predictor
    predictor_name = "conv_offset"

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0, dilation=1) -> None:
        super().__init__()
        if in_ch < 1 or out_ch < 1:
            raise ModelError(f"deformable convolution needs positive channels, got {in_ch} -> {out_ch}")
        self.in_channels, self.out_channels = int(in_ch), int(out_ch)
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_ch))
        taps = self.kernel_size[0] * self.kernel_size[1]
        predictor = nn.Conv2d(
            in_ch, self.channels_per_tap * taps, self.kernel_size, self.stride, self.padding, self.dilation
        )
        nn.init.zeros_(predictor.weight)
        nn.init.zeros_(predictor.bias)
        setattr(self, self.predictor_name, predictor)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}"
        )

    def _deform(self, x: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        return deform_conv2d(
            x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation,
            mask=mask,
        )


class DeformConv2dPack(_DeformConvBase):
    """DCN v1 with its own offset predictor ``conv_offset`` (same kernel, stride, padding as the layer).

    ``B x in_ch x H x W -> B x out_ch x H' x W'`` (``H'``, ``W'`` as for ``nn.Conv2d`` with the same geometry).
    Initialisation as the reference ``DeformConv``: ``weight`` and ``bias`` as ``nn.Conv2d``'s defaults.
    """

    channels_per_tap = 2
    predictor_name = "conv_offset"

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0, dilation=1) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, dilation)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(in_ch * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return self._deform(x, self.conv_offset(x))


class ModulatedDeformConv2dPack(_DeformConvBase):
    """DCN v2 with its own offset-and-mask predictor ``conv_offset_mask``.

    ``B x in_ch x H x W -> B x out_ch x H' x W'``. Initialisation as the reference ``DCNv2``: ``weight``
    uniform in ``+-1/sqrt(in_ch * kh * kw)``, ``bias`` zero.
    """

    channels_per_tap = 3
    predictor_name = "conv_offset_mask"

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0, dilation=1) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, dilation)
        bound = 1.0 / math.sqrt(in_ch * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        o1, o2, m = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        return self._deform(x, torch.cat((o1, o2), dim=1), torch.sigmoid(m))
