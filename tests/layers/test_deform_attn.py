"""Multi-scale deformable attention: the grid_sample core against a naive per-point bilinear loop, and the
module / encoder layer shapes, initialisation and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from irfoundry.errors import ModelError
from irfoundry.layers.deform_attn import MSDeformAttn, MSDeformEncoderLayer, ms_deform_attn, reference_points


def _naive(value, shapes, locations, weights):
    """Per (batch, query, head, level, point): bilinear sample with zero padding, pixel centres at +0.5."""
    b, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = locations.shape
    out = torch.zeros(b, lq, m, d, dtype=value.dtype)
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    for bi in range(b):
        for q in range(lq):
            for hd in range(m):
                for lv, (h, w) in enumerate(shapes):
                    v = value[bi, starts[lv] : starts[lv + 1], hd].view(h, w, d)
                    for p in range(n_points):
                        x = float(locations[bi, q, hd, lv, p, 0]) * w - 0.5
                        y = float(locations[bi, q, hd, lv, p, 1]) * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        acc = torch.zeros(d, dtype=value.dtype)
                        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                                if 0 <= yy < h and 0 <= xx < w:
                                    acc += wy * wx * v[yy, xx]
                        out[bi, q, hd] += weights[bi, q, hd, lv, p] * acc
    return out.reshape(b, lq, m * d)


def test_core_equals_a_per_point_bilinear_loop():
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 7), (3, 4)]
    b, lq, m, d, n_points = 2, 6, 2, 3, 3
    value = torch.randn(b, sum(h * w for h, w in shapes), m, d, generator=g, dtype=torch.float64)
    # locations partly outside [0, 1]: the zero padding is exercised
    locations = torch.rand(b, lq, m, len(shapes), n_points, 2, generator=g, dtype=torch.float64) * 1.3 - 0.15
    weights = torch.rand(b, lq, m, len(shapes), n_points, generator=g, dtype=torch.float64)
    got = ms_deform_attn(value, shapes, locations, weights)
    assert got.shape == (b, lq, m * d)
    assert torch.allclose(got, _naive(value, shapes, locations, weights), atol=1e-12)


def test_reference_points_are_pixel_centres():
    ref = reference_points([(2, 4)], batch=1)
    assert ref.shape == (1, 8, 1, 2)
    assert torch.allclose(ref[0, :4, 0], torch.tensor([[0.125, 0.25], [0.375, 0.25], [0.625, 0.25], [0.875, 0.25]]))


def test_module_initialisation_and_a_sample_at_the_reference_point():
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=8, n_points=4)
    assert not attn.attention_weights.weight.any() and not attn.sampling_offsets.weight.any()
    # head 0 looks right (+x), point p at p + 1 cells
    bias = attn.sampling_offsets.bias.view(8, 2, 4, 2)
    assert torch.allclose(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0])) and not bias[0, 0, :, 1].any()
    with pytest.raises(ModelError, match="divisible"):
        MSDeformAttn(d_model=10, n_heads=4)


@pytest.mark.parametrize("size", [(16, 16), (24, 40)])
def test_encoder_layer_keeps_shapes_and_passes_gradients(size):
    torch.manual_seed(0)
    layer = MSDeformEncoderLayer(d_model=8, n_levels=2, n_heads=8, n_points=4, d_ffn=32)
    h, w = size
    maps = [torch.randn(2, 8, h, w, requires_grad=True), torch.randn(2, 8, h // 4, w // 4, requires_grad=True)]
    out = layer(maps)
    assert [o.shape for o in out] == [m.shape for m in maps]
    sum(o.square().sum() for o in out).backward()
    assert maps[1].grad.abs().sum() > 0  # the full-resolution queries attend to the coarse level
    assert all(p.grad is not None for p in layer.parameters())
    with pytest.raises(ModelError, match="2 levels, got 1"):
        layer(maps[:1])
