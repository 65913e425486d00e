"""``layers="hidden_states"`` with ``norm="last"``: the 13 maps semantic-prior KD fuses (Hugging Face's
``hidden_states`` with the last one replaced by ``last_hidden_state``), checked against timm's own forward."""

from __future__ import annotations

import pytest
import torch

from irfoundry.errors import ModelError
from irfoundry.foundation import create_foundation


@pytest.fixture(scope="module")
def dinov3():
    torch.manual_seed(0)
    return create_foundation("dinov3_vits16", weights="random", layers="hidden_states", norm="last")


def _tokens_to_map(tokens, bb, h, w):
    t = tokens[:, bb.num_prefix_tokens:]
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)


def test_thirteen_maps_embedding_blocks_and_post_norm_last(dinov3):
    fm = dinov3
    assert fm.layers == ["embed"] + list(range(12)) and len(fm.feature_info) == 13
    assert all(i["channels"] == 384 and i["stride"] == 16 for i in fm.feature_info)
    x = torch.rand(2, 1, 64, 48)  # a multiple of the patch: no padding, no resampling
    maps = fm(x)
    assert len(maps) == 13 and all(m.shape == (2, 384, 4, 3) for m in maps)
    bb = fm.backbone
    img = (x.expand(-1, 3, -1, -1) - fm.mean) / fm.std
    with torch.no_grad():
        # what block 0 receives: patch embedding, prefix tokens and position embedding (timm's Eva returns the
        # rotary embedding beside the tokens), then the pre-norm
        tokens = bb._pos_embed(bb.patch_embed(img))
        tokens = bb.norm_pre(tokens[0] if isinstance(tokens, tuple) else tokens)
        plain = bb.forward_intermediates(img, indices=list(range(12)), intermediates_only=True)
        last = bb.forward_features(img)  # ends with the final norm
    assert torch.allclose(maps[0], _tokens_to_map(tokens, bb, 4, 3), atol=1e-6)
    for k in range(11):
        assert torch.allclose(maps[k + 1], plain[k], atol=1e-6), k
    assert torch.allclose(maps[12], _tokens_to_map(last, bb, 4, 3), atol=1e-5)
    assert not torch.allclose(maps[12], plain[11], atol=1e-3)  # the norm was applied


def test_embed_alone_and_bad_combinations():
    torch.manual_seed(0)
    fm = create_foundation("timm:vit_tiny_patch16_224", weights="random", layers=["embed", -1])
    assert fm.layers == ["embed", 11] and len(fm(torch.rand(1, 1, 32, 32))) == 2
    with pytest.raises(ModelError, match="norm='last'.*add block 11"):
        create_foundation("timm:vit_tiny_patch16_224", weights="random", layers=[3], norm="last")
    with pytest.raises(ModelError, match="'hidden_states', 'embed'"):
        create_foundation("timm:vit_tiny_patch16_224", weights="random", layers=["emb"])
    with pytest.raises(ModelError, match="stage indices"):
        create_foundation("efficientnet_lite0", layers=["embed"])
