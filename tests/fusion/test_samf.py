"""SAMF wiring as methods.md section 1 states it, shapes, configuration and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from irfoundry.errors import ModelError
from irfoundry.fusion import SAMF, SAMFStack


def test_samf_computes_the_published_equations():
    torch.manual_seed(0)
    m = SAMF(6, 5).eval()
    x, d = torch.randn(2, 6, 8, 8), torch.randn(2, 5, 4, 4)
    d_up = F.interpolate(d, size=(8, 8), mode="bilinear", align_corners=False)
    x1, x2 = x[:, :3], x[:, 3:]
    y1 = m.conv_1(x1 * m.conv_a(d_up))
    y2 = m.conv_2(x2 + m.conv_b(d_up))
    expected = m.conv_o(torch.cat([y1, y2], 1) + x)
    assert torch.equal(m(x, d), expected)


@pytest.mark.parametrize("channels", [7, 16])
def test_samf_keeps_the_host_shape_and_passes_gradients_to_both_inputs(channels):
    m = SAMF(channels, 3)
    x = torch.randn(2, channels, 6, 10, requires_grad=True)
    d = torch.randn(2, 3, 3, 5, requires_grad=True)
    out = m(x, d)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad.abs().sum() > 0 and d.grad.abs().sum() > 0
    assert m.split == (channels // 2, channels - channels // 2)


def test_stack_default_sources_give_one_prior_per_module_in_order():
    s = SAMFStack(8, [4, 5, 6, 7], num_modules=4)
    assert s.sources == (0, 1, 2, 3)
    assert [b.feature_channels for b in s.blocks] == [4, 5, 6, 7]
    s2 = SAMFStack(8, [4, 5], num_modules=4)
    assert s2.sources == (0, 0, 1, 1)
    priors = [torch.randn(1, 4, 2, 2), torch.randn(1, 5, 3, 3)]
    x = torch.randn(1, 8, 4, 4)
    assert s2(x, priors).shape == x.shape


def test_stack_applies_modules_in_series():
    torch.manual_seed(1)
    s = SAMFStack(4, [3, 3], num_modules=2, sources=[1, 0]).eval()
    x = torch.randn(1, 4, 4, 4)
    priors = [torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)]
    assert torch.equal(s(x, priors), s.blocks[1](s.blocks[0](x, priors[1]), priors[0]))


def test_kernel_sizes_are_configurable():
    m = SAMF(4, 3, feature_kernel=3, kernel=5)
    assert m.conv_a.kernel_size == (3, 3) and m.conv_1.conv.kernel_size == (5, 5)
    assert m(torch.randn(1, 4, 8, 8), torch.randn(1, 3, 8, 8)).shape == (1, 4, 8, 8)


def test_bad_configuration_and_inputs_are_named():
    with pytest.raises(ModelError, match="sources"):
        SAMFStack(8, [4, 5], num_modules=2, sources=[0, 2])
    with pytest.raises(ModelError, match="at least 2 channels"):
        SAMF(1, 3)
    with pytest.raises(ModelError, match="foundation 3"):
        SAMF(4, 3)(torch.randn(1, 4, 4, 4), torch.randn(1, 2, 4, 4))
