"""SCAM: the released parameter counts, the modulation formula, layer fusion and attention pooling."""

from __future__ import annotations

import pytest
import torch

from irfoundry.errors import ModelError
from irfoundry.fusion.scam import SCAM, modulate

VIT = [384] * 13  # DINOv3 ViT-S+/16: the embedding output and 12 blocks


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_the_released_sizes():
    # methods.md: "SCAM is about 178k (ALCL) / 79k (MLCL) parameters"
    assert _params(SCAM(VIT, [16, 32, 64, 128, 256])) == 13 + 385 + (384 * 128 + 128) + (128 * 992 + 992) + 496
    assert _params(SCAM(VIT, [16, 32, 64, 128, 256])) == 178_142
    assert _params(SCAM(VIT, [16, 32, 64])) == 78_686


def test_zero_initialised_output_leaves_the_host_features_unchanged():
    scam = SCAM([8, 8], [4, 6], hidden=5, zero_init=True)
    maps = [torch.randn(2, 8, 3, 5), torch.randn(2, 8, 3, 5)]
    feats = [torch.randn(2, 4, 16, 16), torch.randn(2, 6, 8, 8), torch.randn(2, 9, 4, 4)]
    gammas, betas = scam(maps)
    assert all(torch.equal(g, torch.ones_like(g)) for g in gammas) and all(not b.any() for b in betas)
    out = modulate(feats, gammas, betas, scale=0.55)
    assert len(out) == 3 and all(torch.equal(a, b) for a, b in zip(out, feats))


def test_modulation_formula_and_the_off_switch():
    f = torch.randn(2, 3, 4, 4)
    g, b = torch.rand(2, 3, 1, 1) + 0.5, torch.randn(2, 3, 1, 1)
    (out,) = modulate([f], [g], [b], scale=0.12)
    assert torch.allclose(out, (1 + 0.12 * (g - 1)) * f + 0.12 * b)
    assert modulate([f], [g], [b], scale=0.0)[0] is f


def test_gamma_is_one_plus_tanh_of_gated_raw_and_beta_follows_it():
    torch.manual_seed(0)
    scam = SCAM([4], [2, 3], hidden=6)
    with torch.no_grad():
        scam.gate.copy_(torch.tensor([0.5, 2.0, 1.0, -1.0, 0.0]))
    maps = [torch.randn(1, 4, 2, 2)]
    vec = scam.mlp(scam.pool(scam.fuse(maps)))[0]
    gammas, betas = scam(maps)
    assert torch.allclose(gammas[0].flatten(), 1 + torch.tanh(vec[0:2] * torch.tensor([0.5, 2.0])))
    assert torch.allclose(betas[0].flatten(), vec[2:4])
    assert torch.allclose(gammas[1].flatten(), 1 + torch.tanh(vec[4:7] * torch.tensor([1.0, -1.0, 0.0])))
    assert torch.allclose(betas[1].flatten(), vec[7:10])
    assert all(0 < g.min() and g.max() < 2 for g in gammas)


def test_soft_fusion_starts_equal_and_pooling_is_a_softmax_weighted_mean():
    scam = SCAM([3, 3, 3], [2])
    maps = [torch.randn(2, 3, 4, 5) for _ in range(3)]
    fused = scam.fuse(maps)
    assert torch.allclose(fused, sum(maps) / 3)
    with torch.no_grad():
        scam.attn_score.weight.zero_()
        scam.attn_score.bias.zero_()
    assert torch.allclose(scam.pool(fused), fused.mean(dim=(2, 3)), atol=1e-6)  # flat scores: the plain mean


def test_cnn_layers_of_different_widths_and_grids_are_projected_then_fused():
    scam = SCAM([16, 24, 40], [8, 16])  # e.g. EfficientNet-Lite0 stages at strides 4 / 8 / 16
    assert scam.fuse_channels == 40 and scam.project is not None
    maps = [torch.randn(2, 16, 32, 32), torch.randn(2, 24, 16, 16), torch.randn(2, 40, 8, 8)]
    assert scam.fuse(maps).shape == (2, 40, 8, 8)
    gammas, betas = scam(maps)
    assert [g.shape for g in gammas] == [(2, 8, 1, 1), (2, 16, 1, 1)]
    loss = sum(g.sum() + b.sum() for g, b in zip(gammas, betas))
    loss.backward()
    assert all(p.grad is not None for p in scam.parameters())


def test_wrong_inputs_are_named():
    scam = SCAM(VIT[:2], [4])
    with pytest.raises(ModelError, match="2 foundation layers, got 1"):
        scam([torch.randn(1, 384, 2, 2)])
    with pytest.raises(ModelError, match="B x \\[384, 384\\]"):
        scam([torch.randn(1, 384, 2, 2), torch.randn(1, 100, 2, 2)])
    with pytest.raises(ModelError, match="share a grid"):
        scam([torch.randn(1, 384, 2, 2), torch.randn(1, 384, 3, 3)])
    with pytest.raises(ModelError, match="widths"):
        SCAM([], [4])
