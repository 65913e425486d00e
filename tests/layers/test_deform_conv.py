"""The exportable deformable convolution equals torchvision's, offsets reaching outside the map included."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from irfoundry.layers.deform_conv import deform_conv2d_sampled


@pytest.mark.parametrize("stride, padding, dilation, modulated", [
    (1, 1, 1, False), (2, 1, 1, True), (1, 2, 2, True), (1, 0, 1, False)])
def test_sampled_deform_conv_equals_torchvision(stride, padding, dilation, modulated):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 7, generator=gen, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(4, generator=gen, dtype=torch.float64)
    ho = (9 + 2 * padding - dilation * 2 - 1) // stride + 1
    wo = (7 + 2 * padding - dilation * 2 - 1) // stride + 1
    offset = 3.0 * torch.randn(2, 18, ho, wo, generator=gen, dtype=torch.float64)  # many taps land outside
    mask = torch.rand(2, 9, ho, wo, generator=gen, dtype=torch.float64) if modulated else None
    ours = deform_conv2d_sampled(x, offset, weight, bias, (stride,) * 2, (padding,) * 2, (dilation,) * 2, mask)
    ref = deform_conv2d(x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_zero_offsets_are_a_plain_convolution():
    x, weight = torch.randn(1, 2, 6, 6, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    out = deform_conv2d_sampled(x, torch.zeros(1, 18, 6, 6, dtype=torch.float64), weight, None, (1, 1), (1, 1))
    torch.testing.assert_close(out, torch.nn.functional.conv2d(x, weight, padding=1))
