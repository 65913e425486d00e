"""Fixed Haar wavelet filters and the multi-directional feature awareness (MDFA) attention of MSDA-Net.

Zhao, Shi, Yu, Liu et al., "Multi-Scale Direction-Aware Network for Infrared Small Target Detection", IEEE TGRS
2025 (arXiv 2406.02037); reference code ``model/MSDA/MSDA_no_sigmoid.py`` of YuChuang1205/PAL (identical
module tree in ``model/MSDA_Net/MSDA.py`` of YuChuang1205/MSDA-Net). Attribute and buffer names are the
reference's (``LH_DWT_2D_attation.w_lh``, ``DWT_2D.w_ll``, ...), so its checkpoints load strictly.

The filters are computed in closed form, exactly as the reference builds them from
``pywt.Wavelet("haar")`` (no pywt at run time): the reversed decomposition filters ``lo = (s, s)`` and
``hi = (s, -s)``, ``s = sqrt(1/2)`` rounded to float32, and their outer products in float32, e.g.
``w_lh[i, j] = hi[i] * lo[j]`` (high-pass along rows: responds to horizontal edges). Every entry is
``+-float32(s)**2 = +-0.49999997``, not exactly ``0.5``, as in the reference. The filters are persistent
float32 buffers (they are in the reference's state dict and in its checkpoints) and receive no gradient.

Deviation from the reference (none in the forward values): the reference wraps each filter in a custom
``torch.autograd.Function`` whose backward casts the filters to float16, which only runs under CUDA autocast
(in float32 / float64 it raises a dtype error). Here the convolutions are plain ``F.conv2d`` calls, so
autograd gives the same gradient in any precision (checked in float64 against the reference's backward with
the float16 cast removed: identical parameter gradients).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError

#: the four Haar sub-bands, in the reference's buffer order
SUBBANDS = ("ll", "lh", "hl", "hh")


def haar_filter(band: str) -> Tensor:
    """The reference's 2x2 Haar filter of sub-band ``band`` (``"ll"``, ``"lh"``, ``"hl"``, ``"hh"``) as a
    ``1 x 1 x 2 x 2`` float32 tensor: ``w[i, j] = f_row[i] * f_col[j]`` with ``f = lo`` for ``L``, ``hi`` for
    ``H`` (row factor = second letter, column factor = first letter, as the reference's
    ``dec_a.unsqueeze(0) * dec_b.unsqueeze(1)``)."""
    if band not in SUBBANDS:
        raise ModelError(f"unknown Haar sub-band {band!r}; expected one of {', '.join(SUBBANDS)}")
    s = math.sqrt(0.5)
    taps = {"l": torch.tensor([s, s], dtype=torch.float32), "h": torch.tensor([s, -s], dtype=torch.float32)}
    col, row = taps[band[0]], taps[band[1]]
    return (row.unsqueeze(1) * col.unsqueeze(0)).reshape(1, 1, 2, 2)


def _depthwise(x: Tensor, w: Tensor, stride: int) -> Tensor:
    """The ``1 x 1 x 2 x 2`` filter ``w`` on every channel of ``x``: a grouped conv with the kernel expanded to the
    channels; under an ONNX export the channels are folded into the batch instead (the trace cannot size an
    expanded kernel there; the fold is ~8x slower to train on a CPU, so only there)."""
    if torch.onnx.is_in_onnx_export():
        b, c, h, w_ = x.shape
        y = F.conv2d(x.reshape(b * c, 1, h, w_), w, stride=stride)
        return y.reshape(b, c, y.shape[-2], y.shape[-1])
    c = x.shape[1]
    return F.conv2d(x, w.expand(c, -1, -1, -1), stride=stride, groups=c)


class HaarSubband(nn.Module):
    """One Haar sub-band at full resolution (the reference's ``<band>_DWT_2D_attation``): pad one row on top
    and one column on the left with zeros, then the 2x2 filter with stride 1, channel by channel.

    Shapes: ``B x C x H x W -> B x C x H x W``. Buffer ``w_<band>`` (``1 x 1 x 2 x 2``).
    """

    def __init__(self, band: str) -> None:
        super().__init__()
        self.band = band
        self.register_buffer(f"w_{band}", haar_filter(band))

    def forward(self, x: Tensor) -> Tensor:
        return _depthwise(F.pad(x, (1, 0, 1, 0)), getattr(self, f"w_{self.band}"), stride=1)


class HaarDWT(nn.Module):
    """Single-level Haar DWT keeping the three high-frequency sub-bands (the reference's ``DWT_2D``).

    Shapes: ``B x C x H x W -> B x 3C x H/2 x W/2`` (H, W even), channels ``[LH of every input channel, HL of
    every channel, HH of every channel]``. Buffers ``w_ll, w_lh, w_hl, w_hh``; ``w_ll`` is built but unused,
    as in the reference.
    """

    def __init__(self) -> None:
        super().__init__()
        for band in SUBBANDS:
            self.register_buffer(f"w_{band}", haar_filter(band))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([_depthwise(x, w, stride=2) for w in (self.w_lh, self.w_hl, self.w_hh)], dim=1)


class DirectionalSpatialGate(nn.Module):
    """Spatial gate of MDFA (the reference's ``SpatialAttention``): channel max and channel mean, in that
    order, 7x7 conv with bias, sigmoid. Shapes: ``B x C x H x W -> B x 1 x H x W`` in (0, 1)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class MultiDirectionalAttention(nn.Module):
    """Multi-directional feature awareness (MDFA; the reference's ``FrequencyAttention``).

    For each Haar sub-band ``b`` in LH, HL, HH, LL: ``x_b = x * gate_b(subband_b(x))``; then
    ``relu(x + BN(conv3x3(x_LH + x_HL + x_HH + x_LL)))``. Shapes: ``B x C x H x W -> B x C x H x W``.

    Submodules, in the reference's order: ``HH_reduce, LH_reduce, HL_reduce, LL_reduce`` (gates),
    ``conv_res`` (``0``: conv3x3 with bias, ``1``: BatchNorm), ``LH/HL/HH/LL_DWT_2D_attation`` (filters).
    Initialisation as the reference's ``init_weights``: Kaiming-normal (fan_out) convolutions with zero bias,
    BatchNorm weight 1, bias 0.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.HH_reduce = DirectionalSpatialGate()
        self.LH_reduce = DirectionalSpatialGate()
        self.HL_reduce = DirectionalSpatialGate()
        self.LL_reduce = DirectionalSpatialGate()
        self.conv_res = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(channels),
        )
        self.relu = nn.ReLU()
        self.LH_DWT_2D_attation = HaarSubband("lh")
        self.HL_DWT_2D_attation = HaarSubband("hl")
        self.HH_DWT_2D_attation = HaarSubband("hh")
        self.LL_DWT_2D_attation = HaarSubband("ll")
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        mixed = None
        for band in ("LH", "HL", "HH", "LL"):
            gated = x * getattr(self, f"{band}_reduce")(getattr(self, f"{band}_DWT_2D_attation")(x))
            mixed = gated if mixed is None else mixed + gated
        return self.relu(x + self.conv_res(mixed))
