"""PAL: its label-update variant, initial contour masks, mining, the phase schedule, and point-supervised
training from an easy-to-hard pool that grows, is snapshotted with the labels and resumes exactly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from irfoundry.data.dataset import DatasetSpec
from irfoundry.data.point_files import derive_point_table, write_points
from irfoundry.data.store import PerImageStore
from irfoundry.engine import from_dict, train
from irfoundry.errors import ConfigError
from irfoundry.losses import ohem_edge_bce_loss
from irfoundry.methods.base import register_method
from irfoundry.methods.label_evolution import lesps_update, pal_update
from irfoundry.methods.pal import PAL, PALOptions, lose_ratio, phase

pytest.importorskip("cv2", reason="PAL's label geometry needs opencv-python-headless (irfoundry[pointsup])")
from irfoundry.methods.pal_labels import contour_mask, mined_mask, mining_accepts  # noqa: E402

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("engine_run_config_pal", HERE.parent / "engine" / "conftest.py")
_engine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_engine)


def test_the_pal_update_on_a_hand_worked_example():
    label = np.zeros((40, 40), np.float32)
    label[4, 4], label[4, 5] = 1.0, 0.6  # one region: area 2, centroid (4, 4.5) -> pixel (4, 4)
    label[30, 30] = 0.5  # not a region (not > 0.5), outside every candidate set: decays
    pred = np.zeros((40, 40), np.float32)
    pred[4, 4], pred[4, 5], pred[5, 4], pred[5, 5] = 0.9, 0.8, 0.7, 0.2
    pred[20, 20] = 0.95  # in the neighbourhood, off the core: dropped
    # M = 0.95, tau = 0.475 + 0.5 * (0.95 - 0.475) * 2 / (40 * 40 * 0.0015) = 0.672917: candidates 0.9, 0.8, 0.7
    new = pal_update(pred, label, quantise=False)
    expect = label * np.float32(0.97)
    expect[4, 4] = 1.0  # (1 + 0.9) / 2, then 1 again: it was 1
    expect[4, 5] = (0.6 + 0.8) / 2
    expect[5, 4] = (0.0 + 0.7) / 2
    expect[30, 30] = 0.5 * 0.97
    np.testing.assert_allclose(new, expect, rtol=0, atol=1e-7)
    # the released code keeps labels as 8-bit PNGs between updates
    np.testing.assert_array_equal(pal_update(pred, label), (np.rint(new * np.float32(255)) / 255).astype(np.float32))
    # unlike LESPS, a single candidate component off the core is dropped too
    lone = np.zeros((40, 40), np.float32)
    lone[4, 4] = 1.0
    far = np.zeros((40, 40), np.float32)
    far[12, 12] = 0.9
    assert lesps_update(far, lone)[12, 12] == pytest.approx(0.45)
    assert pal_update(far, lone)[12, 12] == 0.0


def test_candidates_of_several_regions_are_united_from_the_input_label():
    label = np.zeros((64, 64), np.float32)
    label[10, 10] = label[10, 14] = 1.0  # two regions whose neighbourhoods overlap
    pred = np.zeros((64, 64), np.float32)
    pred[10, 11], pred[10, 13] = 0.8, 0.6
    new = pal_update(pred, label, quantise=False)
    # each region's own core: (10, 11) is by the first click, (10, 13) by the second; each averaged once
    assert new[10, 11] == pytest.approx(0.4) and new[10, 13] == pytest.approx(0.3)


def test_initial_contour_masks_and_the_easy_split():
    img = np.full((40, 40), 50, np.uint8)
    img[19:22, 19:22] = 200  # a 3 x 3 target
    click = np.zeros((40, 40), np.float32)
    click[20, 20] = 1
    mask, easy = contour_mask(img, click)
    assert easy and mask[20, 20] == 1 and mask[19:22, 19:22].all()
    # the closed Canny ring around the target: 5 x 5 without its corners, nothing beyond
    assert mask.sum() == 21 and mask[17:24, 17:24].sum() == 21
    flat = np.full((40, 40), 50, np.uint8)
    mask, easy = contour_mask(flat, click)
    assert not easy and np.array_equal(mask, click)  # no edge: a hard image keeps its clicks
    big = np.full((40, 40), 50, np.uint8)
    big[10:30, 10:30] = 220  # its contour encloses more than 50 px: refused
    assert not contour_mask(big, click)[1]
    two = click.copy()
    two[5, 5] = 1  # one of two clicks with a contour: 50 % < 80 %
    assert not contour_mask(img, two)[1]
    assert contour_mask(img, two, easy_share=0.5)[1]
    assert contour_mask(img, np.zeros_like(click))[1]  # no clicks: easy, empty


def test_mining_accepts_by_lost_clicks_and_false_blobs_and_keeps_the_blobs_on_clicks():
    clicks = np.zeros((40, 40), np.float32)
    clicks[5, 5] = clicks[20, 20] = 1
    predicted = np.zeros((40, 40), bool)
    predicted[4:7, 4:7] = True  # covers the first click
    predicted[30:32, 30:32] = True  # a false blob
    # one of two clicks lost (0.5); (2 blobs - 1 covered) / 2 clicks = 0.5 false blobs per click
    assert not mining_accepts(clicks, predicted, lose_ratio=0.4)
    assert mining_accepts(clicks, predicted, lose_ratio=0.6)
    assert not mining_accepts(clicks, predicted, lose_ratio=0.6, alarm_ratio=0.4)
    mask = mined_mask(clicks, predicted)
    expect = np.zeros((40, 40), np.float32)
    expect[4:7, 4:7] = 1
    expect[20, 20] = 1
    np.testing.assert_array_equal(mask, expect)


def test_the_phases_and_the_lose_ratio_follow_the_released_schedule():
    o = PALOptions()
    phases = {e: phase(o, e, 400) for e in (5, 80, 83, 85, 320, 325, 395, 400)}
    assert phases == {5: None, 80: None, 83: None, 85: "mine", 320: "mine", 325: "evolve", 395: "evolve", 400: None}
    assert lose_ratio(o, 85, 400) == pytest.approx(0.2 + 6 / 240 * 0.8)
    assert lose_ratio(o, 320, 400) == pytest.approx(0.2 + 241 / 240 * 0.8)
    # a short run keeps the fractions: pool only up to epoch 10 of 50, mining up to 40
    assert [phase(o, e, 50) for e in (10, 15, 40, 45)] == [None, "mine", "mine", "evolve"]


def test_the_released_loss_weighs_every_pixel_by_four():
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 3:5, 3:5] = 1
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten()
    hard = plain.sort().values[plain.numel() // 2:]
    assert torch.allclose(ohem_edge_bce_loss(logits, target, reference_quirk=True), 4 * hard.mean())


def test_pal_trains_on_the_label_above_one_half_as_the_released_dataset_reads_it():
    from types import SimpleNamespace

    from irfoundry.models import create_model

    host = create_model("unet_tiny", base=4)
    image = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    soft = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    pal = PAL(host, SimpleNamespace(options=PALOptions(), loss=None))
    loss, _ = pal.training_loss({"image": image, "target": soft})
    binary, _ = pal.training_loss({"image": image, "target": (soft > 0.5).float()})
    assert torch.equal(loss, binary)
    pal.opts = PALOptions(binary_targets=False)
    assert not torch.equal(pal.training_loss({"image": image, "target": soft})[0], binary)
    from irfoundry.losses import soft_iou_loss

    pal.opts = PALOptions(loss="softiou")  # another loss in place of the released one, the same targets
    expect = soft_iou_loss(host(image), (soft > 0.5).float())
    assert torch.allclose(pal.training_loss({"image": image, "target": soft})[0], expect)


class _Cut(Exception):
    pass


@register_method("pal_cut_test", options=PALOptions)
class PALCut(PAL):
    """PAL that raises at ``(epoch, batch)`` = ``PALCut.cut_at``: an interrupted process, in-process."""

    cut_at: tuple[int, int] | None = None

    def training_step(self, batch, ctx):
        if PALCut.cut_at == (ctx.epoch, ctx.batch_idx):
            PALCut.cut_at = None
            raise _Cut()
        return super().training_step(batch, ctx)


def _config(root, points, out, name, method="pal", **trainer):
    cfg = _engine.tiny_config(root, out, name, max_epochs=6, **trainer)
    cfg["data"].update(labels="points", points=str(points))
    cfg["method"] = {"name": method, "options": {"update_every": 1}}
    cfg["optim"] = {"optimizer": "adamw", "lr": 1e-2}
    return cfg


def _snapshot(run_dir: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    (folder,) = [d for d in sorted((run_dir / "labels").iterdir()) if d.is_dir()][-1:]
    store = PerImageStore.open_saved(folder)
    pool = json.loads((folder / "pool.json").read_text())["members"]
    return {i: store.full(i)[0][0].numpy() for i in store.ids}, pool


@pytest.mark.slow
def test_pal_trains_from_a_growing_pool_and_resumes_exactly_inside_an_epoch(tiny_synth, tmp_path):
    table, _ = derive_point_table(DatasetSpec.parse(str(tiny_synth)).resolve(), "centroid")
    points = "derive:centroid"  # the same clicks, derived from the train and val masks at start
    full = train(from_dict(_config(tiny_synth, points, tmp_path / "a", "full", method="pal_cut_test")))
    run = Path(full["run_dir"])
    assert full["monitor"] == "val/point_f1"
    rows = [r for r in (run / "logs" / "metrics.csv").read_text().splitlines()[1:]]
    header = (run / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    pool_col = header.index("train/pool_images")
    sizes = [float(r.split(",")[pool_col]) for r in rows if r.split(",")[pool_col]]
    n_train = len(DatasetSpec.parse(f"{tiny_synth}:train").resolve())
    # E = 6: pool only until epoch int(1.2) = 1; mining before epochs 2..4, evolution only before 5
    assert sizes[0] < n_train and sizes == sorted(sizes) and sizes[-1] > sizes[0], sizes
    state = torch.load(run / "state" / "resume.ckpt", weights_only=True)
    assert state["irfoundry_method_state"]["updates"] == 4  # before epochs 2, 3, 4, 5
    labels, pool = _snapshot(run)
    assert len(pool) == sizes[-1] and set(pool) <= set(labels)
    assert all(labels[i].max() <= 1 and (labels[i][tuple(np.asarray(table[i]).T)] == 1).all()
               for i in labels if table[i])  # clicks stay 1

    PALCut.cut_at = (3, 1)  # inside epoch 3, after the state of batch 0 (state_every_batches=1)
    cfg = _config(tiny_synth, points, tmp_path / "b", "cut", method="pal_cut_test", state_every_batches=1)
    with pytest.raises(BaseException):
        train(from_dict(cfg))
    cut = tmp_path / "b" / "cut"
    assert torch.load(cut / "state" / "resume.ckpt", weights_only=True)["epoch"] == 3
    resumed = Path(train(None, resume=str(cut))["run_dir"])
    a, b = load_file(run / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    again, pool_again = _snapshot(resumed)
    assert pool_again == pool and all(np.array_equal(labels[i], again[i]) for i in labels)

    from irfoundry.cli import main

    assert main(["labels", "show", str(run), "--out", str(tmp_path / "png"), "--limit", "2"]) == 0
    assert (tmp_path / "png" / "pool.txt").read_text().split() == pool


def test_pal_refuses_full_masks_before_writing(tiny_synth, tmp_path):
    cfg = _engine.tiny_config(tiny_synth, tmp_path / "out", "bad")
    cfg["method"] = {"name": "pal"}
    with pytest.raises(ConfigError, match="data.labels=points"):
        train(from_dict(cfg))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_two_process_update_and_pool_equal_one_process_on_the_same_weights(tiny_synth, tmp_path):
    from ddp_run import train_two_processes

    from irfoundry.data.dataset import load_norm_stats
    from irfoundry.data.io import read_image
    from irfoundry.data.points import points_to_mask
    from irfoundry.engine.inference import Predictor
    from irfoundry.models import create_model

    samples = DatasetSpec.parse(f"{tiny_synth}:train").resolve()
    table, _ = derive_point_table(DatasetSpec.parse(str(tiny_synth)).resolve(), "centroid")
    points = write_points(table, tmp_path / "points.json")
    cfg = _config(tiny_synth, points, tmp_path / "runs", "ddp", method="pal_record_test", batch_size=2)
    cfg["trainer"]["max_epochs"] = 2  # one update, before epoch 1: evolution of the pool and mining
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    proc = train_two_processes(tmp_path / "ddp.yaml", tmp_path, modules=["pal_record_method"], module_dir=HERE,
                               env={"IRFOUNDRY_TEST_RECORD": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = tmp_path / "runs" / "ddp"
    labels, pool = _snapshot(run)
    record = torch.load(tmp_path / "host_update0.pt", weights_only=True)
    host = create_model("unet_tiny", base=4)
    host.load_state_dict(record["state"])
    predictor = Predictor(host.eval(), norm=load_norm_stats(run / "norm.json"))
    expect_pool, n_easy = [], 0
    for s in samples:
        image = read_image(s.image)
        clicks = points_to_mask(table[s.id], image.shape).astype(np.float32)
        init, easy = contour_mask(np.rint(image * np.float32(255)).astype(np.uint8), clicks)
        prob = predictor.predict(image)
        n_easy += easy
        if easy:
            expect, joined = pal_update(prob, init), True
        elif mining_accepts(clicks, prob > 0.5, lose_ratio=record["lose_ratio"]):
            expect, joined = mined_mask(clicks, prob > 0.5), True
        else:
            expect, joined = init, False
        np.testing.assert_allclose(labels[s.id], expect, rtol=0, atol=1e-6, err_msg=s.id)
        if joined:
            expect_pool.append(s.id)
    assert sorted(pool) == sorted(expect_pool) and len(pool) > n_easy  # mined images of both shards joined
