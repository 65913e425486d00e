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

torchvision's op has no ONNX symbolic: while an ONNX export traces the layer it runs
:func:`deform_conv2d_sampled` instead, the same convolution written with ``F.grid_sample`` and ``einsum``
(equal to torchvision's to float rounding, tested), so deformable hosts export like the others.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

from irfoundry.errors import ModelError

__all__ = ["DeformConv2dPack", "ModulatedDeformConv2dPack", "deform_conv2d_sampled"]


def deform_conv2d_sampled(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None, stride=(1, 1),
                          padding=(0, 0), dilation=(1, 1), mask: Tensor | None = None) -> Tensor:
    """``torchvision.ops.deform_conv2d`` (one group, one deformable group) from exportable operators.

    Args:
        x: ``B x C x H x W``.
        offset: ``B x 2K x H' x W'`` (``K = kh * kw`` taps in row-major order; channel ``2k`` vertical,
            ``2k + 1`` horizontal, in pixels).
        weight: ``O x C x kh x kw``; bias: ``O`` or ``None``.
        mask: ``B x K x H' x W'`` modulation (DCN v2) or ``None``.

    Returns:
        ``B x O x H' x W'``: tap ``k`` of output cell ``(i, j)`` reads ``x`` bilinearly (zero outside) at
        ``(i s_h - p_h + a d_h + dy, j s_w - p_w + b d_w + dx)``.
    """
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    taps = kh * kw
    ys = torch.arange(ho, device=x.device, dtype=x.dtype) * stride[0] - padding[0]
    xs = torch.arange(wo, device=x.device, dtype=x.dtype) * stride[1] - padding[1]
    ky = torch.arange(kh, device=x.device, dtype=x.dtype) * dilation[0]
    kx = torch.arange(kw, device=x.device, dtype=x.dtype) * dilation[1]
    base_y = (ky.view(kh, 1, 1, 1) + ys.view(1, 1, ho, 1)).expand(kh, kw, ho, wo).reshape(taps, ho, wo)
    base_x = (kx.view(1, kw, 1, 1) + xs.view(1, 1, 1, wo)).expand(kh, kw, ho, wo).reshape(taps, ho, wo)
    off = offset.view(b, taps, 2, ho, wo)
    py, px = base_y + off[:, :, 0], base_x + off[:, :, 1]
    # align_corners=False: normalised g is pixel ((g + 1) W - 1) / 2, so pixel p is g = (2 p + 1) / W - 1
    grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], dim=-1).view(b, taps * ho, wo, 2)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.view(b, c, taps, ho, wo)
    if mask is not None:
        cols = cols * mask.view(b, 1, taps, ho, wo)
    out = torch.einsum("bckhw,ock->bohw", cols, weight.reshape(o, c, taps))
    return out if bias is None else out + bias.view(1, o, 1, 1)


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
        if torch.onnx.is_in_onnx_export():  # torchvision's op has no ONNX symbolic
            return deform_conv2d_sampled(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                         mask)
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
