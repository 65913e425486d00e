"""LoRA: starts equal to the base layer, trains only the adapters, merges into one equal linear layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from irfoundry.errors import ModelError
from irfoundry.layers.lora import LoRALinear, inject_lora


def test_lora_starts_as_the_base_layer_trains_only_its_adapters_and_merges_exactly():
    torch.manual_seed(0)
    base = nn.Linear(12, 18)
    x = torch.randn(5, 7, 12)
    expect = base(x).detach()
    layer = LoRALinear(base, rank=3, alpha=6)
    assert torch.equal(layer(x), expect)  # B = 0 at the start
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["lora_a", "lora_b"]
    layer(x).square().sum().backward()
    assert base.weight.grad is None and layer.lora_b.grad.abs().sum() > 0
    with torch.no_grad():
        layer.lora_b.normal_()
    assert torch.allclose(layer.merged()(x), layer(x), atol=1e-5)
    assert torch.allclose(layer(x) - expect, 2.0 * (x @ layer.lora_a.t() @ layer.lora_b.t()), atol=1e-5)


def test_inject_lora_replaces_the_named_linears_of_a_vit():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=2)
    x = torch.randn(1, 3, 32, 32)
    before = vit(x)
    names = inject_lora(vit, ("qkv",), rank=2)
    assert names == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]
    assert torch.equal(vit(x), before)
    with pytest.raises(ModelError, match="no nn.Linear"):
        inject_lora(nn.Sequential(nn.Conv2d(1, 1, 1)), ("qkv",))
