"""The normalised sine positional encoding of DETR / Mask2Former (``PositionEmbeddingSine(F, normalize=True)``).

Semantic-SAM ``semantic_sam/modules/position_encoding.py`` (Mask2Former's, from DETR), which SimIR
(O937-blip/SimIR) builds on, re-written here: row and column indices ``1..H`` / ``1..W`` are scaled to
``(0, 2 pi]`` (``i / (H + 1e-6) * 2 pi``, no half-pixel shift: Mask2Former's variant, not Deformable DETR's) and
encoded by ``F`` sines / cosines of geometric frequencies ``temperature^(2 floor(k / 2) / F)``; the
``y`` half comes first. No padding masks (every map covers the whole image).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["sine_position_embedding"]


def sine_position_embedding(x: Tensor, num_pos_feats: int, temperature: float = 10000.0,
                            scale: float = 2 * math.pi) -> Tensor:
    """``B x C x H x W`` (only its batch, size, device and dtype are read) -> ``B x 2F x H x W``."""
    b, _, h, w = x.shape
    eps, f32 = 1e-6, torch.float32  # computed in float32 (the released code: in the map's dtype), then cast
    y = torch.arange(1, h + 1, device=x.device, dtype=f32) / (h + eps) * scale
    xs = torch.arange(1, w + 1, device=x.device, dtype=f32) / (w + eps) * scale
    dim_t = torch.arange(num_pos_feats, device=x.device, dtype=f32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)

    def encode(v: Tensor) -> Tensor:  # L -> L x F, interleaved sin / cos
        p = v[:, None] / dim_t
        return torch.stack((p[:, 0::2].sin(), p[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(h, w, num_pos_feats)
    pos_x = encode(xs)[None, :, :].expand(h, w, num_pos_feats)
    pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)
    return pos.to(x.dtype).unsqueeze(0).expand(b, -1, -1, -1)
