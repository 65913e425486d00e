"""FoundationEncoder: the foundation plumbing with gradients, and what each finetune mode trains."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("timm")

from irfoundry.errors import ModelError  # noqa: E402
from irfoundry.foundation import FoundationSpec, create_foundation  # noqa: E402
from irfoundry.foundation.trainable import FoundationEncoder, parse_finetune  # noqa: E402
from irfoundry.layers.lora import LoRALinear  # noqa: E402

TINY_SAM = FoundationSpec(name="sam_vit_trainable_test", arch="samvit_base_patch16", family="sam", kind="vit",
                          timm_kwargs=dict(depth=3, embed_dim=32, num_heads=2, global_attn_indexes=[2], img_size=64,
                                           neck_chans=16))


def _lite0(layers=(3,)):
    torch.manual_seed(0)
    return create_foundation("efficientnet_lite0", weights="random", layers=list(layers))


def _trainable_names(enc: FoundationEncoder) -> set[str]:
    return {n for n, p in enc.named_parameters() if p.requires_grad}


def test_parse_finetune_accepts_the_four_modes_and_names_the_typo():
    assert parse_finetune("frozen") == ("frozen", 0) and parse_finetune("full") == ("full", 0)
    assert parse_finetune("last:2") == ("last", 2) and parse_finetune("lora:8") == ("lora", 8)
    for bad in ("last:0", "lora", "freeze", "last:-1"):
        with pytest.raises(ModelError, match="finetune must be"):
            parse_finetune(bad)


def test_frozen_encoder_equals_the_frozen_adapter_and_trains_nothing():
    fm = _lite0()
    x = torch.rand(2, 1, 64, 96)
    expected = fm(x)[0]
    enc = FoundationEncoder(fm, "frozen").train()
    assert not _trainable_names(enc) and not enc.backbone.training
    out = enc(x)[0]
    assert torch.equal(out, expected) and not out.requires_grad
    assert set(enc.state_dict()) == {"backbone." + k for k in fm.backbone.state_dict()}


def test_last_n_trains_the_blocks_up_to_the_selected_stage_only():
    enc = FoundationEncoder(_lite0(layers=(3,)), "last:2").train()  # stage 3 (stride 16) is timm blocks.4
    assert enc.trainable_modules == ["blocks.3", "blocks.4"]
    names = _trainable_names(enc)
    assert names and all(n.startswith(("backbone.blocks.3.", "backbone.blocks.4.")) for n in names)
    assert enc.backbone.blocks[4].training and not enc.backbone.blocks[2].training and not enc.backbone.bn1.training
    enc(torch.rand(1, 1, 64, 64))[0].square().mean().backward()
    assert all(p.grad is not None for n, p in enc.named_parameters() if n in names)
    assert all(p.grad is None for n, p in enc.named_parameters() if n not in names)
    enc.eval()
    assert not enc.backbone.blocks[4].training


def test_full_trains_everything_and_lora_is_refused_on_a_cnn():
    enc = FoundationEncoder(_lite0(), "full").train()
    assert _trainable_names(enc) == {n for n, _ in enc.named_parameters()} and enc.backbone.training
    with pytest.raises(ModelError, match="CNN"):
        FoundationEncoder(_lite0(), "lora:4")


def test_lora_on_a_sam_vit_starts_equal_and_trains_only_the_adapters():
    torch.manual_seed(0)
    fm = create_foundation(TINY_SAM, weights="random", layers=["neck"])
    x = torch.rand(1, 1, 64, 64)
    expected = fm(x)[0]
    enc = FoundationEncoder(fm, "lora:4").train()
    assert len(enc.trainable_modules) == 2 * 3  # qkv and proj of every block
    assert isinstance(enc.backbone.blocks[0].attn.qkv, LoRALinear)
    assert all(n.rsplit(".", 1)[-1] in ("lora_a", "lora_b") for n in _trainable_names(enc))
    out = enc(x)[0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert enc.backbone.blocks[0].attn.qkv.lora_b.grad is not None


def test_last_n_on_a_sam_vit_includes_the_neck():
    enc = FoundationEncoder(create_foundation(TINY_SAM, weights="random", layers=["neck"]), "last:1")
    assert enc.trainable_modules == ["blocks.2", "neck"]
