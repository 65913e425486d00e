"""UIU-Net host: outputs, deep supervision, size, reference-checkpoint import and reference equivalence.

UIU-Net is large (50.5 M parameters), so every forward here runs on a small input (32 x 32 to 96 x 160);
the one 256 x 256 pass is the MAC count.

Golden data (``tests/models/golden/``), generated once by running the reference model file
(XinyiYing/BasicIRSTD ``model/UIUNet``, commit d3c7cae) from outside the repository:

* ``uiunet_reference_state.json``: every reference state-dict key with its shape;
* ``uiunet_reference_outputs.json``: the reference's seven pre-sigmoid outputs (sums and an 8-pixel grid)
  in float64 for the weights :func:`_deterministic_state` builds over that key list.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import irfoundry.models.uiunet  # noqa: F401  (registers "uiunet")
from irfoundry.errors import CheckpointError, ModelError
from irfoundry.models import create_model, model_entry
from irfoundry.models.base import count_params
from irfoundry.models.checkpoint import import_reference_checkpoint
from irfoundry.models.complexity import count_macs
from irfoundry.models.uiunet import RSU, InteractiveCrossAttention, UIUNet, uiunet

GOLDEN = Path(__file__).resolve().parent / "golden"
REF_PARAMS = 50_540_309  # reference UIUNET(in_ch=1) trainable parameters


def _golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def _deterministic_state(shapes: dict[str, list[int]], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Reproducible stand-in weights for every reference key (same rule the golden outputs used):
    He-scaled conv kernels, BN affine near (1, 0), running mean ~ 0.1 N(0,1), running var in [0.5, 1.5)."""
    state = {}
    for i, (key, shape) in enumerate(shapes.items()):
        g = torch.Generator().manual_seed(1000 + i)
        if key.endswith("num_batches_tracked"):
            t = torch.zeros((), dtype=torch.long)
        elif key.endswith("running_var"):
            t = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
        elif key.endswith("running_mean"):
            t = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=g, dtype=torch.float64) * math.sqrt(2.0 / fan_in)
        elif key.endswith("weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            t = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        state[key] = t if t.dtype == torch.long else t.to(dtype)
    return state


def _reference_input(ref: dict) -> torch.Tensor:
    """The float64 input the golden reference outputs were computed on."""
    gen = torch.Generator().manual_seed(ref["input_seed"])
    return torch.randn(ref["input_shape"], generator=gen, dtype=torch.float64)


def _all_outputs_with_running_stats(model: UIUNet, x: torch.Tensor) -> list[torch.Tensor]:
    """``[d0, ..., d6]`` with BatchNorm on running statistics (training-mode outputs, eval-mode BN)."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        return model(x)


def _check_against_reference(outs: list[torch.Tensor], ref: dict, rtol: float) -> None:
    assert len(outs) == 7
    for i, out in enumerate(outs):
        scale = out.abs().mean().item()
        assert out.sum().item() == pytest.approx(ref["sum"][i], rel=rtol, abs=rtol * scale * out.numel())
        assert out.abs().sum().item() == pytest.approx(ref["abs_sum"][i], rel=rtol)
        grid = torch.tensor(ref["grid"][i], dtype=out.dtype)
        torch.testing.assert_close(out[:, 0, ::8, ::8], grid, rtol=rtol, atol=rtol * scale)


@pytest.fixture(scope="module")
def net() -> UIUNet:
    torch.manual_seed(0)
    return create_model("uiunet")


# --- interface -----------------------------------------------------------------------------------


def test_registry_entry():
    entry = model_entry("uiunet")
    assert entry.published_params and abs(REF_PARAMS - entry.published_params) / entry.published_params <= 0.03
    assert entry.published_macs == pytest.approx(54.4e9)
    assert "UIU-Net" in entry.paper and "IEEE_TIP_UIU-Net" in entry.reference
    with pytest.raises(TypeError):
        uiunet(1)  # keyword-only builder


def test_no_mode_flag():
    with pytest.raises(ModelError, match="bad arguments for model 'uiunet'"):
        create_model("uiunet", mode="train")


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (96, 160)])
def test_eval_returns_main_logits(net, size):
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, *size))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1, *size)
    assert torch.isfinite(out).all()


def test_training_returns_fused_output_first_then_six_sides(net):
    net.train()
    x = torch.randn(2, 1, 32, 64)
    outs = net(x)
    assert isinstance(outs, list) and len(outs) == 7
    assert all(o.shape == (2, 1, 32, 64) for o in outs)
    # d0 is the 1x1 fusion of the six side maps: the main output comes first
    with torch.no_grad():
        fused = net.outconv(torch.cat(outs[1:], dim=1))
    torch.testing.assert_close(outs[0], fused)
    # logits, not probabilities
    assert any((o < 0).any() or (o > 1).any() for o in outs)
    net.eval()


def test_training_with_batch_of_one_is_refused_clearly(net):
    net.train()
    try:
        with pytest.raises(ModelError, match="batch size of at least 2"):
            net(torch.randn(1, 1, 32, 32))
    finally:
        net.eval()


def test_declares_six_stages():
    """U2-Net's six RSU stages (their shapes, and decode reading each: test_all_models.py)."""
    net = create_model("uiunet")
    assert net.stage_channels == (64, 128, 256, 512, 512, 512)
    assert net.stage_strides == (1, 2, 4, 8, 16, 32)


def test_rsu_blocks_keep_resolution_and_residual():
    torch.manual_seed(0)
    for height, dilated in [(7, False), (6, False), (5, False), (4, False), (4, True)]:
        block = RSU(height, 3, 4, 8, dilated=dilated).eval()
        with torch.no_grad():
            assert block(torch.randn(1, 3, 32, 40)).shape == (1, 8, 32, 40)
    rsu4f = RSU(4, 3, 4, 8, dilated=True)
    dilations = [getattr(rsu4f, n).conv_s1.dilation for n in ("rebnconv1", "rebnconv4", "rebnconv3d")]
    assert dilations == [(1, 1), (8, 8), (4, 4)]
    assert RSU(7, 1, 4, 8).rebnconv7.conv_s1.dilation == (2, 2)
    with pytest.raises(ModelError, match="RSU height"):
        RSU(2, 1, 4, 8)


def test_interactive_cross_attention_shares_post_conv():
    torch.manual_seed(0)
    ica = InteractiveCrossAttention(16, 8).eval()
    with torch.no_grad():
        a, b = ica(torch.randn(2, 16, 8, 8), torch.randn(2, 8, 8, 8))
    assert a.shape == b.shape == (2, 8, 8, 8)
    assert ica.topdown[1].out_channels == 2  # bottleneck ch / 4
    assert sum(p.numel() for p in ica.post.parameters()) == 8 * 8 * 9 + 8 + 2 * 8  # one post module


# --- size ----------------------------------------------------------------------------------------


def test_param_count_matches_reference(net):
    assert count_params(net) == REF_PARAMS == _golden("uiunet_reference_state.json")["num_params"]


def test_macs_match_published():
    torch.manual_seed(0)
    macs = count_macs(uiunet(), (1, 1, 256, 256))  # ~54 G MACs: the one full-size pass of this file
    assert abs(macs - 54.4e9) / 54.4e9 <= 0.03, f"{macs / 1e9:.2f} G MACs vs published 54.4 G"


# --- reference checkpoints -----------------------------------------------------------------------


def test_state_dict_keys_and_shapes_are_the_references(net):
    golden = _golden("uiunet_reference_state.json")["state_dict"]
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    extra, missing = sorted(set(ours) - set(golden)), sorted(set(golden) - set(ours))
    assert not extra and not missing, f"extra keys {extra[:5]}, missing keys {missing[:5]}"
    assert ours == golden


def test_basicirstd_checkpoint_imports_strictly_and_matches_reference(tmp_path):
    """A BasicIRSTD checkpoint (``{"state_dict": {"model." + key: ...}}``) loads strictly with no key filter,
    gives the same model as loading the tensors directly, and reproduces the reference outputs."""
    shapes = _golden("uiunet_reference_state.json")["state_dict"]
    state = _deterministic_state(shapes, torch.float32)
    path = tmp_path / "UIUNet_400.pth.tar"
    torch.save({"epoch": 400, "state_dict": {"model." + k: v for k, v in state.items()}}, path)
    imported = import_reference_checkpoint(path, "uiunet")
    path.unlink()

    direct = uiunet()
    direct.load_state_dict(state, strict=True)
    del state
    ref = _golden("uiunet_reference_outputs.json")
    x = _reference_input(ref).float()
    a, b = _all_outputs_with_running_stats(imported, x), _all_outputs_with_running_stats(direct, x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    _check_against_reference(a, ref, rtol=2e-3)  # float32 vs the float64 reference
    imported.eval()
    with torch.no_grad():
        assert torch.equal(imported(x), a[0])


def test_authors_three_channel_checkpoint_imports(tmp_path):
    """The authors' repository saves a bare state dict of ``UIUNET(3, 1)`` (RGB input): import it with
    ``in_chans=3``. Only the first convolution's shape differs from the 1-channel reference keys."""
    shapes = dict(_golden("uiunet_reference_state.json")["state_dict"])
    shapes["stage1.rebnconvin.conv_s1.weight"] = [64, 3, 3, 3]
    state = _deterministic_state(shapes, torch.float32)
    path = tmp_path / "uiunet.pth"
    torch.save(state, path)
    imported = import_reference_checkpoint(path, "uiunet", in_chans=3)
    path.unlink()
    assert imported.stage1.rebnconvin.conv_s1.weight.shape == (64, 3, 3, 3)
    assert all(torch.equal(v, state[k]) for k, v in imported.state_dict().items())


def test_outputs_equal_reference_in_float64():
    """All seven outputs match the reference code's (pre-sigmoid) outputs to float64 precision."""
    shapes = _golden("uiunet_reference_state.json")["state_dict"]
    model = uiunet().double()
    model.load_state_dict(_deterministic_state(shapes, torch.float64), strict=True)
    ref = _golden("uiunet_reference_outputs.json")
    x = _reference_input(ref)
    _check_against_reference(_all_outputs_with_running_stats(model, x), ref, rtol=1e-9)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    other = create_model("unet_tiny")
    path = tmp_path / "unet.pth.tar"
    torch.save({"state_dict": {"model." + k: v for k, v in other.state_dict().items()}}, path)
    expected = r"does not fit model 'uiunet'.*missing keys: stage1\.rebnconvin.*unexpected keys: enc\."
    with pytest.raises(CheckpointError, match=expected):
        import_reference_checkpoint(path, "uiunet")
    # a UIU-Net built for 3-channel input does not fit the default 1-channel model
    torch.save({"state_dict": uiunet(in_chans=3).state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"shape mismatches: stage1\.rebnconvin\.conv_s1\.weight"):
        import_reference_checkpoint(path, "uiunet")
