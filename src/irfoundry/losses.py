"""Segmentation losses on logits (``B x 1 x H x W``) against binary or soft targets (same shape).

All losses take logits: the sigmoid lives here, not in the host's ``forward``. Deep-supervision lists are
handled by :func:`deep_supervision_loss`. Registry: :data:`LOSSES` / :func:`build_loss`.

References:
    SoftIoU: BasicIRSTD ``SoftIoULoss`` (batch-level soft IoU, smooth = 1).
    Focal: Lin et al., ICCV 2017 (sigmoid focal loss, alpha = 0.25, gamma = 2).
    OHEM edge BCE: PAL (Yu et al., ICCV 2025, ``loss/Edge_loss.py::edgeSCE_loss``): per-pixel BCE,
    target-edge pixels weighted x4, mean over the hardest 50 % of pixels.
    SimIR point loss (``simir_point``): BCE + Dice, weight 5 each, on 12,544 PointRend-sampled points per
    mask (O937-blip/SimIR); implemented in :mod:`irfoundry.point_loss`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from irfoundry.errors import ConfigError
from irfoundry.point_loss import simir_point_loss

LossFn = Callable[[Tensor, Tensor], Tensor]


def soft_iou_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """``1 - (sum(p*g) + s) / (sum(p) + sum(g) - sum(p*g) + s)`` over the whole batch (BasicIRSTD)."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    return 1.0 - (inter + smooth) / (p.sum() + target.sum() - inter + smooth)


def bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy with logits."""
    return F.binary_cross_entropy_with_logits(logits, target)


def dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """``1 - (2 sum(p*g) + s) / (sum(p) + sum(g) + s)`` over the whole batch."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    return 1.0 - (2 * inter + smooth) / (p.sum() + target.sum() + smooth)


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Mean sigmoid focal loss (Lin et al. 2017); ``alpha < 0`` disables class balancing."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean()


def lesps_focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, gamma: float = 4.0) -> Tensor:
    """LESPS' CornerNet-style focal loss on soft targets (XinyiYing/LESPS ``utils.focal_loss`` with
    ``avg_factor``): ``sum(-log(p) (1 - p)^alpha t - log(1 - p) p^alpha (1 - t)^gamma) / max(1, #(t == 1))``,
    with ``p = sigmoid(logits)`` (``log`` through ``logsigmoid``: the reference adds 1e-12 inside the log)."""
    p = torch.sigmoid(logits)
    pos = -F.logsigmoid(logits) * (1 - p).pow(alpha) * target
    neg = -F.logsigmoid(-logits) * p.pow(alpha) * (1 - target).pow(gamma)
    return (pos + neg).sum() / target.eq(1).sum().clamp(min=1)


def target_edges(target: Tensor, width: int = 1) -> Tensor:
    """Morphological gradient of a ``B x 1 x H x W`` mask (dilation minus erosion, 3x3): 1 on target borders."""
    k = 2 * width + 1
    dil = F.max_pool2d(target, k, stride=1, padding=width)
    ero = -F.max_pool2d(-target, k, stride=1, padding=width)
    return (dil - ero).clamp_(0, 1)


def ohem_edge_bce_loss(
    logits: Tensor,
    target: Tensor,
    edge_weight: float = 4.0,
    keep_fraction: float = 0.5,
    reference_quirk: bool = False,
) -> Tensor:
    """PAL's edge-weighted OHEM BCE.

    Per-pixel BCE, pixels on target edges (:func:`target_edges`) weighted by ``edge_weight`` and 1
    elsewhere; the mean is taken over the pixels whose weighted loss is at least the value at the
    ``1 - keep_fraction`` quantile (ties kept, as the reference does).

    ``reference_quirk=True`` reproduces the released code exactly: it first sets weight 1 where the edge
    map is 0 and then ``edge_weight`` wherever it is > 0, which overwrites those ones, so every pixel gets
    ``edge_weight`` (a constant x4 scale). The default applies the weighting the code evidently intends.
    """
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if reference_quirk:
        loss = loss * edge_weight
    else:
        loss = loss * (1.0 + (edge_weight - 1.0) * target_edges(target))
    flat = loss.reshape(-1)
    k = int((1.0 - keep_fraction) * flat.numel())
    threshold = flat.kthvalue(min(k + 1, flat.numel())).values  # sorted ascending, index k
    return loss[loss >= threshold].mean()


LOSSES: dict[str, LossFn] = {
    "softiou": soft_iou_loss,
    "bce": bce_loss,
    "dice": dice_loss,
    "focal": focal_loss,
    "lesps_focal": lesps_focal_loss,
    "ohem_bce": ohem_edge_bce_loss,
    "softiou+bce": lambda z, t: soft_iou_loss(z, t) + bce_loss(z, t),
    "simir_point": simir_point_loss,
}


def build_loss(name: str) -> LossFn:
    """Loss function by name; raises :class:`ConfigError` listing the allowed names."""
    try:
        return LOSSES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None


def deep_supervision_loss(
    outputs: Tensor | Sequence[Tensor], target: Tensor, loss_fn: LossFn, aux_weight: float = 1.0
) -> Tensor:
    """Loss of a host output: ``loss(main) + aux_weight * sum(loss(aux_i))``, divided by the total weight.

    With ``aux_weight = 1`` this is the plain mean over outputs, which is what BasicIRSTD does for DNANet
    and UIU-Net. ``outputs`` is a tensor or a list ``[main, aux...]`` of ``B x 1 x H x W`` logits.
    """
    if isinstance(outputs, Tensor):
        return loss_fn(outputs, target)
    main, *aux = outputs
    total = loss_fn(main, target)
    for a in aux:
        total = total + aux_weight * loss_fn(a, target)
    return total / (1.0 + aux_weight * len(aux))
