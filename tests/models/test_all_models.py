"""Generic tests over every registered model (timm tests/test_models.py style), parametrised by capability:
the segmentation-model contract for every model, the encoder-decoder tests for those that declare stages."""

from __future__ import annotations

import math

import pytest
import torch

from irfoundry.errors import ModelError
from irfoundry.models import (
    HostNet,
    SegmentationModel,
    create_model,
    init_output_probability,
    is_encoder_decoder,
    list_models,
    model_entry,
)
from irfoundry.models.base import count_params

ALL = list_models()
ENCODER_DECODER, NO_LOGIT_LAYERS = [], set()
for _name in ALL:  # one build per model at collection
    _m = create_model(_name)
    if is_encoder_decoder(_m):
        ENCODER_DECODER.append(_name)
    if not _m.logit_layers:  # outputs that are not convolutions with a bias (SAM-style hypernetwork heads)
        NO_LOGIT_LAYERS.add(_name)
del _m
# large hosts get the smallest legal input to keep the suite fast on a 2-core CPU
SIZE = {"uiunet": (32, 64), "simir": (32, 64)}


@pytest.fixture(scope="module", params=ALL)
def model(request) -> HostNet:
    torch.manual_seed(0)
    return create_model(request.param)


@pytest.fixture(scope="module", params=ENCODER_DECODER)
def encdec(request) -> HostNet:
    torch.manual_seed(0)
    return create_model(request.param)


def _size(name: str) -> tuple[int, int]:
    return SIZE.get(name, (64, 96))


def test_segmentation_contract(model):
    """Every model: ``in_chans`` and ``input_multiple`` declared; logits at two sizes that are multiples of
    it; a size that is not is refused by name."""
    assert isinstance(model, SegmentationModel) and model.in_chans == 1
    m = model.input_multiple
    assert isinstance(m, int) and m >= 1
    h, w = _size(model.model_name)
    model.eval()
    with torch.no_grad():
        for size in ((h, w), (h + m, w)):
            assert model(torch.randn(1, 1, *size)).shape == (1, 1, *size)
        if m > 1:
            with pytest.raises(ModelError, match=f"multiple of {m}"):
                model(torch.randn(1, 1, h + m // 2, w))
    three = create_model(model.model_name, in_chans=3) if model.model_name != "uiunet" else None
    if three is not None:
        assert three.in_chans == 3


def test_registry_lists_expected_hosts():
    expected = {"acm", "alcnet", "dnanet", "mshnet", "uiunet", "alclnet", "mlclnet", "unet_tiny"}
    assert expected <= set(ALL), f"missing hosts: {expected - set(ALL)}"


def test_eval_forward_returns_logits_of_input_size(model):
    h, w = _size(model.model_name)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, h, w))
    assert isinstance(out, torch.Tensor), "eval mode must return the main output only"
    assert out.shape == (2, 1, h, w)
    assert torch.isfinite(out).all()


def test_train_forward_backward(model):
    h, w = _size(model.model_name)
    model.train()
    out = model(torch.randn(2, 1, h, w))
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    assert len(outs) >= 1
    for o in outs:
        assert o.shape == (2, 1, h, w), "every (deep-supervision) output is full resolution"
    loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(o, torch.zeros_like(o)) for o in outs)
    loss.backward()
    unused = tuple(model.unused_modules)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, g in grads.items() if g is None and not any(n == u or n.startswith(u + ".") for u in unused)]
    assert not missing, f"parameters without gradient (declare them in unused_modules): {missing[:5]}"
    grads = list(grads.values())
    assert any(g.abs().sum() > 0 for g in grads)
    model.zero_grad(set_to_none=True)


def test_declared_stage_features_match_encoder_outputs(encdec):
    model = encdec
    h, w = _size(model.model_name)
    model.eval()
    with torch.no_grad():
        feats = model.encode(torch.randn(1, 1, h, w))
    assert len(feats) == len(model.stage_channels) == len(model.stage_strides) > 0
    for i, (f, c, s) in enumerate(zip(feats, model.stage_channels, model.stage_strides)):
        assert f.shape == (1, c, h // s, w // s), f"stage {i}: got {tuple(f.shape)}, declared C={c}, stride={s}"
    info = model.feature_info
    assert [d["num_chs"] for d in info] == list(model.stage_channels)


def test_decode_reads_every_stage_and_mutates_nothing(encdec):
    """A fusion module (FDEP's SAMF, semprior's SCAM) changes the stage features between encode and decode:
    ``decode(encode(x))`` must be the forward pass, read every stage, leave its inputs as they were, and
    refuse a wrong number of stages by name."""
    model = encdec
    h, w = _size(model.model_name)
    model.eval()
    with torch.no_grad():
        x = torch.randn(1, 1, h, w)
        feats = model.encode(x)
        kept = [f.clone() for f in feats]
        base = model.decode(feats, (h, w))
        assert all(torch.equal(a, b) for a, b in zip(feats, kept)), "decode changed its input features"
        assert torch.equal(base, model(x))
        for i in range(len(feats)):
            changed = [f + 1.0 if j == i else f for j, f in enumerate(feats)]
            assert not torch.allclose(model.decode(changed, (h, w)), base), f"stage {i} is ignored by decode"
        with pytest.raises(ModelError, match=f"{len(feats)} stage features"):
            model.decode(feats[:-1], (h, w))


def test_params_match_published(model):
    entry = model_entry(model.model_name)
    if entry.published_params is None:
        pytest.skip(f"{entry.name} has no published parameter count")
    n = count_params(model)
    rel = abs(n - entry.published_params) / entry.published_params
    assert rel <= 0.03, f"{entry.name}: {n} params vs published {entry.published_params} ({rel:.1%} off)"


def test_any_size_divisible_by_32(model):
    if model.model_name in SIZE:
        pytest.skip("large host: covered at its small size")
    model.eval()
    with torch.no_grad():
        for h, w in [(32, 32), (96, 160)]:
            assert model(torch.randn(1, 1, h, w)).shape == (1, 1, h, w)


def test_in_chans_option():
    for name in ALL:
        m = create_model(name, in_chans=3).eval()
        h, w = _size(name)
        with torch.no_grad():
            assert m(torch.randn(1, 3, h, w)).shape == (1, 1, h, w)


def _start_logits(name: str, x: torch.Tensor, prior: float | None, weight_std: float | None = 0.01) -> list[torch.Tensor]:
    torch.manual_seed(0)
    host = create_model(name)
    if name in NO_LOGIT_LAYERS:  # nothing to initialise: refused by name, never silently ignored
        with pytest.raises(ModelError, match="names no logit_layers"):
            init_output_probability(host, 0.01)
        pytest.skip(f"{name} has no logit layers (refusal tested)")
    if prior is not None:
        init_output_probability(host, prior, weight_std)
    host.train()  # batch statistics, as at the first training step
    with torch.no_grad():
        out = host(x)
    return [o for o in ([out] if isinstance(out, torch.Tensor) else out)]


@pytest.mark.parametrize("name", ALL)
def test_output_prior_starts_every_output_at_the_prior(name):
    """``init_output_probability(p)`` (RetinaNet: prior bias, logit weights ~ N(0, 0.01)): every output, main and
    deep-supervision, starts with its median within a factor 2 of ``p`` and 90 % of its pixels within a
    factor 4: a 3x3 logit conv over hundreds of ReLU channels turns N(0, 0.01) weights into a logit offset
    and spread of ~0.5, as in RetinaNet's own head (UIU-Net's side4: 256 channels)."""
    for i, logits in enumerate(_start_logits(name, torch.randn(2, 1, *_size(name)), 0.01)):
        p = torch.sigmoid(logits).flatten()
        lo, mid, hi = torch.quantile(p, torch.tensor([0.05, 0.5, 0.95])).tolist()
        assert 0.01 / 2 < mid < 0.01 * 2, f"{name} output {i}: median probability {mid:.4f}"
        assert 0.01 / 4 < lo and hi < 0.01 * 4, f"{name} output {i}: 5-95 % probabilities {lo:.4f}..{hi:.4f}"


# ALCL-Net's reference Kaiming init on an un-normalised head already starts at a median logit of about -9
# (std 4), not at p ~ 0.5; GGL-Net's (Kaiming fan_out on its 1-channel output conv, std sqrt(2)) anywhere
# from about -8 to +3.5 by seed; MSDA-Net's reference init from about -3.5 to +10.5: the bias-only prior
# shifts them by the bias, but cannot bring them to the prior
STARTS_FAR_BELOW_HALF = {"alclnet", "gglnet", "msdanet"}


@pytest.mark.parametrize("name", ALL)
def test_bias_only_output_prior_keeps_the_weights_and_shifts_the_median(name):
    """``weight_std=None``: the host's logit weights stay, outputs start near ``p`` (median)."""
    x = torch.randn(2, 1, *_size(name))
    bias = math.log(0.01 / 0.99)
    before, after = _start_logits(name, x, None), _start_logits(name, x, 0.01, weight_std=None)
    for i, (b, a) in enumerate(zip(before, after)):
        if name in STARTS_FAR_BELOW_HALF:
            assert a.median() - b.median() == pytest.approx(bias, abs=0.5), f"{name} output {i}: not shifted"
        else:
            p = torch.sigmoid(a.median()).item()
            assert 0.002 < p < 0.05, f"{name} output {i}: median probability {p:.4f}, expected about 0.01"


def test_output_prior_redraws_logit_weights_and_keeps_fusion_weights():
    torch.manual_seed(0)
    host = create_model("mshnet")
    fusion_before = host.final.weight.clone()
    init_output_probability(host, 0.01)
    for name in host.logit_layers:
        w = host.get_submodule(name).weight
        assert w.abs().max() < 0.06 and 0.005 < w.std() < 0.02, name
    assert torch.equal(host.final.weight, fusion_before)
    b = math.log(0.01 / 0.99)
    assert host.final.bias.item() == pytest.approx(b * (1 - fusion_before.sum().item()), rel=1e-5)
    with pytest.raises(ModelError, match="weight_std"):
        init_output_probability(host, 0.01, -1.0)


def test_output_prior_follows_dnanet_without_deep_supervision():
    host = create_model("dnanet", deep_supervision=False)
    assert host.logit_layers == ("final",)
    init_output_probability(host, 0.2)
    assert torch.allclose(host.final.bias, torch.full_like(host.final.bias, math.log(0.2 / 0.8)))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_output_prior_refuses_a_non_probability(bad):
    with pytest.raises(ModelError, match="prob must be"):
        init_output_probability(create_model("unet_tiny"), bad)


def test_output_prior_refuses_a_host_without_logit_layers():
    class Bare(HostNet):
        pass

    with pytest.raises(ModelError, match="logit_layers"):
        init_output_probability(Bare(), 0.01)
