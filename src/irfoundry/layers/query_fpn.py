"""SimIR's query-augmented FPN neck (O937-blip/SimIR ``semantic_sam/body/encoder/transformer_encoder_fpn_test.py``,
``TransformerEncoderPixelDecoder.forward_features``, the neck ``configs/repvit.yaml`` selects; re-written here).

A top-down FPN over ``L`` maps of one width ``C`` (GroupNorm(32), Detectron2's ``c2_xavier_fill``
initialisation), deepest level first. At every level its own tokens and the encoder's tokens
(concatenated: ``Q_fpn + Q_enc`` tokens, the encoder's with a position embedding of the FPN's own) do one
:class:`~irfoundry.layers.sparse_query.QueryExchange` with the map (one set of layers *per level*,
dropout 0.5, each with its level embedding):

* deepest level: ``y = output_0(exchange_0(input_proj(x)))`` (``input_proj``: 1x1 conv with bias);
* other levels: ``y = output_k(exchange_k(lateral_k(x)) + nearest_up(y))`` (``lateral``: 1x1 conv + GN;
  ``output``: 3x3 conv + GN + ReLU).

Outputs: ``mask_features = Conv3x3(y)`` at the shallowest level (``B x mask_dim x H x W``), the FPN mask
``<mask_embed(norm(token_0)), mask_features>`` (``B x 1 x H x W``, the first FPN token), and all
``Q_fpn + Q_enc`` tokens after the last level. The released neck also returns the first three levels'
maps (``multi_scale_features``); SimIR's decoder never reads them, so they are not returned here.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irfoundry.errors import ModelError
from irfoundry.layers.mlp import MLP
from irfoundry.layers.sparse_query import QueryExchange

__all__ = ["QueryFPN", "c2_xavier_fill"]


def c2_xavier_fill(conv: nn.Conv2d) -> nn.Conv2d:
    """Detectron2 / fvcore ``c2_xavier_fill``: ``kaiming_uniform_(a=1)`` weights, zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _conv_gn(dim: int, k: int, groups: int, relu: bool) -> nn.Sequential:
    conv = c2_xavier_fill(nn.Conv2d(dim, dim, k, padding=k // 2, bias=False))
    return nn.Sequential(conv, nn.GroupNorm(groups, dim), *([nn.ReLU()] if relu else []))


class QueryFPN(nn.Module):
    """See the module docstring.

    Args:
        dim: width of every input map, of the FPN and of the tokens (SimIR: 256).
        num_levels: number of input maps (4).
        num_tokens: the FPN's own tokens (4); the encoder's come in through :meth:`forward`.
        num_encoder_tokens: the encoder's tokens (4), which get FPN-side position embeddings.
        heads, ffn_dim, dropout: of each level's :class:`QueryExchange` (8, 2048, 0.5).
        mask_dim: channels of ``mask_features`` and of the mask embedding (256).
        groups: GroupNorm groups (32).
    """

    def __init__(self, dim: int = 256, num_levels: int = 4, *, num_tokens: int = 4, num_encoder_tokens: int = 4,
                 heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.5, mask_dim: int = 256,
                 groups: int = 32) -> None:
        super().__init__()
        if dim % groups:
            raise ModelError(f"QueryFPN: {groups} GroupNorm groups must divide dim {dim}")
        self.num_levels = num_levels
        self.input_proj = c2_xavier_fill(nn.Conv2d(dim, dim, 1))
        self.lateral = nn.ModuleList(_conv_gn(dim, 1, groups, relu=False) for _ in range(num_levels - 1))
        self.output = nn.ModuleList(_conv_gn(dim, 3, groups, relu=True) for _ in range(num_levels))
        self.exchange = nn.ModuleList(QueryExchange(dim, heads, ffn_dim, dropout) for _ in range(num_levels))
        self.query_feat = nn.Embedding(num_tokens, dim)
        self.query_embed = nn.Embedding(num_tokens, dim)
        self.encoder_query_embed = nn.Embedding(num_encoder_tokens, dim)
        self.mask_features = c2_xavier_fill(nn.Conv2d(dim, mask_dim, 3, padding=1))
        self.norm = nn.LayerNorm(dim)
        self.mask_embed = MLP(dim, dim, mask_dim, 3)

    def forward(self, features: Sequence[Tensor], encoder_tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``features``: ``num_levels`` maps ``B x C x H_k x W_k``, shallow (largest) to deep;
        ``encoder_tokens``: ``B x Q_enc x C``. Returns ``(mask_features B x mask_dim x H_0 x W_0,
        mask B x 1 x H_0 x W_0, tokens B x (Q_fpn + Q_enc) x C)``."""
        if len(features) != self.num_levels:
            raise ModelError(f"QueryFPN built for {self.num_levels} levels got {len(features)} maps")
        b = encoder_tokens.shape[0]
        tokens = torch.cat([self.query_feat.weight.expand(b, -1, -1), encoder_tokens], 1)
        token_pos = torch.cat([self.query_embed.weight, self.encoder_query_embed.weight]).expand(b, -1, -1)
        y = None
        for k, x in enumerate(reversed(features)):
            x = self.input_proj(x) if k == 0 else self.lateral[k - 1](x)
            tokens, x = self.exchange[k](tokens, token_pos, x)
            y = x if y is None else x + F.interpolate(y, size=x.shape[-2:], mode="nearest")
            y = self.output[k](y)
        mask_features = self.mask_features(y)
        embed = self.mask_embed(self.norm(tokens[:, 0]))
        mask = torch.einsum("bc,bchw->bhw", embed, mask_features).unsqueeze(1)
        return mask_features, mask, tokens
