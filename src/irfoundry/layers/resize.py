"""Bilinear resizes as the reference hosts write them."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor


def resize_aligned(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize to ``size`` with ``align_corners=True`` (``nn.Upsample`` as DNANet / MSHNet set it)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
