from __future__ import annotations

import pytest
import torch

from irfoundry.errors import ConfigError
from irfoundry.losses import (
    LOSSES,
    build_loss,
    deep_supervision_loss,
    ohem_edge_bce_loss,
    soft_iou_loss,
    target_edges,
)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(2, 1, 16, 16)
    target[0, 0, 4:8, 4:8] = 1
    target[1, 0, 10:12, 2:5] = 1
    return torch.randn(2, 1, 16, 16, generator=g), target


@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_are_finite_differentiable_and_prefer_the_truth(name):
    logits, target = _batch()
    logits.requires_grad_(True)
    loss = build_loss(name)(logits, target)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and logits.grad.abs().sum() > 0
    good = build_loss(name)((target * 2 - 1) * 8, target)
    assert good < loss


def test_soft_iou_matches_hand_computation():
    target = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    logits = torch.logit(torch.tensor([0.5, 0.5, 0.5, 0.5])).view(1, 1, 2, 2)
    # p*g = 1, sum p = 2, sum g = 2 -> (1 + 1) / (2 + 2 - 1 + 1) = 0.5
    assert soft_iou_loss(logits, target).item() == pytest.approx(0.5)


def test_ohem_keeps_hardest_half_and_weights_edges():
    logits, target = _batch(1)
    per_px = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    w = 1 + 3 * target_edges(target)
    weighted = (per_px * w).flatten()
    thr = weighted.sort().values[weighted.numel() // 2]
    expected = weighted[weighted >= thr].mean()
    assert ohem_edge_bce_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    # the released code's quirk weights every pixel x4
    all4 = (per_px * 4).flatten()
    thr4 = all4.sort().values[all4.numel() // 2]
    assert ohem_edge_bce_loss(logits, target, reference_quirk=True).item() == pytest.approx(
        all4[all4 >= thr4].mean().item(), rel=1e-6
    )


def test_target_edges_ring():
    t = torch.zeros(1, 1, 7, 7)
    t[0, 0, 2:5, 2:5] = 1
    e = target_edges(t)
    assert e[0, 0, 3, 3] == 0 and e[0, 0, 2, 2] == 1 and e[0, 0, 1, 1] == 1 and e[0, 0, 0, 0] == 0


def test_deep_supervision_mean_and_weight():
    logits, target = _batch()
    outs = [logits, logits * 0.5, logits * 2]
    fn = build_loss("bce")
    mean = sum(fn(o, target) for o in outs) / 3
    assert deep_supervision_loss(outs, target, fn).item() == pytest.approx(mean.item())
    assert deep_supervision_loss(outs, target, fn, aux_weight=0.0).item() == pytest.approx(fn(logits, target).item())
    assert deep_supervision_loss(logits, target, fn).item() == pytest.approx(fn(logits, target).item())


def test_unknown_loss():
    with pytest.raises(ConfigError, match="unknown loss 'iou'.*softiou"):
        build_loss("iou")
