"""GGL-Net host: shapes, deep-supervision order, the gradient branch, size, and strict import of reference
checkpoints.

Golden files (generated outside the repository by ``/work/notes/golden/gen_gglnet.py``, which runs the authors'
reference code; that code is not part of irfoundry):

* ``golden/gglnet_reference_state.json``: every state-dict key, shape and dtype of PAL's ``GGL_No_Sigmoid()``
  (``model/GGL/GGL_no_sigmoid.py``, 3-channel input, the same tree as MSDA-Net's ``model/GGL_Net/model_GGL.py``),
  its FlopCounterMode MACs, and under ``deep_supervision`` those of Refined-IRSTD's
  ``GGLNet(deep_supervision=True)`` (``model/GGLNet/model_GGLNet.py``, 1-channel input, four heads).
* ``golden/gglnet_reference_outputs.json``: the references' logits for the weights of
  ``test_dnanet.deterministic_state`` and a seeded input, float64, in eval and training mode.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import irfoundry.models.gglnet  # noqa: F401  (registers "gglnet")
from irfoundry.errors import CheckpointError, ModelError
from irfoundry.models import create_model, init_output_probability, model_entry
from irfoundry.models.base import count_params
from irfoundry.models.checkpoint import import_reference_checkpoint
from irfoundry.models.complexity import count_macs
from irfoundry.models.gglnet import gradient_magnitude

# shared golden helpers live next to the DNANet tests
_spec = importlib.util.spec_from_file_location("_dnanet_tests", Path(__file__).with_name("test_dnanet.py"))
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
load_golden, deterministic_state = _helpers.load_golden, _helpers.deterministic_state
fake_reference_state, assert_matches = _helpers.fake_reference_state, _helpers.assert_matches

NAME = "gglnet"
CHANNELS = (16, 32, 64, 128, 256)
STRIDES = (1, 2, 4, 8, 16)
DS_HEADS = ("layer_1", "layer_2", "layer_3", "layer_4")  # our training-mode order: main first


def _spec_of(model: torch.nn.Module) -> dict:
    return {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in model.state_dict().items()
    }


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_golden(f"{NAME}_reference_state.json")


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, in_chans=1).eval()


# --- output contract ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(64, 64), (48, 80), (96, 160)])
def test_eval_output_is_logit_map_of_input_size(net, size):
    with torch.no_grad():
        out = net(torch.randn(1, 1, *size))
    assert isinstance(out, torch.Tensor), "eval mode returns the main output only"
    assert out.shape == (1, 1, *size)
    assert torch.isfinite(out).all()


def test_input_multiple_is_16(net):
    assert net.input_multiple == 16
    with pytest.raises(ModelError, match="multiple of 16"):
        net(torch.randn(1, 1, 40, 64))


def test_single_head_returns_a_tensor_in_training_too():
    torch.manual_seed(0)
    model = create_model(NAME).train()
    out = model(torch.randn(2, 1, 64, 96))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 64, 96)
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert model.unused_modules == ()


def test_deep_supervision_returns_four_full_resolution_outputs_main_first():
    torch.manual_seed(0)
    model = create_model(NAME, deep_supervision=True).train()
    values = dict(zip(DS_HEADS, (7.0, -1.0, -2.0, -3.0)))
    with torch.no_grad():  # constant heads reveal which output is which
        for name in model.logit_layers:
            conv = model.get_submodule(name)
            conv.weight.zero_()
            conv.bias.fill_(values[name.split(".")[0]])
    out = model(torch.randn(2, 1, 64, 96))
    assert isinstance(out, list) and len(out) == 4
    for o, value in zip(out, values.values()):
        assert o.shape == (2, 1, 64, 96)
        assert torch.all(o == value), "order must be [layer_1 (main), layer_2, layer_3, layer_4]"
    model.eval()
    with torch.no_grad():
        ev = model(torch.randn(1, 1, 32, 48))
    assert isinstance(ev, torch.Tensor) and torch.all(ev == 7.0), "eval mode returns layer_1 only"


def test_deep_supervision_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = create_model(NAME, deep_supervision=True).train()
    sum(o.mean() for o in model(torch.randn(2, 1, 32, 48))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def test_logit_layers_are_one_channel_convs_and_take_the_prior():
    for ds, names in ((False, ("layer.2",)), (True, ("layer_1.2", "layer_2.3", "layer_3.5", "layer_4.7"))):
        model = create_model(NAME, deep_supervision=ds)
        assert model.logit_layers == names
        init_output_probability(model, 0.01)
        for name in names:
            conv = model.get_submodule(name)
            assert isinstance(conv, torch.nn.Conv2d) and conv.out_channels == 1
            assert conv.bias.item() == pytest.approx(-4.59512, abs=1e-4)


def test_forward_takes_no_mode_flag(net):
    with pytest.raises(TypeError):
        net(torch.randn(1, 1, 32, 32), "train")


# --- gradient branch ------------------------------------------------------------------------------------
def test_gradient_magnitude_is_central_differences_with_zero_padding():
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    p = torch.zeros(2, 3, 11, 13, dtype=torch.float64)
    p[:, :, 1:-1, 1:-1] = x
    expected = torch.empty_like(x)
    for i in range(9):
        for j in range(11):
            gx = (p[:, :, i + 1, j + 2] - p[:, :, i + 1, j]) / 2
            gy = (p[:, :, i, j + 1] - p[:, :, i + 2, j + 1]) / 2
            expected[:, :, i, j] = (gx**2 + gy**2).sqrt()
    torch.testing.assert_close(gradient_magnitude(x), expected, rtol=0, atol=1e-15)
    assert torch.equal(gradient_magnitude(torch.ones(1, 1, 4, 4))[0, 0, 1:3, 1:3], torch.zeros(2, 2))


def test_encoder_sees_the_gradient_image(net):
    """Stage 1's features are ``Res1(main, gradient_magnitude(x))``; the gradient image changes them."""
    x = torch.randn(1, 1, 32, 32)
    s = net.stage
    with torch.no_grad():
        f1 = net.encode(x)[0]
        main = s.resnet1_3(s.resnet1_2(s.resnet1_1(s.layer1(x))))
        g = gradient_magnitude(x)
        assert torch.allclose(s.Res1(main, g), f1)
        assert not torch.allclose(s.Res1(main, torch.zeros_like(g)), f1)


# --- encoder-decoder capability -------------------------------------------------------------------------
def test_declares_the_published_stages(net):
    """The stages' channels and strides (their shapes, and decode reading each: test_all_models.py)."""
    assert (net.stage_channels, net.stage_strides) == (CHANNELS, STRIDES)


# --- size -----------------------------------------------------------------------------------------------
def test_param_count_matches_the_reference(net, golden):
    assert count_params(create_model(NAME, in_chans=3)) == golden["num_params"] == 8_988_093  # PAL GGL_No_Sigmoid()
    assert count_params(net) == 8_978_877
    ds = golden["deep_supervision"]
    assert count_params(create_model(NAME, deep_supervision=True)) == ds["num_params"] == 8_992_928
    entry = model_entry(NAME)
    assert entry.published_params is None and entry.published_macs is None, "the paper publishes neither"


def test_macs_equal_the_reference_under_the_same_counter(golden):
    # FlopCounterMode on PAL's reference GGL_No_Sigmoid() at 1x3x256x256 (no published figure to compare with)
    assert count_macs(create_model(NAME, in_chans=3), (1, 3, 256, 256)) == golden["flop_counter_macs_1x3x256x256"]


# --- faithfulness ---------------------------------------------------------------------------------------
def test_keys_and_shapes_equal_the_reference(golden):
    ours = _spec_of(create_model(NAME, in_chans=3))
    assert list(ours) == list(golden["state"]), "state-dict keys (and their order) differ from PAL's reference"
    assert ours == golden["state"]
    ds = _spec_of(create_model(NAME, deep_supervision=True))
    assert list(ds) == list(golden["deep_supervision"]["state"]), "keys differ from Refined-IRSTD's GGLNet"
    assert ds == golden["deep_supervision"]["state"]
    # in_chans=1 differs from PAL only in the six convolutions that read the input or its gradient image
    one = _spec_of(create_model(NAME))
    diff = [k for k in one if one[k] != golden["state"][k]]
    assert diff == ["stage.layer1.0.weight", *(f"stage.Res{k}.layer1.0.weight" for k in range(1, 6))]


def test_outputs_equal_the_reference_implementation(golden):
    ref = load_golden(f"{NAME}_reference_outputs.json")
    model = create_model(NAME, in_chans=3).double()
    model.load_state_dict(deterministic_state(golden["state"]), strict=True)
    x = torch.randn(ref["input_shape"], generator=torch.Generator().manual_seed(ref["input_seed"]), dtype=torch.float64)
    with torch.no_grad():
        assert_matches(model.eval()(x), ref["eval"], "eval output")
        for f, r in zip(model.encode(x), ref["features_eval"]):
            assert list(f.shape) == r["shape"]
            assert f.abs().sum().item() == pytest.approx(r["abs_sum"], rel=1e-7)
            assert f.sum().item() == pytest.approx(r["sum"], rel=1e-7, abs=1e-7 * r["abs_sum"])
        assert_matches(model.train()(x), ref["train"], "training-mode output (batch statistics)")


def test_deep_supervision_outputs_equal_the_reference_implementation(golden):
    ref = load_golden(f"{NAME}_reference_outputs.json")
    ds = ref["deep_supervision"]
    model = create_model(NAME, deep_supervision=True).double()
    model.load_state_dict(deterministic_state(golden["deep_supervision"]["state"]), strict=True)
    x = torch.randn(ds["input_shape"], generator=torch.Generator().manual_seed(ref["input_seed"]), dtype=torch.float64)
    with torch.no_grad():
        assert_matches(model.eval()(x), ds["eval"], "eval output (layer_1)")
        out = model.train()(x)
    for o, head in zip(out, DS_HEADS):
        assert_matches(o, ds["train"][head], f"training-mode output {head}")


# --- reference checkpoints ------------------------------------------------------------------------------
def _adamw_state(model: torch.nn.Module) -> dict:
    """What PAL saves under 'optimizer': an AdamW state after one step (tensors, ints, floats, tuples)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, model.in_chans, 32, 32)).mean().backward()
    opt.step()
    return opt.state_dict()


def test_pal_checkpoint_imports_strictly(tmp_path, golden):
    """PAL / MSDA-Net train: {'epoch', 'state_dict' (bare keys), 'optimizer', 'best_mIoU', ...}, 3-channel."""
    state = fake_reference_state(golden, seed=5)
    expected = create_model(NAME, in_chans=3)
    expected.load_state_dict(state, strict=True)
    path = tmp_path / "best_mIoU_checkpoint_GGL__SIRST3__coarse.pth.tar"
    torch.save({"epoch": 400, "state_dict": state, "optimizer": _adamw_state(create_model(NAME, in_chans=3)),
                "best_mIoU": 0.71, "best_nIoU": 0.69, "best_PD": 0.95, "bestmIoUandPD": 0.0}, path)
    imported = import_reference_checkpoint(path, NAME, in_chans=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(imported(x), expected.eval()(x))


@pytest.mark.parametrize("prefix", ["model.", "module.model."], ids=["lesps_net", "lesps_net_dataparallel"])
def test_refined_irstd_checkpoint_imports_strictly(tmp_path, golden, prefix):
    """Refined-IRSTD (LESPS) train_GGLNet.py: {'epoch', 'state_dict': Net.state_dict() ('model.'), ...}."""
    state = fake_reference_state(golden["deep_supervision"], seed=3)
    path = tmp_path / "GGLNet_LESPS_coarse_300.pth.tar"
    torch.save({"epoch": 300, "state_dict": {prefix + k: v for k, v in state.items()}, "total_loss": [0.4, 0.2],
                "train_iou_list": [], "test_iou_list": []}, path)
    imported = import_reference_checkpoint(path, NAME, deep_supervision=True).eval()
    expected = create_model(NAME, deep_supervision=True)
    expected.load_state_dict(state, strict=True)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(imported(x), expected.eval()(x))


def test_checkpoint_of_another_architecture_is_refused(tmp_path, golden):
    import irfoundry.models.mshnet  # noqa: F401

    path = tmp_path / "other.pth.tar"
    torch.save({"state_dict": create_model("mshnet").state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"does not fit model 'gglnet'.*missing keys: stage\.layer1\.0\.weight"):
        import_reference_checkpoint(path, NAME)
    # PAL's 3-channel checkpoint into the default 1-channel model
    torch.save({"state_dict": fake_reference_state(golden)}, path)
    with pytest.raises(CheckpointError, match=r"shape mismatches: stage\.layer1\.0\.weight"):
        import_reference_checkpoint(path, NAME)
    assert import_reference_checkpoint(path, NAME, in_chans=3) is not None
    # a deep-supervision (Refined-IRSTD) checkpoint into the single-head model, and back
    torch.save({"state_dict": fake_reference_state(golden["deep_supervision"])}, path)
    with pytest.raises(CheckpointError, match=r"missing keys: layer\.0\.weight.*unexpected keys: layer_4\.0\.weight"):
        import_reference_checkpoint(path, NAME)


def test_bad_options_raise_model_error():
    with pytest.raises(ModelError, match="in_chans"):
        create_model(NAME, in_chans=0)
    with pytest.raises(ModelError, match="deep_supervision"):
        create_model(NAME, deep_supervision="yes")
    with pytest.raises(ModelError, match="bad arguments"):
        create_model(NAME, mode="train")  # the reference's mode flag is not an option: self.training decides
