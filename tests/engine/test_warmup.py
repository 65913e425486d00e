"""Warm-up of hosts that declare one (MSHNet): which output feeds the loss before and after
``warm_epochs``, the ``method.options.warm_epochs`` override, and the epoch reaching the method through
the engine (also after ``--resume``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import tiny_config

from irfoundry.engine import from_dict, train
from irfoundry.engine.config import MethodConfig
from irfoundry.errors import ConfigError
from irfoundry.methods import build_method, register_method
from irfoundry.methods.supervised import Supervised
from irfoundry.models import create_model
from irfoundry.models.mshnet import MSHNet

HEADS = ("output_0", "output_1", "output_2", "output_3", "final")


def _tiny_mshnet(**kw) -> MSHNet:
    torch.manual_seed(0)
    return create_model("mshnet", channels=(16, 16, 16, 16, 16), num_blocks=(1, 1, 1, 1), **kw).train()


def _at(epoch: int) -> SimpleNamespace:
    """The part of the engine's step context the warm-up reads."""
    return SimpleNamespace(epoch=epoch)


def _batch() -> dict:
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 10:13, 20:23] = 1.0
    return {"image": torch.randn(2, 1, 32, 32, generator=g), "target": mask}


def _heads_with_grad(method) -> set[str]:
    method.zero_grad(set_to_none=True)
    loss, _ = method.training_loss(_batch())
    loss.backward()
    host = method.host
    return {h for h in HEADS if getattr(host, h).weight.grad is not None and getattr(host, h).weight.grad.abs().sum() > 0}


def test_mshnet_warm_up_trains_output_0_alone_then_every_output():
    method = build_method(MethodConfig(loss="softiou"), _tiny_mshnet())
    assert method.warm_epochs == 5 and method.warmup_output == MSHNet.WARMUP_OUTPUT
    for epoch in (0, 5):  # 0-based, inclusive: the reference's first 6 epochs
        method.on_train_epoch_start(_at(epoch))
        assert method.in_warmup
        assert _heads_with_grad(method) == {"output_0"}
    method.on_train_epoch_start(_at(6))
    assert not method.in_warmup
    assert _heads_with_grad(method) == set(HEADS)


def test_warm_up_loss_is_the_loss_of_the_warm_up_output_alone():
    calls = []

    def spy(logits, target):
        calls.append(logits)
        return logits.mean() * 0 + len(calls)

    method = build_method(MethodConfig(loss="softiou"), _tiny_mshnet())
    method.loss_fn = spy
    batch = _batch()
    method.on_train_epoch_start(_at(0))
    method.training_loss(batch)
    assert len(calls) == 1
    with torch.no_grad():
        expected = method.host(batch["image"])[MSHNet.WARMUP_OUTPUT]
    torch.testing.assert_close(calls[0], expected)
    calls.clear()
    method.on_train_epoch_start(_at(6))
    method.training_loss(batch)
    assert len(calls) == 5  # fused + 4 side outputs (deep supervision)


def test_warm_epochs_option_overrides_the_host_hint():
    off = build_method(MethodConfig(options={"warm_epochs": -1}), _tiny_mshnet())
    off.on_train_epoch_start(_at(0))
    assert not off.in_warmup and _heads_with_grad(off) == set(HEADS)
    one = build_method(MethodConfig(options={"warm_epochs": 0}), _tiny_mshnet())
    one.on_train_epoch_start(_at(0))
    assert one.in_warmup
    one.on_train_epoch_start(_at(1))
    assert not one.in_warmup
    # the host's own hint (model.kwargs.warm_epochs) is the default
    assert build_method(MethodConfig(), _tiny_mshnet(warm_epochs=2)).warm_epochs == 2


def test_warm_up_options_are_checked():
    with pytest.raises(ConfigError, match=r"declares no WARMUP_OUTPUT"):
        build_method(MethodConfig(options={"warm_epochs": 3}), create_model("unet_tiny"))
    with pytest.raises(ConfigError, match=r"method.options.warm_epochs must be an integer, got 'five'"):
        build_method(MethodConfig(options={"warm_epochs": "five"}), _tiny_mshnet())
    with pytest.raises(ConfigError, match=r"method.options.warm_epochs must be an integer >= -1"):
        MethodConfig(options={"warm_epochs": -2})
    with pytest.raises(ConfigError, match=r"unknown config key method.options.warm_epoch\. Did you mean method.options.warm_epochs"):
        build_method(MethodConfig(options={"warm_epoch": 3}), _tiny_mshnet())
    # hosts without a warm-up train every output from epoch 0 and accept warm_epochs: -1
    plain = build_method(MethodConfig(options={"warm_epochs": -1}), create_model("unet_tiny"))
    assert not plain.in_warmup


@register_method("epoch_spy_test")
class EpochSpy(Supervised):
    """Supervised, recording the epochs the engine announces (class-level: one list per test run)."""

    seen: list[int] = []

    def on_train_epoch_start(self, ctx) -> None:
        super().on_train_epoch_start(ctx)
        EpochSpy.seen.append(ctx.epoch)


def test_engine_announces_the_trainer_epoch_also_after_resume(tiny_synth, tmp_path):
    EpochSpy.seen = []
    cfg = tiny_config(tiny_synth, tmp_path, "spy", max_epochs=2)
    cfg["method"]["name"] = "epoch_spy_test"
    part = train(from_dict(cfg))
    assert EpochSpy.seen == [0, 1]
    cfg_file = Path(part["run_dir"]) / "config.yaml"  # interrupted after 2 of 3 epochs
    saved = yaml.safe_load(cfg_file.read_text())
    saved["trainer"]["max_epochs"] = 3
    cfg_file.write_text(yaml.safe_dump(saved))
    EpochSpy.seen = []
    train(None, resume=part["run_dir"])
    assert EpochSpy.seen == [2]
