"""SimIR student: the three masks and their shapes at two sizes, eval = decoder mask, gradients everywhere,
``in_chans``, the input multiple, the released wiring (taps after timm's pre-blocks, the shared sparse
exchange at four levels, the deformable layers on two levels), the pinned size of the published
configuration and one training step of it, and the ``simir_point`` loss through ``method: supervised``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import irfoundry.models.simir  # noqa: F401  (registers "simir", "simir_small")
from irfoundry.errors import ModelError
from irfoundry.models import create_model, model_entry
from irfoundry.models.base import count_params
from irfoundry.models.simir import SimIRStudent
from irfoundry.point_loss import simir_point_criterion

pytest.importorskip("timm")


@pytest.fixture(scope="module")
def small() -> SimIRStudent:
    torch.manual_seed(0)
    return create_model("simir_small")


def _hooked(model, names):
    """Register forward hooks recording each named submodule's (inputs, output) per call."""
    calls = {n: [] for n in names}
    handles = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: calls[n].append((i, o)))
               for n in names]
    return calls, handles


@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
def test_training_returns_decoder_encoder_fpn_masks_at_full_resolution(small, size):
    calls, handles = _hooked(small, ["decoder_logit", "encoder_logit", "fpn_logit"])
    try:
        out = small.train()(torch.randn(2, 1, *size))
    finally:
        for h in handles:
            h.remove()
    assert isinstance(out, list) and len(out) == 3
    assert all(o.shape == (2, 1, *size) and torch.isfinite(o).all() for o in out)
    for o, name in zip(out, ["decoder_logit", "encoder_logit", "fpn_logit"]):  # main first
        assert o is calls[name][-1][1]


def test_eval_returns_the_decoder_mask(small):
    calls, handles = _hooked(small, ["decoder_logit", "encoder.mask_features"])
    try:
        with torch.no_grad():
            out = small.eval()(torch.randn(1, 1, 64, 96))
    finally:
        for h in handles:
            h.remove()
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1, 64, 96)
    assert out is calls["decoder_logit"][-1][1]
    assert not calls["encoder.mask_features"], "the encoder mask is deep supervision only: not computed in eval"


def test_backward_reaches_every_parameter():
    torch.manual_seed(1)
    model = create_model("simir_small").train()
    out = model(torch.randn(2, 1, 64, 64))
    sum(o.mean() for o in out).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_each_mask_alone_reaches_its_own_heads():
    torch.manual_seed(2)
    model = create_model("simir_small").train()
    encoder = model(torch.randn(2, 1, 32, 32))[1]
    encoder.mean().backward()
    assert model.encoder.mask_embed.layers[0].weight.grad is not None
    assert model.neck.mask_embed.layers[0].weight.grad is None and model.decoder.query_feat.weight.grad is None


@pytest.mark.parametrize("in_chans", [1, 3])
def test_in_chans(in_chans):
    model = create_model("simir_small", in_chans=in_chans).eval()
    assert model.in_chans == in_chans and model.encoder.stem.conv1.c.in_channels == in_chans
    with torch.no_grad():
        assert model(torch.randn(1, in_chans, 32, 40)).shape == (1, 1, 32, 40)
        with pytest.raises(ModelError, match=f"built for {in_chans} input channels"):
            model(torch.randn(1, 4 - in_chans, 32, 40))


def test_input_multiple_is_eight_and_other_sizes_are_refused(small):
    assert small.input_multiple == 8
    with torch.no_grad():
        assert small.eval()(torch.randn(1, 1, 40, 24)).shape == (1, 1, 40, 24)  # not a multiple of 32, nor 256
        with pytest.raises(ModelError, match="not a multiple of 8"):
            small(torch.randn(1, 1, 60, 64))


def test_stages_at_strides_1_2_4_8_and_taps_after_the_pre_blocks(small):
    """The released taps (``res2..res5``) sit after the block that timm files under the next stage's
    ``downsample.pre_block``; the queries act after each downsampling."""
    pre = [f"encoder.stages.{i}.downsample.pre_block" for i in (1, 2, 3)]
    calls, handles = _hooked(small, pre + [f"encoder.taps.{i}" for i in range(4)] + ["encoder.stages.3.blocks"])
    try:
        with torch.no_grad():
            taps, tokens, dense_full = small.eval().encoder(torch.randn(1, 1, 64, 96))
    finally:
        for h in handles:
            h.remove()
    assert [tuple(t.shape) for t in taps] == [(1, 64, 64 // s, 96 // s) for s in (1, 2, 4, 8)]
    assert tokens.shape == (1, 4, 64) and dense_full.shape == (1, 8, 64, 96)
    for i, name in enumerate(pre):
        assert calls[f"encoder.taps.{i}"][0][0][0] is calls[name][0][1]
    assert calls["encoder.taps.3"][0][0][0] is calls["encoder.stages.3.blocks"][0][1]


def test_one_shared_sparse_exchange_at_four_levels_and_one_per_neck_level(small):
    names = ["encoder.exchange"] + [f"neck.exchange.{k}" for k in range(4)]
    calls, handles = _hooked(small, names)
    try:
        with torch.no_grad():
            small.eval()(torch.randn(1, 1, 64, 64))
    finally:
        for h in handles:
            h.remove()
    enc = calls["encoder.exchange"]
    assert len(enc) == 4
    assert [tuple(i[2].shape[-2:]) for i, _ in enc] == [(64, 64), (32, 32), (16, 16), (8, 8)]
    assert all(i[0].shape[1] == 4 for i, _ in enc)  # the 4 encoder tokens
    neck = [calls[f"neck.exchange.{k}"] for k in range(4)]
    assert all(len(c) == 1 for c in neck)
    assert [tuple(c[0][0][2].shape[-2:]) for c in neck] == [(8, 8), (16, 16), (32, 32), (64, 64)]  # top-down
    assert all(c[0][0][0].shape[1] == 8 for c in neck)  # 4 FPN + 4 encoder tokens


def test_deformable_layers_fuse_full_resolution_with_the_current_stage(small):
    names = [f"encoder.deform.{i}" for i in range(3)] + ["encoder.mask_features"]
    calls, handles = _hooked(small, names)
    try:
        small.train()(torch.randn(2, 1, 64, 96))
    finally:
        for h in handles:
            h.remove()
    for i, s in enumerate((2, 4, 8)):
        (maps, pos), out = calls[f"encoder.deform.{i}"][0]
        assert [tuple(m.shape) for m in maps] == [(2, 8, 64, 96), (2, 8, 64 // s, 96 // s)]
        assert [tuple(p.shape) for p in pos] == [(2, 8, 64, 96), (2, 8, 64 // s, 96 // s)]
        assert [tuple(o.shape) for o in out] == [(2, 8, 64, 96), (2, 8, 64 // s, 96 // s)]
    first_full = calls["encoder.deform.0"][0][1][0]
    # as released: layers 2 and 3 both read layer 1's full-resolution output; layer 3's feeds the encoder mask
    assert calls["encoder.deform.1"][0][0][0][0] is first_full
    assert calls["encoder.deform.2"][0][0][0][0] is first_full
    assert calls["encoder.mask_features"][0][0][0] is calls["encoder.deform.2"][0][1][0]


def test_logit_heads_start_as_the_identity(small):
    for name in small.logit_layers:
        conv = small.get_submodule(name)
        assert conv.weight.item() == 1.0 and conv.bias.item() == 0.0


def test_registry_entries():
    for name in ("simir", "simir_small"):
        entry = model_entry(name)
        assert entry.published_params is None and "O937-blip/SimIR" in entry.reference


def test_parameter_counts_are_pinned(small):
    # measured on this implementation (timm 1.0 RepViT-M1.1, stride-1 stem); no published count exists
    assert count_params(create_model("simir")) == 24_892_654  # in_chans=1, the released configuration
    assert count_params(small) == 2_887_078  # half-width RepViT, 64-d neck


def test_published_configuration_shapes_and_one_training_step():
    torch.manual_seed(0)
    model = create_model("simir").train()
    x, target = torch.randn(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    target[..., 30:33, 40:42] = 1
    out = model(x)
    assert len(out) == 3 and all(o.shape == (1, 1, 64, 64) for o in out)
    loss = simir_point_criterion(out, target)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    before = model.decoder.query_feat.weight.detach().clone()
    torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1).step()
    assert not torch.equal(before, model.decoder.query_feat.weight)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(x)).all()


def test_supervised_method_with_the_point_loss_averages_the_released_sum(small):
    from irfoundry.engine.config import MethodConfig
    from irfoundry.methods.supervised import Supervised

    method = Supervised(small, MethodConfig(name="supervised", loss="simir_point"))
    small.train()
    x, target = torch.randn(2, 1, 32, 32), (torch.rand(2, 1, 32, 32) > 0.95).float()
    torch.manual_seed(3)
    loss, _ = method.training_loss({"image": x, "target": target})
    torch.manual_seed(3)
    released = simir_point_criterion(small(x), target)
    assert loss.item() == pytest.approx(released.item() / 3, rel=1e-5)


def test_missing_timm_is_a_model_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ModelError, match=r"pip install irfoundry\[foundation\]"):
        create_model("simir_small")


def test_module_imports_without_timm():
    code = "import sys; sys.modules['timm'] = None; import irfoundry.models, irfoundry.models.simir"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_decoder_position_encoding_is_sams_at_every_grid(small):
    from irfoundry.models.simir import _grid_pe

    pe = small.decoder.pe_layer
    for h, w in ((8, 8), (24, 40)):
        assert torch.allclose(_grid_pe(pe, torch.zeros(1, 1, h, w)), pe((h, w)).unsqueeze(0), atol=1e-6)
