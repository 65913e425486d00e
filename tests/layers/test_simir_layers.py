"""SimIR's blocks: the sine position encoding against Mask2Former's cumsum formulation, the sparse-query exchange
and the query FPN (shapes, token flow, dropout only in training)."""

from __future__ import annotations

import math

import torch

from irfoundry.layers.query_fpn import QueryFPN
from irfoundry.layers.sine_position import sine_position_embedding
from irfoundry.layers.sparse_query import QueryExchange


def _mask2former_sine(x, f, temperature=10000, scale=2 * math.pi):
    """Mask2Former's ``PositionEmbeddingSine(f, normalize=True)`` written as it is (cumsum of a mask)."""
    not_mask = torch.ones(x.shape[0], x.shape[2], x.shape[3])
    y_embed, x_embed = not_mask.cumsum(1), not_mask.cumsum(2)
    y_embed = y_embed / (y_embed[:, -1:, :] + 1e-6) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + 1e-6) * scale
    dim_t = torch.arange(f, dtype=torch.float32)
    dim_t = temperature ** (2 * (dim_t // 2) / f)
    px, py = x_embed[..., None] / dim_t, y_embed[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


def test_sine_position_embedding_is_mask2formers():
    for f, (h, w) in ((4, (5, 7)), (128, (16, 12))):
        x = torch.zeros(2, 3, h, w)
        assert torch.allclose(sine_position_embedding(x, f), _mask2former_sine(x, f), atol=1e-6)
    assert sine_position_embedding(torch.zeros(1, 1, 4, 4, dtype=torch.bfloat16), 4).dtype == torch.bfloat16


def test_query_exchange_updates_tokens_and_map():
    torch.manual_seed(0)
    block = QueryExchange(32, heads=8, ffn_dim=64).eval()
    tokens, pos, fmap = torch.randn(2, 4, 32), torch.randn(2, 4, 32), torch.randn(2, 32, 6, 5)
    new_tokens, new_map = block(tokens, pos, fmap)
    assert new_tokens.shape == (2, 4, 32) and new_map.shape == (2, 32, 6, 5)
    assert not torch.allclose(new_tokens, tokens)
    # the map's update depends on the tokens
    assert not torch.allclose(block(tokens + 1, pos, fmap)[1], new_map)


def test_query_fpn_shapes_and_dropout_only_in_training():
    torch.manual_seed(0)
    fpn = QueryFPN(32, 4, ffn_dim=64, mask_dim=32, groups=8)
    feats = [torch.randn(1, 32, 32 // s, 24 // s) for s in (1, 2, 4, 8)]
    enc = torch.randn(1, 4, 32)
    fpn.eval()
    mask_features, mask, tokens = fpn(feats, enc)
    assert mask_features.shape == (1, 32, 32, 24) and mask.shape == (1, 1, 32, 24) and tokens.shape == (1, 8, 32)
    assert torch.equal(fpn(feats, enc)[1], mask)
    fpn.train()
    assert not torch.allclose(fpn(feats, enc)[1], fpn(feats, enc)[1])  # dropout 0.5
