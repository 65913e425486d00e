"""Two-orientation attention aggregation (TOAA, ``TTOA`` in the code) of ISNet.

Zhang et al., "ISNet: Shape Matters for Infrared Small Target Detection", CVPR 2022, section 3.3; reference
``model/ISNet/DCNv2/TTOA.py`` (XinyiYing/BasicIRSTD; the same class in RuiZhang97/ISNet ``model/DCNv2/TTOA.py``).
"""

from __future__ import annotations

from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.layers.deform_conv import DeformConv2dPack, ModulatedDeformConv2dPack

__all__ = ["TTOA"]


class TTOA(nn.Module):
    """Row / column attention from deformable ``1 x k`` and ``k x 1`` convolutions of the low-level input.

    ``forward(a_low, a_high)``, both ``B x C x H x W``, returns ``B x C x H x W``. Both inputs first pass the
    same (shared) ``preprocess`` (1x1 conv ``C -> C/2``, 1x1 conv ``C/2 -> C``, no activation); then, with
    ``col = dcn_colum(a_low)`` (``k x 1``) and ``row = dcn_row(a_low)`` (``1 x k``),

        ``out = (a_low + sigmoid(row) * a_high) + (a_low + sigmoid(col) * a_high)``.

    ISNet calls it as ``TTOA(decoder_upsampled, encoder_skip)``. Parameter names as the reference
    (``dcn_row``, ``dcn_colum``, ``preprocess.0/1``); the reference's unused options (``use_att``,
    ``use_process=False``) are not implemented.

    Args:
        channels: ``C`` (the reference's ``low_channels == high_channels``).
        kernel: ``k`` of the row and column kernels (reference ``r_kernel = c_kernel = 3``).
        modulated: DCN v2 (``conv_offset_mask``, the ISNet authors' code) instead of BasicIRSTD's DCN v1
            (``conv_offset``); see :mod:`irfoundry.layers.deform_conv`.
    """

    def __init__(self, channels: int, kernel: int = 3, modulated: bool = False) -> None:
        super().__init__()
        if channels < 2:
            raise ModelError(f"TTOA needs at least 2 channels, got {channels}")
        dcn = ModulatedDeformConv2dPack if modulated else DeformConv2dPack
        self.dcn_row = dcn(channels, channels, (1, kernel), padding=(0, kernel // 2))
        self.dcn_colum = dcn(channels, channels, (kernel, 1), padding=(kernel // 2, 0))
        self.preprocess = nn.Sequential(nn.Conv2d(channels, channels // 2, 1), nn.Conv2d(channels // 2, channels, 1))

    def forward(self, a_low: Tensor, a_high: Tensor) -> Tensor:
        a_low, a_high = self.preprocess(a_low), self.preprocess(a_high)
        a_colum = a_low + self.dcn_colum(a_low).sigmoid() * a_high
        a_row = a_low + self.dcn_row(a_low).sigmoid() * a_high
        return a_row + a_colum
