"""SimIR distillation: KD is temperature-scaled binary KL, the teacher stays frozen and out of every file, the
fine-tuning stage drops it, a teacher of another normalisation sees its own, and a run trains, resumes, exports
the student alone and scores its teacher branch."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from irfoundry.engine import evaluate, export, from_dict, train
from irfoundry.engine.config import MethodConfig
from irfoundry.errors import ConfigError
from irfoundry.methods import build_method
from irfoundry.methods.context import BuildEnv
from irfoundry.methods.simir_distill import SimIRDistill, binary_kl, kd_loss
from irfoundry.models import create_model
from irfoundry.models.checkpoint import file_sha256, load_weights, save_weights, sidecar_path
from irfoundry.optim import OptimConfig, ScheduleLength

_spec = importlib.util.spec_from_file_location("engine_run_config",
                                               Path(__file__).parents[1] / "engine" / "conftest.py")
_engine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_engine)
tiny_config = _engine.tiny_config

NORM = {"mean": 0.3, "std": 0.2}


def _cfg(**options) -> MethodConfig:
    return MethodConfig(name="simir_distill", loss="softiou+bce", options={"teacher": "unused", **options})


def _method(student=None, teacher=None, norm=NORM, teacher_norm=None, **options) -> SimIRDistill:
    torch.manual_seed(0)
    student = student if student is not None else create_model("unet_tiny", base=2)
    teacher = teacher if teacher is not None else create_model("unet_tiny", base=4)
    return SimIRDistill(student, _cfg(**options), teacher=teacher, norm=norm, teacher_norm=teacher_norm)


def _batch(n=2, size=32):
    g = torch.Generator().manual_seed(1)
    return {"image": torch.randn(n, 1, size, size, generator=g),
            "target": (torch.rand(n, 1, size, size, generator=g) > 0.97).float()}


def test_kd_is_binary_kl_zero_for_equal_logits_and_scaled_by_t_squared():
    g = torch.Generator().manual_seed(0)
    t, s = 3 * torch.randn(2, 1, 8, 8, generator=g), 3 * torch.randn(2, 1, 8, 8, generator=g)
    assert kd_loss([t.clone()], t, 2.0).abs() < 1e-7
    for temp in (1.0, 2.0, 4.0):  # against a naive float64 reference: T^2 * mean KL(p || q)
        p, q = torch.sigmoid(t.double() / temp), torch.sigmoid(s.double() / temp)
        ref = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean() * temp ** 2
        assert torch.allclose(kd_loss([s], t, temp).double(), ref, rtol=1e-4)
        assert kd_loss([s], t, temp) > 0 and torch.isclose(kd_loss([s], t, temp), temp ** 2 * binary_kl(t, s, temp))
    # every mask (averaged) or the main one; a teacher map of another size is resized to the mask's
    assert torch.isclose(kd_loss([s, t], t, 2.0), kd_loss([s], t, 2.0) / 2)
    assert torch.isclose(kd_loss([s, t], t, 2.0, outputs="main"), kd_loss([s], t, 2.0))
    assert torch.isfinite(kd_loss([s], t[..., ::2, ::2], 2.0))

    # through the method: a student that is its teacher (eval mode: the same BatchNorm statistics) has KD 0
    student = create_model("unet_tiny", base=2)
    same = _method(student, copy.deepcopy(student)).eval()
    assert same.training_loss(_batch())[1]["loss/kd"].abs() < 1e-6
    assert _method().eval().training_loss(_batch())[1]["loss/kd"] > 0


def test_teacher_stays_frozen_and_out_of_parameters_state_and_export():
    method = _method(feature_weight=0.5)
    teacher = method.teacher.module
    before = {k: v.clone() for k, v in teacher.state_dict().items()}  # BatchNorm statistics included
    opt = method.configure_optimizers(OptimConfig(optimizer="adamw", lr=1e-2), ScheduleLength(1, 3))[0].optimizer
    adapters = [p.clone() for p in method.adapters.parameters()]
    method.train()
    assert not teacher.training and method.host.training
    for _ in range(3):
        opt.zero_grad()
        loss, logs = method.training_loss(_batch())
        loss.backward()
        opt.step()
    assert {"loss", "loss/task", "loss/kd", "loss/feature"} <= set(logs)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in method.parameters()}
    assert not teacher_ids & {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(k.startswith(("host.", "adapters.")) for k in method.state_dict())
    assert any(not torch.equal(a, b) for a, b in zip(adapters, method.adapters.parameters()))  # trained
    assert method.export_model() is method.host
    # encoder-decoder teacher: every student stage against the teacher stage of the same stride
    assert method.pairs == [(i, i) for i in range(5)]
    assert method.describe()["teacher"]["sha256_of"] == "tensors"


def test_fine_tuning_stage_drops_the_teacher_after_distill_epochs():
    method = _method(distill_epochs=1, feature_weight=0.5)
    batch = _batch()
    method.on_train_epoch_start(SimpleNamespace(epoch=0))
    assert method.in_distillation and "loss/kd" in method.training_loss(batch)[1]
    method.on_train_epoch_start(SimpleNamespace(epoch=1))
    method.teacher_outputs = None  # the teacher must not run any more
    loss, logs = method.training_loss(batch)
    assert not method.in_distillation and "loss/kd" not in logs and "loss/feature" not in logs
    assert torch.isclose(loss, logs["loss/task"])
    loss.backward()  # the adapters stay in the graph (zero gradient) for plain DDP
    assert all(p.grad is not None and not p.grad.any() for p in method.adapters.parameters())


def test_teacher_of_another_normalisation_sees_its_own(tmp_path):
    """A sam_teacher trained with other statistics: loaded from its file without reading its pretrained
    weights, its input converted, its own buffers undoing the rest; the feature term uses its embedding."""
    torch.manual_seed(0)
    sam = create_model("sam_teacher", weights="random", embed_dim=32, decoder_mlp_dim=64, decoder_heads=2)
    teacher_norm = {"mean": 0.5, "std": 0.1}
    sam.set_input_norm(teacher_norm)
    path = save_weights(sam, tmp_path / "teacher.safetensors", extra={"norm": teacher_norm})
    meta = json.loads(sidecar_path(path).read_text())
    meta["model_kwargs"]["weights"] = str(tmp_path / "absent_pretrained.pth")  # reading it would fail
    sidecar_path(path).write_text(json.dumps(meta))
    host = create_model("simir_small")
    cfg = MethodConfig(name="simir_distill", loss="simir_point", options={"teacher": str(path), "feature_weight": 1.0})
    method = build_method(cfg, host, BuildEnv(norm=NORM))
    assert method.describe()["teacher"]["sha256"] == file_sha256(path)
    assert method.describe()["teacher"]["input_converted"]

    unit = torch.rand(2, 1, 32, 32)
    x_run, x_teacher = (unit - NORM["mean"]) / NORM["std"], (unit - 0.5) / 0.1
    with torch.no_grad():
        assert torch.allclose(method.teacher_logits(x_run), sam.eval()(x_teacher), atol=1e-4)
    same = _method(teacher=create_model("unet_tiny", base=2), teacher_norm=NORM)
    assert same.to_teacher == (1.0, 0.0) and not same.describe()["teacher"]["input_converted"]

    # SimIR's student: its stride-8 tap against the stride-16 embedding; no decay on its query tokens
    assert method.pairs == [(3, 0)] and method.adapters[0].out_channels == 32
    method.train()
    loss, logs = method.training_loss(_batch())
    assert torch.isfinite(loss) and logs["loss/feature"] > 0
    loss.backward()
    assert method.adapters[0].weight.grad.abs().sum() > 0
    groups = method.configure_optimizers(OptimConfig(optimizer="adamw", weight_decay=0.1, no_decay_norm_bias=True),
                                         ScheduleLength(1, 1))[0].optimizer.param_groups
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    tokens = [f"{m}.{t}" for m in ("encoder", "neck", "decoder") for t in ("query_feat", "query_embed")]
    tokens += ["neck.encoder_query_embed", "decoder.sparse_embed"]
    assert all(id(host.get_submodule(t).weight) in no_decay for t in tokens)
    assert id(host.encoder.taps[0].conv.weight) not in no_decay


@pytest.mark.parametrize("options, words", [
    ({"teacher": None}, ["method.options.teacher", "required"]),
    ({"temperature": 0}, ["method.options.temperature", "> 0"]),
    ({"kd_weight": -1}, ["method.options.kd_weight", ">= 0"]),
    ({"feature_weight": -0.5}, ["method.options.feature_weight"]),
    ({"distill_epochs": -2}, ["method.options.distill_epochs"]),
    ({"task_loss": "nope"}, ["method.options.task_loss", "simir_point"]),
    ({"kd_outputs": "some"}, ["method.options.kd_outputs", "main"]),
    ({"temprature": 2.0}, ["method.options.temprature", "temperature"]),
])
def test_options_refuse_bad_values_by_key(options, words):
    with pytest.raises(ConfigError) as err:
        MethodConfig(name="simir_distill", options={"teacher": "x", **options})
    assert all(w in str(err.value) for w in words), str(err.value)


def test_teachers_that_cannot_be_loaded_or_give_no_features_are_refused(tmp_path):
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "weights.pth").write_bytes(b"x")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    for name, words in [("missing", "does not exist"), ("empty_run", "no best.safetensors"),
                        ("weights.pth", "not a .safetensors"), ("bad.safetensors", "cannot load")]:
        cfg = MethodConfig(name="simir_distill", options={"teacher": str(tmp_path / name)})
        with pytest.raises(ConfigError, match=words) as err:
            build_method(cfg, create_model("unet_tiny", base=2), BuildEnv(norm=NORM))
        assert str(tmp_path / name) in str(err.value)
    with pytest.raises(ConfigError, match="feature_weight"):  # a teacher without declared scales
        _method(teacher=nn.Conv2d(1, 1, 1), feature_weight=1.0)
    assert _method(teacher=nn.Conv2d(1, 1, 1)).teacher_logits(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)


@pytest.fixture(scope="module")
def distilled(tiny_synth, tmp_path_factory):
    """A tiny teacher run, then a 2-epoch distillation (epoch 0 distils with KD + features, epoch 1 fine-tunes)."""
    out = tmp_path_factory.mktemp("simir_distill")
    teacher = train(from_dict(tiny_config(tiny_synth, out, "teacher", max_epochs=1)))

    def student(name, epochs, teacher_path=teacher["run_dir"]):
        cfg = tiny_config(tiny_synth, out, name, max_epochs=epochs)
        cfg["model"]["kwargs"] = {"base": 2}
        cfg["method"] = {"name": "simir_distill", "loss": "softiou+bce",
                         "options": {"teacher": teacher_path, "distill_epochs": 1, "feature_weight": 0.1}}
        # a per-step warm-up (a cosine's length would differ between the cut 1-epoch run and the full one)
        cfg["optim"] = {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.1, "no_decay_norm_bias": True,
                        "interval": "step", "warmup_steps": 2}
        cfg["trainer"]["gradient_clip_val"] = 1.0
        return cfg

    return teacher, train(from_dict(student("full", 2))), student, out


def test_run_records_the_teacher_resumes_exactly_and_exports_the_student(distilled, tiny_synth):
    teacher, full, student, out = distilled
    run = Path(full["run_dir"])
    sha = file_sha256(Path(teacher["run_dir"]) / "best.safetensors")
    assert json.loads((run / "method.json").read_text())["teacher"]["sha256"] == sha
    assert json.loads((run / "best.json").read_text())["method"]["teacher"]["sha256"] == sha
    assert {"val/iou", "val_teacher/iou"} <= set(full["val_metrics"])

    # interrupted after the distillation epoch, resumed into the fine-tuning one: the same weights
    part = train(from_dict(student("part", 1)))
    cfg_file = Path(part["run_dir"]) / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["trainer"]["max_epochs"] = 2
    cfg_file.write_text(yaml.safe_dump(cfg))
    resumed = train(None, resume=part["run_dir"])
    a, b = load_file(run / "last.safetensors"), load_file(Path(resumed["run_dir"]) / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    from irfoundry.engine.logs import METRICS_LOG, read_rows

    for r in (run, Path(resumed["run_dir"])):  # KD in the distillation epoch only
        assert {row["epoch"] for row in read_rows(r / METRICS_LOG) if row.get("train/loss/kd_epoch")} == {"0"}

    # the exported file is the bare student: its keys, its parameter count, the trained values
    info = export(full["run_dir"], out / "student", which="last")
    exported = load_file(info["out"])
    bare = create_model("unet_tiny", base=2)
    assert set(exported) == set(bare.state_dict()) and not any(k.startswith(("teacher", "adapters")) for k in exported)
    assert info["params"] == sum(p.numel() for p in bare.parameters())
    assert all(torch.equal(exported[k], a[k]) for k in a)
    assert load_weights(info["out"]).model_name == "unet_tiny"

    # the teacher branch scores exactly what the teacher's own run scores
    data = f"{tiny_synth}:test"
    branch, own = evaluate(full["run_dir"], data, branch="teacher"), evaluate(teacher["run_dir"], data)
    assert {k: branch[k] for k in ("iou", "niou", "pd", "fa")} == {k: own[k] for k in ("iou", "niou", "pd", "fa")}


def test_a_missing_teacher_is_refused_before_the_run_folder_exists(distilled, tmp_path):
    _, _, student, out = distilled
    missing = tmp_path / "no_teacher"
    with pytest.raises(ConfigError, match="does not exist"):
        train(from_dict(student("refused", 1, str(missing))))
    assert not (out / "refused").exists()
