"""Frozen means frozen: no gradients, eval mode through ``train()``, out of a parent's parameters, optimiser
and checkpoint, untouched by a parent's ``apply``, yet moved and cast with the parent."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from irfoundry.foundation import align, create_foundation


class Student(nn.Module):
    """A host-like module holding a foundation model the way a method wrapper does."""

    def __init__(self, foundation) -> None:
        super().__init__()
        self.foundation = foundation
        self.host = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
        info = foundation.feature_info[-1]
        self.stride = info["stride"]
        self.fuse = nn.Conv2d(4 + info["channels"], 1, 1)

    def forward(self, x):
        h = self.host(x)
        prior = align(self.foundation(x)[-1], self.stride, 1, h.shape[-2:])
        return self.fuse(torch.cat([h, prior], dim=1))


@pytest.fixture(scope="module")
def lite():
    return create_foundation("efficientnet_lite0", layers=[1, 4])


def _own_params(student: Student) -> int:
    return sum(p.numel() for m in (student.host, student.fuse) for p in m.parameters())


def test_no_gradient_reaches_or_leaves_the_backbone(lite):
    student = Student(lite)
    assert list(lite.parameters()) == [] and all(not p.requires_grad for p in lite.backbone.parameters())
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    assert not any(m.requires_grad for m in lite(x))
    student(x).sum().backward()
    assert all(p.grad is not None for p in student.host.parameters())
    assert all(p.grad is None for p in lite.backbone.parameters())


def test_train_keeps_the_backbone_in_eval_mode_and_its_statistics_fixed(lite):
    student = Student(lite).train()
    assert student.host.training and not lite.training
    assert not any(m.training for m in lite.backbone.modules())
    bn = lite.backbone.bn1
    before = bn.running_mean.clone()
    student(torch.rand(2, 1, 32, 32))
    assert torch.equal(bn.running_mean, before)
    lite.train(True)
    assert not lite.training


def test_parent_parameters_optimiser_and_checkpoint_hold_no_foundation_weight(lite):
    student = Student(lite)
    params = list(student.parameters())
    assert sum(p.numel() for p in params) == _own_params(student)
    # the recommended optimiser (filtering requires_grad) and a naive one see the same, host-only, parameters
    recommended = torch.optim.AdamW(p for p in student.parameters() if p.requires_grad)
    naive = torch.optim.AdamW(student.parameters())
    backbone_ids = {id(p) for p in lite.backbone.parameters()}
    for opt in (recommended, naive):
        ids = {id(p) for group in opt.param_groups for p in group["params"]}
        assert not ids & backbone_ids and len(ids) == len(params)
    state = student.state_dict()
    assert not any(k.startswith("foundation") for k in state)
    assert set(state) == {f"host.{k}" for k in student.host.state_dict()} | {f"fuse.{k}" for k in student.fuse.state_dict()}
    assert not any(name.startswith("foundation.") for name, _ in student.named_modules())
    # a student checkpoint loads strictly into a student holding another (random) foundation
    other = Student(create_foundation("efficientnet_lite0", weights="random", layers=[1, 4]))
    other.load_state_dict(state, strict=True)


def test_parent_apply_does_not_reinitialise_the_frozen_weights(lite):
    student = Student(lite)
    before = lite.backbone.conv_stem.weight.clone()
    student.apply(lambda m: nn.init.zeros_(m.weight) if isinstance(m, nn.Conv2d) else None)
    assert torch.equal(lite.backbone.conv_stem.weight, before)
    assert student.fuse.weight.abs().sum() == 0


def test_device_and_dtype_moves_of_the_parent_reach_the_backbone():
    student = Student(create_foundation("efficientnet_lite0", layers=[1, 4]))
    fm = student.foundation
    student.double()
    assert fm.backbone.conv_stem.weight.dtype == torch.float64 and fm.mean.dtype == torch.float64
    out = fm(torch.rand(1, 1, 32, 32, dtype=torch.float64))
    assert all(m.dtype == torch.float64 for m in out)
    student.float().to("cpu")
    assert fm.backbone.conv_stem.weight.dtype == torch.float32
    assert all(m.dtype == torch.float32 for m in fm(torch.rand(1, 1, 32, 32)))
    assert all(m.dtype == torch.float64 for m in fm(torch.rand(1, 1, 32, 32, dtype=torch.float64)))


def test_deepcopy_copies_the_hidden_backbone(lite):
    student = Student(lite)
    twin = copy.deepcopy(student)
    assert twin.foundation.backbone is not lite.backbone
    x = torch.rand(1, 1, 32, 32)
    student.eval(), twin.eval()
    assert torch.equal(student(x), twin(x))
