"""MLCL-Net specifics; the family tests shared with ALCL-Net live in ``test_semprior_hosts.py``."""

from __future__ import annotations

import pytest
import torch

import irfoundry.models.mlclnet  # noqa: F401  (registers "mlclnet")
from irfoundry.models import create_model


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mlclnet", in_chans=1).eval()


def test_decoder_upsampling_equals_the_reference_scale_factor_2(net):
    """Our size-based up-sampling equals the reference's ``nn.UpsamplingBilinear2d(scale_factor=2)`` head."""
    up = torch.nn.UpsamplingBilinear2d(scale_factor=2)
    torch.manual_seed(2)
    x = torch.randn(1, 1, 96, 160)
    with torch.no_grad():
        f1, f2, f3 = net.encode(x)
        out = up(net.conv3(net.mlcl3(f3))) + net.conv2(net.mlcl2(f2))
        out = up(out) + net.conv1(net.mlcl1(f1))
        assert torch.allclose(net.layer(out), net.decode([f1, f2, f3], (96, 160)), atol=1e-6)
