"""SAM's two-way transformer: tokens and image positions attend to each other (Kirillov et al., *Segment
Anything*, ICCV 2023; architecture of facebookresearch/segment-anything ``modeling/transformer.py``,
Apache-2.0, re-written here).

Used by the SAM mask decoder (:mod:`irfoundry.models.sam_decoder`) and by SimIR's decoder (depth 2, width
256, MLP 2048, 8 heads). Parameter names are SAM's, so the official checkpoint's ``mask_decoder.transformer.*``
keys load as they are. Attention runs through ``F.scaled_dot_product_attention`` (the same softmax attention
as the reference's explicit product, to float rounding).

Shapes: tokens ``B x N x C``; the image ``B x C x h x w`` flattened to ``B x hw x C`` positions.
"""

from __future__ import annotations

from typing import Type

import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError

__all__ = ["MLPBlock", "TokenAttention", "TwoWayAttentionBlock", "TwoWayTransformer"]


class MLPBlock(nn.Module):
    """``lin2(act(lin1(x)))``."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: Type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


class TokenAttention(nn.Module):
    """Multi-head attention whose projections may shrink the width by ``downsample_rate`` (SAM's
    ``Attention``): ``q``, ``k``, ``v`` ``B x N_* x C`` -> ``B x N_q x C``."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ModelError(f"{num_heads} heads must divide the attention width {self.internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out = F.scaled_dot_product_attention(self._heads(self.q_proj(q)), self._heads(self.k_proj(k)),
                                             self._heads(self.v_proj(v)))
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.internal_dim))


class TwoWayAttentionBlock(nn.Module):
    """Self-attention of the tokens, tokens -> image, MLP on the tokens, image -> tokens; each followed by
    a residual and a LayerNorm. ``skip_first_layer_pe``: the first block's self-attention sees the tokens
    without their positional embedding and has no residual (as SAM's)."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int = 2048, activation: Type[nn.Module] = nn.ReLU,
                 attention_downsample_rate: int = 2, skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = TokenAttention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = TokenAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = TokenAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` :class:`TwoWayAttentionBlock` s and a final tokens -> image attention.

    Args:
        depth, embedding_dim, num_heads, mlp_dim: SAM: 2, 256, 8, 2048.
        activation: of the MLP (SAM: ReLU).
        attention_downsample_rate: width divisor of the cross-attentions (SAM: 2).
    """

    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int,
                 activation: Type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.depth, self.embedding_dim, self.num_heads, self.mlp_dim = depth, embedding_dim, num_heads, mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, activation, attention_downsample_rate,
                                 skip_first_layer_pe=i == 0) for i in range(depth))
        self.final_attn_token_to_image = TokenAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor,
                query_pe: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``image_embedding``, ``image_pe``: ``B x C x h x w``; ``point_embedding``: ``B x N x C`` tokens.
        ``query_pe``: the tokens' positional embedding when it is not the tokens themselves (SAM: it is;
        SimIR's decoder gives learned ones). Returns the tokens ``B x N x C`` and the image ``B x hw x C``."""
        if image_embedding.shape[1] != self.embedding_dim or point_embedding.shape[-1] != self.embedding_dim:
            raise ModelError(f"TwoWayTransformer of width {self.embedding_dim} got an image "
                             f"{tuple(image_embedding.shape)} and tokens {tuple(point_embedding.shape)}")
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        query_pe = point_embedding if query_pe is None else query_pe
        for layer in self.layers:
            queries, keys = layer(queries=queries, keys=keys, query_pe=query_pe, key_pe=key_pe)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        return queries, keys
