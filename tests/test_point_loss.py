"""SimIR's point loss (``simir_point``): exact against dense BCE + Dice at pixel centres, PointRend's sampling
(uniform / most-uncertain points, the global RNG), the released sum over masks, empty targets, AMP dtypes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from irfoundry.engine.config import MethodConfig
from irfoundry.losses import LOSSES, build_loss, deep_supervision_loss
from irfoundry.point_loss import (
    point_bce_dice,
    point_sample,
    simir_point_criterion,
    simir_point_loss,
    uncertain_point_coords,
)


def _batch(seed=0, size=(16, 20)):
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(2, 1, *size)
    target[0, 0, 4:8, 5:9] = 1
    target[1, 0, 10:12, 2:5] = 1
    return torch.randn(2, 1, *size, generator=g), target


def _pixel_centres(b, h, w):
    y, x = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], -1).expand(b, -1, -1)


def _dense(logits, target):
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    p, g = logits.sigmoid().flatten(1), target.flatten(1)
    dice = 1 - (2 * (p * g).sum(1) + 1) / (p.sum(1) + g.sum(1) + 1)
    return 5 * bce.mean() + 5 * dice.mean()


def test_registered_and_accepted_by_the_method_config():
    assert LOSSES["simir_point"] is simir_point_loss and build_loss("SIMIR_POINT") is simir_point_loss
    assert MethodConfig(name="supervised", loss="simir_point").loss == "simir_point"


def test_points_at_every_pixel_centre_give_the_dense_bce_plus_dice():
    logits, target = _batch()
    coords = _pixel_centres(2, 16, 20)
    assert torch.allclose(point_sample(logits, coords)[:, 0], logits.flatten(1), atol=1e-6)  # the pixel values
    assert point_bce_dice(logits, target, coords).item() == pytest.approx(_dense(logits, target).item(), rel=1e-6)


def test_importance_zero_draws_uniform_points_from_the_global_rng():
    logits, _ = _batch()
    torch.manual_seed(7)
    coords = uncertain_point_coords(logits, num_points=500, oversample_ratio=3, importance_sample_ratio=0.0)
    torch.manual_seed(7)
    torch.rand(2, 1500, 2)  # the oversampled candidates, drawn first (Detectron2's order)
    assert torch.equal(coords, torch.rand(2, 500, 2))


def test_importance_one_keeps_the_most_uncertain_candidates():
    logits, _ = _batch(1)
    torch.manual_seed(8)
    coords = uncertain_point_coords(logits, num_points=100, oversample_ratio=4, importance_sample_ratio=1.0)
    torch.manual_seed(8)
    candidates = torch.rand(2, 400, 2)
    unc = -point_sample(logits, candidates)[:, 0].abs()
    for b in range(2):
        chosen = -point_sample(logits[b : b + 1], coords[b : b + 1])[0, 0].abs()
        assert chosen.min() >= unc[b].sort(descending=True).values[99] - 1e-6
        assert chosen.sort().values.allclose(unc[b].topk(100).values.sort().values)


def test_default_split_is_released_12544_points_three_quarters_uncertain():
    logits, _ = _batch()
    torch.manual_seed(9)
    coords = uncertain_point_coords(logits)
    assert coords.shape == (2, 12544, 2) and coords.min() >= 0 and coords.max() <= 1
    torch.manual_seed(9)
    torch.rand(2, 3 * 12544, 2)
    assert torch.equal(coords[:, 9408:], torch.rand(2, 12544 - 9408, 2))  # int(0.75 * 12544) = 9408 uncertain


def test_loss_is_the_point_loss_at_the_sampled_points():
    logits, target = _batch(2)
    torch.manual_seed(10)
    loss = simir_point_loss(logits, target)
    torch.manual_seed(10)
    assert loss.item() == pytest.approx(point_bce_dice(logits, target, uncertain_point_coords(logits)).item())


def test_many_uniform_points_approach_the_dense_loss_on_a_smooth_map():
    h = w = 32
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    logits = (3 * torch.cos(2 * x) * torch.sin(y) - 1).expand(2, 1, h, w)
    target = torch.sigmoid(4 * (x + y)).expand(2, 1, h, w)
    torch.manual_seed(11)
    sampled = simir_point_loss(logits, target, num_points=20000, importance_sample_ratio=0.0)
    assert sampled.item() == pytest.approx(_dense(logits, target).item(), rel=0.03)


def test_criterion_sums_the_masks_and_supervised_averages_them():
    logits, target = _batch(3)
    outs = [logits, logits * 0.5, logits - 1]
    torch.manual_seed(12)
    total = simir_point_criterion(outs, target)
    torch.manual_seed(12)
    each = [simir_point_loss(o, target) for o in outs]
    assert total.item() == pytest.approx(sum(e.item() for e in each))
    torch.manual_seed(12)
    assert deep_supervision_loss(outs, target, simir_point_loss).item() == pytest.approx(total.item() / 3)


def test_empty_targets_give_finite_gradients_that_push_logits_down():
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    loss = simir_point_loss(logits, torch.zeros(2, 1, 16, 16), num_points=256)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and (logits.grad >= 0).all()
    assert logits.grad.abs().sum() > 0
    confident = torch.full((2, 1, 16, 16), -30.0, requires_grad=True)
    loss = simir_point_loss(confident, torch.zeros(2, 1, 16, 16), num_points=256)
    loss.backward()
    assert loss.item() < 1e-3 and torch.isfinite(confident.grad).all()


def test_half_precision_logits_give_a_float32_loss():
    logits, target = _batch(4)
    for dtype in (torch.bfloat16, torch.float16):
        z = logits.to(dtype).requires_grad_(True)
        loss = simir_point_loss(z, target, num_points=200)
        loss.backward()
        assert loss.dtype == torch.float32 and z.grad.dtype == dtype and torch.isfinite(z.grad.float()).all()
