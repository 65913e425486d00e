"""torchmetrics modules: input shapes, reset, equality with the functional core, and 2-process DDP."""

from __future__ import annotations

import os
import socket
import sys

import numpy as np
import pytest
import torch

from irfoundry.bench.reference.perturb import perturbed_prediction  # noqa: E402
from irfoundry.metrics import (
    HIoU,
    IoU,
    IRSTDMetrics,
    MetricSettings,
    MultiThresholdCurves,
    NIoU,
    PdFa,
    TargetPRF,
    evaluate_images,
    summarize,
)

THRESHOLDS = [0.1, 0.3, 0.5, 0.7, 0.9]


def _data(n=8, h=32, w=40, seed=0):
    rng = np.random.default_rng(seed)
    gts = []
    for _ in range(n):
        g = np.zeros((h, w), dtype=bool)
        for _ in range(int(rng.integers(0, 4))):
            r, c = rng.integers(2, h - 2), rng.integers(2, w - 2)
            g[r - 1 : r + 2, c - 1 : c + 1] = True
        gts.append(g)
    probs = [perturbed_prediction(g, rng) for g in gts]
    return np.stack(probs), np.stack(gts)


def test_module_equals_functional_and_input_layouts():
    probs, gts = _data()
    ref = summarize(evaluate_images(list(probs), list(gts), THRESHOLDS), THRESHOLDS)
    layouts = [
        (torch.from_numpy(probs).float(), torch.from_numpy(gts)),  # N x H x W, float32 tensor
        (torch.from_numpy(probs)[:, None], torch.from_numpy(gts)[:, None].to(torch.uint8)),  # N x 1 x H x W
        (list(probs), list(gts)),  # list of H x W arrays
    ]
    for p, g in layouts:
        m = MultiThresholdCurves(thresholds=THRESHOLDS)
        m.update(p, g)
        out = m.compute()
        for k in ("tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels"):
            np.testing.assert_array_equal(out[k], ref[k], err_msg=k)
        np.testing.assert_allclose(out["niou"], ref["niou"], rtol=1e-6)  # float32 input: same bins here
    # batches of different image sizes in successive updates
    m = IRSTDMetrics()
    m.update(probs[:4], gts[:4])
    m.update([probs[4][:20, :30]], [gts[4][:20, :30]])
    assert m.compute()["n_images"] == 5


def test_reset_really_resets_and_state_is_constant_size():
    probs, gts = _data()
    m = MultiThresholdCurves(thresholds=THRESHOLDS)
    sizes = []
    for i in range(len(probs)):
        m.update(probs[i], gts[i])
        sizes.append(sum(v.numel() for v in m.metric_state.values()))
    assert len(set(sizes)) == 1
    first = m.compute()
    m.reset()
    assert int(m.n_images) == 0 and int(m.tp.sum()) == 0
    m.update(probs, gts)
    np.testing.assert_array_equal(m.compute()["tp"], first["tp"])


def test_single_metric_modules_agree_with_irstd_metrics():
    probs, gts = _data(seed=4)
    full = IRSTDMetrics()
    full.update(probs, gts)
    r = full.compute()
    mods = {"iou": IoU(), "niou": NIoU(), "pdfa": PdFa(), "prf": TargetPRF(), "hiou": HIoU(matching="greedy")}
    for mod in mods.values():
        mod.update(probs, gts)
    assert float(mods["iou"].compute()) == pytest.approx(r["iou"])
    assert float(mods["niou"].compute()) == pytest.approx(r["niou"])
    pdfa = mods["pdfa"].compute()
    assert (pdfa["pd"], pdfa["fa"]) == (r["pd"], r["fa"])
    assert mods["prf"].compute()["target_f1"] == r["target_f1"]
    assert mods["hiou"].compute()["hiou"] == r["hiou"]
    assert HIoU().settings.matching == "overlap"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        probs, gts = _data(n=9)
        curves = MultiThresholdCurves(thresholds=THRESHOLDS, legacy_area_match=False)
        single = IRSTDMetrics(matching="hungarian")
        # uneven shards: rank 0 gets 5 images, rank 1 gets 4, in several updates
        for i in range(rank, len(probs), world):
            curves.update(probs[i], gts[i])
            single.update(torch.from_numpy(probs[i : i + 1]), torch.from_numpy(gts[i : i + 1]))
        c = curves.compute()
        s = single.compute()
        if rank == 0:
            torch.save({"curves": c, "single": s}, os.path.join(out_dir, "ddp.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_equals_single_process(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "ddp.pt", weights_only=False)
    probs, gts = _data(n=9)
    ref_c = summarize(evaluate_images(list(probs), list(gts), THRESHOLDS), THRESHOLDS)
    ref_s = summarize(
        evaluate_images(list(probs), list(gts), 0.5, settings=MetricSettings(matching="hungarian")), [0.5]
    )
    for k in ("tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels"):
        np.testing.assert_array_equal(got["curves"][k], ref_c[k], err_msg=k)
        assert got["single"][k] == int(ref_s[k][0]), k
    for k in ("iou", "niou", "pd", "fa", "hiou"):
        np.testing.assert_allclose(got["curves"][k], ref_c[k], rtol=1e-12, err_msg=k)
    assert got["curves"]["n_images"] == 9 and got["single"]["n_images"] == 9


def test_metrics_package_imports_no_models_data_or_lightning():
    """torchmetrics pulls in lightning_utilities (a small helper package), never Lightning itself."""
    import subprocess

    code = (
        "import sys, irfoundry.metrics; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning') "
        "or m.startswith(('irfoundry.models', 'irfoundry.data', 'irfoundry.engine'))]; "
        "print(bad); assert not bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
