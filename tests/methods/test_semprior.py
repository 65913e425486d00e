"""Semantic-prior KD: the teacher is the host's own weights + SCAM, the inner and outer steps, validation
pseudo-labels that evolve, clusters fitted on training images, exact resume across an outer phase, export."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from irfoundry.data.store import PerImageStore
from irfoundry.engine import export, from_dict, train
from irfoundry.engine.config import MethodConfig
from irfoundry.errors import ConfigError, DataError
from irfoundry.methods import build_method
from irfoundry.methods.base import register_method
from irfoundry.methods.context import BuildEnv, LocalStepContext
from irfoundry.methods.semprior import SemPrior, SemPriorOptions, kd_per_image
from irfoundry.models import create_model
from irfoundry.models.base import main_output
from irfoundry.models.checkpoint import load_weights
from irfoundry.models.complexity import complexity

pytest.importorskip("cv2", reason="PAL's label geometry needs opencv-python-headless (irfoundry[pointsup])")

_spec = importlib.util.spec_from_file_location("engine_run_config_semprior", Path(__file__).parents[1] / "engine" / "conftest.py")
_engine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_engine)

NORM = {"mean": 0.3, "std": 0.2}


class SmallFoundation(nn.Module):
    """A stand-in frozen foundation: two fixed maps at strides 4 and 8 of different widths."""

    feature_info = [{"channels": 6, "stride": 4}, {"channels": 10, "stride": 8}]

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w4", torch.randn(6, 1, 1, 1, generator=g), persistent=False)
        self.register_buffer("w8", torch.randn(10, 1, 1, 1, generator=g), persistent=False)

    def forward(self, x):
        x = x.mean(1, keepdim=True)
        p4, p8 = nn.functional.avg_pool2d(x, 4, ceil_mode=True), nn.functional.avg_pool2d(x, 8, ceil_mode=True)
        return [torch.tanh(nn.functional.conv2d(p4, self.w4)), torch.tanh(nn.functional.conv2d(p8, self.w8))]


def _method(host_name="acm", **options) -> SemPrior:
    torch.manual_seed(0)
    options.setdefault("clusters", "none")
    cfg = MethodConfig(name="semprior", loss="softiou", options=options)
    return SemPrior(create_model(host_name), cfg, foundation=SmallFoundation(), norm=NORM)


def _batch(n=4, size=32, seed=0, clusters=None):
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(n, 1, size, size)
    target[:, :, 10:13, 14:17] = 1
    batch = {"image": torch.randn(n, 1, size, size, generator=g), "target": target, "id": [f"i{k}" for k in range(n)]}
    if clusters is not None:
        batch["cluster"] = torch.tensor(clusters)
    return batch


def test_the_teacher_is_the_hosts_own_weights_plus_scam():
    m = _method(scale=0.55)
    x = _batch()["image"]
    # one copy of the host in the state: no teacher copy
    assert not [k for k in m.state_dict() if k.startswith("teacher")]
    host_ids = {id(p) for p in m.host.parameters()}
    loss, _ = m.inner_loss(_batch())
    loss.backward()
    assert all(p.grad is not None for p in m.host.parameters() if p.requires_grad)  # the teacher trains the host
    assert all(p.grad is not None for p in m.scam.parameters())
    assert m.alpha.grad is None  # the inner step's weights are detached
    before = m.teacher_logits(x).detach()
    with torch.no_grad():
        next(p for p in m.host.parameters() if p.dim() == 4).mul_(0.5)  # change the host in place ...
    assert not torch.allclose(m.teacher_logits(x), before)  # ... and the teacher changed with it
    opt = {id(p) for g in m.configure_optimizers(_optim(), None)[0].optimizer.param_groups for p in g["params"]}
    assert host_ids <= opt and {id(p) for p in m.scam.parameters()} <= opt and id(m.alpha) not in opt


def test_zero_initialised_scam_or_zero_scale_leaves_the_teacher_equal_to_the_host():
    x = _batch()["image"]
    for m in (_method(scale=0.55, zero_init=True), _method(scale=0.0)):
        m.eval()
        assert torch.allclose(m.teacher_logits(x), main_output(m.host(x)), atol=1e-6)
    m = _method(scale=0.55).eval()
    assert not torch.allclose(m.teacher_logits(x), main_output(m.host(x)), atol=1e-6)


def test_kd_is_zero_when_student_equals_teacher_and_uses_temperature_four():
    z = torch.randn(3, 1, 8, 8)
    assert torch.equal(kd_per_image([z], z, 4.0), torch.zeros(3))
    t = torch.zeros(1, 1, 2, 2)
    s = torch.full((1, 1, 2, 2), 4.0)
    assert torch.allclose(kd_per_image([s], t, 4.0), (torch.sigmoid(torch.tensor(1.0)) - 0.5) ** 2)


def _optim():
    from irfoundry.optim import OptimConfig

    return OptimConfig(optimizer="adamw", lr=1e-3, weight_decay=0.01, scheduler="none")


def test_an_outer_phase_moves_the_cluster_logits_and_the_host_by_the_hypergradient():
    m = _method(scale=0.55, clusters="fit", num_clusters=3, outer_steps=2)
    specs = {s.name: s.optimizer for s in m.configure_optimizers(_optim(), None)}
    assert specs["outer"].defaults["weight_decay"] == 0.01 and specs["outer"].defaults["lr"] == 1e-3
    train_b, val_b = _batch(seed=1, clusters=[0, 1, 2, 1]), _batch(seed=2, clusters=[2, 2, 0, 1])
    ctx = LocalStepContext(m, specs, loaders={"train_crops": [train_b], "val_crops": [val_b]}, norm=NORM)
    host = {k: v.clone() for k, v in m.host.state_dict().items()}
    scam = {k: v.clone() for k, v in m.scam.state_dict().items()}
    m.outer_phase(ctx)
    assert m.outer_phases == 1 and not torch.equal(m.alpha.detach(), torch.zeros(3))
    assert any(not torch.equal(host[k], v) for k, v in m.host.state_dict().items() if v.is_floating_point())
    assert all(torch.equal(scam[k], v) for k, v in m.scam.state_dict().items())  # the outer step leaves SCAM
    # the phase runs at the last batch of an epoch divisible by outer_every, after the inner step
    calls = []
    m.outer_phase = lambda c: calls.append(c.epoch)
    for epoch, last in [(0, False), (0, True), (3, True), (5, True)]:
        ctx.epoch, ctx.is_last_batch = epoch, last
        m.training_step(_batch(clusters=[0, 1, 2, 0]), ctx)
    assert calls == [0, 5]
    with pytest.raises(DataError, match="cluster ids"):
        m.training_step(_batch(), ctx)


def test_the_outer_phase_is_computed_in_float32_under_autocast():
    results = []
    for autocast in (False, True):
        m = _method(scale=0.55, clusters="fit", num_clusters=3, outer_steps=1)
        specs = {s.name: s.optimizer for s in m.configure_optimizers(_optim(), None)}
        batches = {"train_crops": [_batch(seed=1, clusters=[0, 1, 2, 1])], "val_crops": [_batch(seed=2, clusters=[2, 2, 0, 1])]}
        ctx = LocalStepContext(m, specs, loaders=batches, norm=NORM)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            m.outer_phase(ctx)
        results.append(m.alpha.detach().clone())
    assert torch.equal(results[0], results[1]) and not torch.equal(results[0], torch.zeros(3))


def test_options_are_checked_and_a_host_without_a_released_scale_needs_one():
    with pytest.raises(ConfigError, match="scale"):
        _method("acm")
    assert _method("mlclnet").scale == 0.55 and _method("alclnet").scale == 0.12
    for bad in ({"loss": "nope"}, {"kd_temperature": 0}, {"scale": 2.0}, {"outer_every": 0}):
        with pytest.raises(ConfigError):
            SemPriorOptions(**bad)


def test_the_builder_makes_the_bundled_foundation_and_a_random_prior():
    cfg = MethodConfig(name="semprior", loss="softiou",
                       options={"weights": "random", "scale": 0.55, "clusters": "none"})
    m = build_method(cfg, create_model("acm"), BuildEnv(norm=NORM))
    assert [f["channels"] for f in m.foundation.feature_info] == [16, 24, 40, 112, 320]
    assert not any(p.requires_grad for p in m.foundation.parameters())
    assert m.describe()["foundation"]["weights"] == "random"


# ------------------------------------------------------------------------------------------ runs
def _config(root, out, name, method="semprior", **trainer):
    cfg = _engine.tiny_config(root, out, name, max_epochs=3, **trainer)
    cfg["data"].update(labels="points", points="derive:centroid")
    cfg["method"] = {"name": method, "options": {"update_every": 1, "outer_every": 1, "scale": 0.5,
                                                 "num_clusters": 3, "weights": "random"}}
    cfg["optim"] = {"optimizer": "adamw", "lr": 1e-2}
    return cfg


class _Cut(Exception):
    pass


@register_method("semprior_cut_test", options=SemPriorOptions)
class SemPriorCut(SemPrior):
    """semprior raising at ``(epoch, batch)`` = ``cut_at``: an interrupted process, in-process."""

    cut_at: tuple[int, int] | None = None

    def training_step(self, batch, ctx):
        if SemPriorCut.cut_at == (ctx.epoch, ctx.batch_idx):
            SemPriorCut.cut_at = None
            raise _Cut()
        return super().training_step(batch, ctx)


def _labels(run: Path) -> tuple[dict, dict]:
    (folder,) = [d for d in sorted((run / "labels").iterdir()) if d.is_dir()][-1:]
    train_store, val_store = PerImageStore.open_saved(folder), PerImageStore.open_saved(folder / "val")
    return ({i: train_store.full(i)[0][0].numpy() for i in train_store.ids},
            {i: val_store.full(i)[0][0].numpy() for i in val_store.ids})


@pytest.mark.slow
def test_a_semprior_run_evolves_both_label_sets_resumes_exactly_across_an_outer_phase_and_exports_the_host(
        tiny_synth, tmp_path):
    result = train(from_dict(_config(tiny_synth, tmp_path / "a", "full", method="semprior_cut_test")))
    run = Path(result["run_dir"])
    assert result["monitor"] == "val/point_f1" and "val_teacher/point_f1" in result["val_metrics"]
    clusters = json.loads((run / "clusters.json").read_text())
    assert len(clusters["centres"]) == 3 and len(clusters["train_ids"]) == result["data"]["n_train"]
    state = torch.load(run / "state" / "resume.ckpt", weights_only=True)
    assert state["irfoundry_method_state"]["outer_phases"] == 3 and state["irfoundry_method_state"]["updates"] == 2
    train_labels, val_labels = _labels(run)
    assert len(val_labels) == result["data"]["n_val"]
    assert any(((v > 0) & (v < 1)).any() for v in val_labels.values())  # evolved: soft values beside the 1s

    SemPriorCut.cut_at = (2, 1)  # inside epoch 2, after the outer phases of epochs 0 and 1
    cfg = _config(tiny_synth, tmp_path / "b", "cut", method="semprior_cut_test", state_every_batches=1)
    with pytest.raises(_Cut):
        train(from_dict(cfg))
    resumed = Path(train(None, resume=str(tmp_path / "b" / "cut"))["run_dir"])
    a, b = load_file(run / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    again_train, again_val = _labels(resumed)
    assert all(np.array_equal(train_labels[i], again_train[i]) for i in train_labels)
    assert all(np.array_equal(val_labels[i], again_val[i]) for i in val_labels)

    info = export(run, tmp_path / "student", which="last")
    exported = load_weights(info["out"]).eval()
    plain = create_model("unet_tiny", base=4)
    assert set(exported.state_dict()) == set(plain.state_dict())  # no SCAM, no foundation, no alpha
    assert complexity(exported) == complexity(plain) == {"params": info["params"], "macs": info["macs"]}


def test_semprior_refuses_a_run_without_a_validation_split_before_writing(tiny_synth, tmp_path):
    cfg = _config(tiny_synth, tmp_path / "out", "noval")
    cfg["data"]["val_split"] = "none"
    with pytest.raises(ConfigError, match="validation"):
        train(from_dict(cfg))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_few_semprior_steps_on_sirst_with_the_bundled_prior(shared_data, tmp_path):
    cfg = {
        "data": {"root": str(shared_data / "sirst"), "train_split": "train", "labels": "points",
                 "points": "derive:centroid", "crop_size": 64},
        "model": {"name": "acm"},
        "method": {"name": "semprior", "options": {"scale": 0.55, "num_clusters": 16, "update_every": 1}},
        "optim": {"optimizer": "adamw", "lr": 1e-3},
        "trainer": {"max_epochs": 1, "batch_size": 8, "limit_train_batches": 3, "out_dir": str(tmp_path),
                    "run_name": "sirst", "progress_bar": False},
    }
    result = train(from_dict(cfg))
    run = Path(result["run_dir"])
    assert result["data"]["n_train"] == 256 and np.isfinite(result["val_metrics"]["val_teacher/point_f1"])
    assert len(json.loads((run / "clusters.json").read_text())["centres"]) == 16
    state = torch.load(run / "state" / "resume.ckpt", weights_only=True)
    assert state["irfoundry_method_state"]["outer_phases"] == 1  # epoch 0's, in its last step
    method = json.loads((run / "method.json").read_text())
    assert method["foundation"]["name"] == "efficientnet_lite0" and method["foundation"]["weights"] != "random"


def test_the_task_loss_is_the_released_weighted_bce_and_softiou_is_basicirstds_at_unit_weights():
    from irfoundry.losses import soft_iou_loss

    z, t = torch.randn(4, 1, 8, 8), (torch.rand(4, 1, 8, 8) > 0.8).float()
    w = torch.tensor([0.5, 1.5, 1.0, 1.0])
    bce = _method(scale=0.5)
    per = nn.functional.binary_cross_entropy_with_logits(z, t, reduction="none").mean(dim=(1, 2, 3))
    assert torch.allclose(bce._task([z], t, w), (w * per).mean())
    # deep supervision: summed over outputs, as the released task_loss(reduction="none")
    assert torch.allclose(bce._task([z, z + 1], t, w), (w * per).mean() + bce._weighted_task(z + 1, t, w))
    softiou = _method(scale=0.5, loss="softiou")
    assert torch.allclose(softiou._task([z], t, torch.ones(4)), soft_iou_loss(z, t))


def test_validation_and_training_crops_carry_cached_maps_clusters_and_pseudo_labels_never_masks(tiny_synth, tmp_path):
    from irfoundry.engine.build import build_run

    parts = build_run(from_dict(_config(tiny_synth, tmp_path, "loaders")))
    dm = parts.datamodule
    dm.setup("fit")
    assert set(dm.stores["foundation"].ids) == {s.id for s in [*dm.train_samples, *dm.val_samples]}
    for name in ("train_full", "val_full"):
        assert "mask" not in next(iter(dm.named_loader(name))), "a point-supervised run never serves a mask"
    for name in ("train_crops", "val_crops"):
        batch = next(iter(dm.named_loader(name)))
        assert "mask" not in batch, "a point-supervised run never serves a ground-truth mask"
        assert [tuple(f.shape[1:2]) for f in batch["foundation"]] == [(16,), (24,), (40,), (112,), (320,)]
        assert batch["cluster"].dtype == torch.int64 and int(batch["cluster"].max()) < 3
    from irfoundry.data.io import read_image
    from irfoundry.engine.inference import crop
    from irfoundry.methods.pal_labels import contour_mask

    for s in dm.val_samples:  # contours + clicks for every validation image, hard ones too (select_all=True)
        grey = np.rint(read_image(s.image) * np.float32(255)).astype(np.uint8)
        clicks = dm.val_clicks.load(s, grey.shape)
        expect, _ = contour_mask(grey, clicks, easy_share=0.0)
        assert np.array_equal(dm.val_label_store.full(s.id)[0][0].numpy(), expect), s.id
    val = next(iter(dm.named_loader("val_full")))  # full validation images with their evolving pseudo-labels
    assert torch.equal(crop(val["target"][0, 0], val["box"][0]), dm.val_label_store.full(val["id"][0])[0][0])
    assert [f.shape[1] for f in val["foundation"]] == [16, 24, 40, 112, 320]  # label updates read the cache
    train_full = next(iter(dm.named_loader("train_full")))
    method = parts.method.eval()
    cached = method.label_probabilities(method_predictor(method, dm), train_full)[0]
    fresh = method_predictor(method, dm, cached=False).batch_probabilities(train_full)[0]
    assert cached.shape == fresh.shape and (cached - fresh).abs().max() < 0.05  # fp16 cache vs the image itself


def method_predictor(method, dm, cached=True):
    from irfoundry.engine.inference import Predictor

    fn = method.label_network() if cached else method.teacher_logits
    return Predictor(fn, norm=dm.norm, multiple=dm.multiple, module=method)


@pytest.mark.slow
def test_two_processes_stay_identical_through_inner_steps_outer_phases_and_label_updates(tiny_synth, tmp_path):
    import yaml
    from ddp_run import train_two_processes

    cfg = _config(tiny_synth, tmp_path / "runs", "ddp", method="semprior_record_test", batch_size=2)
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    proc = train_two_processes(tmp_path / "ddp.yaml", tmp_path, modules=["semprior_record_method"],
                               module_dir=Path(__file__).parent, env={"IRFOUNDRY_TEST_RECORD": str(tmp_path)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for epoch in range(3):
        a, b = (torch.load(tmp_path / f"rank{r}_epoch{epoch}.pt", weights_only=True) for r in (0, 1))
        assert a["outer_phases"] == b["outer_phases"] == epoch + 1
        for k, v in a["state"].items():  # the outer step's hypergradients are averaged over the processes
            assert torch.allclose(v, b["state"][k], atol=1e-6), (epoch, k)
        assert all(torch.equal(v, b["val_labels"][sid]) for sid, v in a["val_labels"].items())
    assert not torch.equal(a["state"]["alpha"], torch.zeros_like(a["state"]["alpha"]))
