"""Frozen: a trained teacher that stays in eval, is absent from the student's state and optimiser, and
identifies itself by sha256."""

from __future__ import annotations

import torch
from torch import nn

from irfoundry.models import Frozen, create_model
from irfoundry.models.checkpoint import file_sha256, save_weights


class Student(nn.Module):
    def __init__(self, teacher: Frozen) -> None:
        super().__init__()
        self.net = nn.Conv2d(1, 1, 3, padding=1)
        self.teacher = teacher


def test_frozen_stays_out_of_the_student_and_in_eval(tmp_path):
    net = create_model("unet_tiny", base=4)
    path = save_weights(net, tmp_path / "teacher.safetensors")
    teacher = Frozen.from_file(path)
    student = Student(teacher).train()
    assert not teacher.training and not teacher.module.training  # train() keeps it in eval
    assert set(student.state_dict()) == {"net.weight", "net.bias"}
    assert [n for n, _ in student.named_parameters()] == ["net.weight", "net.bias"]
    assert all(not p.requires_grad for p in teacher.module.parameters())
    x = torch.randn(2, 1, 32, 32, requires_grad=True)
    out = teacher(x)
    assert not out.requires_grad and torch.equal(out, net.eval()(x).detach())
    student.to(torch.float64)  # moving the student moves the teacher
    assert next(teacher.module.parameters()).dtype == torch.float64
    assert teacher.provenance() == {"source": str(path), "sha256": file_sha256(path), "sha256_of": "file"}


def test_frozen_without_a_file_is_identified_by_its_tensors():
    a, b = Frozen(create_model("unet_tiny", base=4)), Frozen(create_model("unet_tiny", base=4))
    assert a.sha256 == a.state_digest() and a.provenance()["sha256_of"] == "tensors"
    assert a.sha256 != b.sha256  # different random weights
