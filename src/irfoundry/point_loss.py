"""SimIR's mask loss: BCE + Dice on PointRend-style sampled points (``loss: simir_point``).

O937-blip/SimIR ``semantic_sam/modules/criterion_interactive_many_to_one.py`` (``SetCriterion.sirst_loss``,
task ``sirst``) with Detectron2's PointRend sampling (``point_features.get_uncertain_point_coords_with_randomness``,
``point_sample``) and the weights of ``configs/repvit.yaml`` (``MASK_WEIGHT: 5.0``, ``DICE_WEIGHT: 5.0``,
``TRAIN_NUM_POINTS: 12544``, ``OVERSAMPLE_RATIO: 3.0``, ``IMPORTANCE_SAMPLE_RATIO: 0.75``); re-written in
plain PyTorch. Per mask (one per image, ``B x 1 x H x W`` logits against a same-shaped target):

1. draw ``N * oversample`` uniform points in ``[0, 1]^2`` (the global RNG, :func:`torch.rand` on the
   logits' device), sample the logits there (bilinear, zero padding, ``align_corners=False``), keep the
   ``int(importance * N)`` most uncertain (uncertainty ``-|logit|``) and add ``N - that`` fresh uniform
   points (:func:`uncertain_point_coords`; no gradient);
2. sample logits and target at those points (the target bilinearly too, as released: soft labels on
   edges);
3. ``5 * mean_b(mean_points BCE) + 5 * mean_b(1 - (2 sum(p g) + 1) / (sum p + sum g + 1))``, the Dice per
   image (:func:`point_bce_dice`).

The released criterion computes this for each of the three masks (encoder, FPN, decoder) and sums them
(:func:`simir_point_criterion`). ``method: supervised`` applies the registered per-mask loss through
:func:`irfoundry.losses.deep_supervision_loss`, which *averages* the outputs: the total is the released sum
divided by 3, a constant factor that AdamW and the released full-model gradient-norm clipping both ignore.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["point_bce_dice", "point_sample", "simir_point_criterion", "simir_point_loss", "uncertain_point_coords"]

#: configs/repvit.yaml
NUM_POINTS, OVERSAMPLE_RATIO, IMPORTANCE_SAMPLE_RATIO = 12544, 3.0, 0.75
BCE_WEIGHT, DICE_WEIGHT = 5.0, 5.0


def point_sample(maps: Tensor, coords: Tensor) -> Tensor:
    """``B x C x H x W`` maps at ``B x P x 2`` points ``(x, y)`` in [0, 1] -> ``B x C x P`` (Detectron2's
    ``point_sample``: bilinear, zero padding, ``align_corners=False``)."""
    return F.grid_sample(maps, 2.0 * coords.unsqueeze(2) - 1.0, mode="bilinear", padding_mode="zeros",
                         align_corners=False).squeeze(3)


@torch.no_grad()
def uncertain_point_coords(logits: Tensor, num_points: int = NUM_POINTS, oversample_ratio: float = OVERSAMPLE_RATIO,
                           importance_sample_ratio: float = IMPORTANCE_SAMPLE_RATIO) -> Tensor:
    """``B x 1 x H x W`` logits -> ``B x num_points x 2`` points (PointRend's training-time sampling)."""
    b = logits.shape[0]
    candidates = torch.rand(b, int(num_points * oversample_ratio), 2, device=logits.device)
    uncertainty = -point_sample(logits.float(), candidates)[:, 0].abs()
    n_uncertain = int(importance_sample_ratio * num_points)
    idx = uncertainty.topk(n_uncertain, dim=1).indices
    coords = torch.gather(candidates, 1, idx[..., None].expand(-1, -1, 2))
    if num_points > n_uncertain:
        coords = torch.cat([coords, torch.rand(b, num_points - n_uncertain, 2, device=logits.device)], 1)
    return coords


def point_bce_dice(logits: Tensor, target: Tensor, coords: Tensor, bce_weight: float = BCE_WEIGHT,
                   dice_weight: float = DICE_WEIGHT) -> Tensor:
    """Weighted BCE + Dice of ``B x 1 x H x W`` logits against the target at ``B x P x 2`` points
    (step 3 of the module docstring)."""
    z = point_sample(logits.float(), coords)[:, 0]
    with torch.no_grad():
        g = point_sample(target.float(), coords)[:, 0]
    bce = F.binary_cross_entropy_with_logits(z, g, reduction="none").mean(1)
    p = z.sigmoid()
    dice = 1.0 - (2.0 * (p * g).sum(1) + 1.0) / (p.sum(1) + g.sum(1) + 1.0)
    return bce_weight * bce.mean() + dice_weight * dice.mean()


def simir_point_loss(logits: Tensor, target: Tensor, num_points: int = NUM_POINTS,
                     oversample_ratio: float = OVERSAMPLE_RATIO,
                     importance_sample_ratio: float = IMPORTANCE_SAMPLE_RATIO) -> Tensor:
    """The released per-mask loss (module docstring); ``LOSSES["simir_point"]``."""
    coords = uncertain_point_coords(logits, num_points, oversample_ratio, importance_sample_ratio)
    return point_bce_dice(logits, target, coords)


def simir_point_criterion(outputs: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
    """The released total: :func:`simir_point_loss` summed over the masks (``[decoder, encoder, fpn]``)."""
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    return sum(simir_point_loss(o, target) for o in outputs)
