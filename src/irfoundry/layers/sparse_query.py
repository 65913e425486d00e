"""SimIR's sparse-query exchange: a few learnable tokens and a feature map attend to each other.

SimIR (arXiv 2409.04714; code O937-blip/SimIR ``semantic_sam/backbone/repvit11_query_deform.py`` in the
encoder and ``semantic_sam/body/encoder/transformer_encoder_fpn_test.py`` in the neck) runs, at each level,
the four post-norm Mask2Former layers of ``semantic_sam/body/decoder/modules.py`` in this order:

1. tokens -> pixels cross-attention (``CrossAttentionLayer``: ``norm(t + drop(MHA(t + pos_t, p + pos_p, p)))``);
2. FFN on the tokens (``norm(t + drop(lin2(drop(relu(lin1(t))))))``);
3. self-attention of the tokens (``norm(t + drop(MHA(t + pos_t, t + pos_t, t)))``);
4. pixels -> tokens cross-attention, whose output (the pixels *with* their residual, normalised) replaces
   the map.

Positions: the tokens carry learned embeddings, the pixels the sine encoding of their grid
(:func:`~irfoundry.layers.sine_position.sine_position_embedding`), and a learnable level embedding
(``level_embed``, ``N(0, 1)`` as the released ``nn.Embedding`` rows) is added to their features. Initialisation
as released: Xavier-uniform on every weight matrix of the four layers.

Shapes: tokens ``B x Q x C``; the map ``B x C x H x W``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.layers.sine_position import sine_position_embedding

__all__ = ["QueryExchange"]


class _Attend(nn.Module):
    """``norm(q + drop(MHA(q + q_pos, kv + kv_pos, kv)))`` (Mask2Former's post-norm attention layer)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: Tensor, kv: Tensor, q_pos: Tensor, kv_pos: Tensor) -> Tensor:
        out = self.attn(q + q_pos, kv + kv_pos, kv, need_weights=False)[0]
        return self.norm(q + self.drop(out))


class _FFN(nn.Module):
    """``norm(x + drop(lin2(drop(relu(lin1(x))))))``."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.drop(self.lin2(self.drop(self.lin1(x).relu()))))


class QueryExchange(nn.Module):
    """One round of token <-> pixel exchange (see the module docstring).

    Args:
        dim: width of the tokens and of the map.
        heads: attention heads (8).
        ffn_dim: hidden width of the token FFN (2048).
        dropout: of every attention and FFN (0 in SimIR's encoder, 0.5 in its FPN).
    """

    def __init__(self, dim: int = 256, heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads or dim % 2:
            raise ModelError(f"QueryExchange: dim {dim} must be even and divisible by heads {heads}")
        self.dim = dim
        self.token_to_pixel = _Attend(dim, heads, dropout)
        self.ffn = _FFN(dim, ffn_dim, dropout)
        self.self_attn = _Attend(dim, heads, dropout)
        self.pixel_to_token = _Attend(dim, heads, dropout)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.level_embed = nn.Parameter(torch.randn(dim))

    def forward(self, tokens: Tensor, token_pos: Tensor, fmap: Tensor) -> tuple[Tensor, Tensor]:
        """``tokens``, ``token_pos`` ``B x Q x C``; ``fmap`` ``B x C x H x W``.
        Returns the updated tokens ``B x Q x C`` and map ``B x C x H x W``."""
        b, c, h, w = fmap.shape
        if c != self.dim or tokens.shape[-1] != self.dim:
            raise ModelError(f"QueryExchange of width {self.dim} got a map {tuple(fmap.shape)} and tokens "
                             f"{tuple(tokens.shape)}")
        pos = sine_position_embedding(fmap, c // 2).flatten(2).transpose(1, 2)
        src = (fmap.flatten(2) + self.level_embed[None, :, None]).transpose(1, 2)
        tokens = self.token_to_pixel(tokens, src, token_pos, pos)
        tokens = self.ffn(tokens)
        tokens = self.self_attn(tokens, tokens, token_pos, token_pos)  # MHA(t + pos, t + pos, t)
        pixels = self.pixel_to_token(src, tokens, pos, token_pos)
        return tokens, pixels.transpose(1, 2).reshape(b, c, h, w)
