"""Multi-scale deformable attention (Zhu et al., Deformable DETR, ICLR 2021), pure PyTorch.

SimIR's dense queries (arXiv 2409.04714; code O937-blip/SimIR ``repvit11_query_deform.py``) update 8-channel
maps with one such encoder layer over two levels (d_model 8, 8 heads, 4 points, FFN 2048, dropout 0).
The reference calls the external CUDA op; :func:`ms_deform_attn` is its portable equivalent on
``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``: a location ``(x, y)`` in [0, 1] samples
pixel coordinates ``(x W - 0.5, y H - 0.5)``), exact against a per-point loop (``tests/layers``). A CUDA
kernel could replace it for speed; nothing else would change.

Shapes: ``B`` batch, ``Lq`` queries, ``L`` levels of sizes ``(H_l, W_l)`` flattened and concatenated into
``S = sum H_l W_l`` positions, ``M`` heads of ``D = d_model / M`` channels, ``P`` points per head and level.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError

__all__ = ["MSDeformAttn", "MSDeformEncoderLayer", "ms_deform_attn", "reference_points"]


def ms_deform_attn(value: Tensor, shapes: Sequence[tuple[int, int]], locations: Tensor, weights: Tensor) -> Tensor:
    """The sampling core.

    Args:
        value: ``B x S x M x D`` per-head values of every level, flattened in order.
        shapes: ``[(H_l, W_l)]`` of the ``L`` levels.
        locations: ``B x Lq x M x L x P x 2`` sampling points ``(x, y)`` in [0, 1] of each level.
        weights: ``B x Lq x M x L x P`` attention weights (softmax over ``L x P`` per head).

    Returns:
        ``B x Lq x (M D)``.
    """
    b, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = locations.shape
    sizes = [h * w for h, w in shapes]
    if sum(sizes) != value.shape[1] or len(shapes) != n_levels:
        raise ModelError(f"deformable attention: {value.shape[1]} values for levels {list(shapes)}")
    grids = 2 * locations - 1
    sampled = []
    for level, ((h, w), v) in enumerate(zip(shapes, value.split(sizes, dim=1))):
        v = v.flatten(2).transpose(1, 2).reshape(b * m, d, h, w)  # (B M) x D x H x W
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (B M) x Lq x P x 2
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(sampled, dim=-2).flatten(-2)  # (B M) x D x Lq x (L P)
    w = weights.transpose(1, 2).reshape(b * m, 1, lq, n_levels * n_points)
    out = (stacked * w).sum(-1).view(b, m * d, lq)
    return out.transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Deformable attention of queries to ``n_levels`` maps, Deformable DETR's module and initialisation.

    ``forward(query B x Lq x C, reference B x Lq x L x 2 in [0, 1], value_input B x S x C, shapes)``.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ModelError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets start on a ring: head ``k`` looks along angle ``2 pi k / M``, point ``p`` at distance ``p + 1``."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query: Tensor, reference: Tensor, value_input: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        b, lq, _ = query.shape
        m, n_levels, p = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value_input).view(b, value_input.shape[1], m, self.d_model // m)
        offsets = self.sampling_offsets(query).view(b, lq, m, n_levels, p, 2)
        weights = self.attention_weights(query).view(b, lq, m, n_levels * p).softmax(-1).view(b, lq, m, n_levels, p)
        # from the shapes as tensors, not a constant: an ONNX trace then keeps the level sizes dynamic
        normaliser = torch.stack([torch.stack([torch.as_tensor(w), torch.as_tensor(h)]) for h, w in shapes]).to(
            device=query.device, dtype=query.dtype)
        locations = reference[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn(value, shapes, locations, weights))


def reference_points(shapes: Sequence[tuple[int, int]], batch: int, device=None, dtype=torch.float32) -> Tensor:
    """``B x S x L x 2``: every position's centre ``((j + 0.5) / W_l, (i + 0.5) / H_l)``, the same on every
    level (no padding: every map covers the whole image)."""
    refs = []
    for h, w in shapes:
        y, x = torch.meshgrid(torch.arange(h, device=device, dtype=dtype) + 0.5,
                              torch.arange(w, device=device, dtype=dtype) + 0.5, indexing="ij")
        refs.append(torch.stack([x.reshape(-1) / w, y.reshape(-1) / h], -1))
    ref = torch.cat(refs, 0)
    return ref[None, :, None, :].expand(batch, -1, len(shapes), -1)


class MSDeformEncoderLayer(nn.Module):
    """One post-norm encoder layer (deformable self-attention, FFN) over maps of several levels.

    ``forward(maps: [B x C x H_l x W_l], pos: [B x C x H_l x W_l] or None) -> maps`` of the same shapes, with a
    learnable per-level embedding added to the positions, as Mask2Former / SimIR's encoder-only module.
    """

    def __init__(self, d_model: int = 8, n_levels: int = 2, n_heads: int = 8, n_points: int = 4, d_ffn: int = 2048,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.level_embed = nn.Parameter(torch.randn(n_levels, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ffn), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(d_ffn, d_model))
        self.drop1, self.drop3 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, maps: Sequence[Tensor], pos: Sequence[Tensor] | None = None) -> list[Tensor]:
        if len(maps) != self.attn.n_levels:
            raise ModelError(f"the deformable encoder was built for {self.attn.n_levels} levels, got {len(maps)}")
        shapes = [tuple(x.shape[-2:]) for x in maps]
        src = torch.cat([x.flatten(2).transpose(1, 2) for x in maps], 1)
        if pos is None:
            pos = [torch.zeros_like(x) for x in maps]
        lvl_pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i] for i, p in enumerate(pos)], 1)
        ref = reference_points(shapes, src.shape[0], src.device, src.dtype)
        src = self.norm1(src + self.drop1(self.attn(src + lvl_pos, ref, src, shapes)))
        src = self.norm2(src + self.drop3(self.ffn(src)))
        out, start = [], 0
        for (h, w), x in zip(shapes, maps):
            out.append(src[:, start : start + h * w].transpose(1, 2).reshape(x.shape))
            start += h * w
        return out
