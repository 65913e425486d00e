"""A method that steps two optimisers itself: it trains, its per-step schedule and outer step run, it
resumes bit-exactly (parameters, optimiser states, non-parameter state, logs), and it runs under 2-process
DDP on CPU with validation counting every image once."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from irfoundry.engine import from_dict, train
from irfoundry.engine.logs import METRICS_LOG, read_rows

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import two_optimizer_method  # noqa: E402,F401  (registers two_optimizer_test)

_spec = importlib.util.spec_from_file_location("engine_run_config", HERE.parent / "engine" / "conftest.py")
_engine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_engine)
tiny_config = _engine.tiny_config


def _config(root, out, name, **trainer):
    cfg = tiny_config(root, out, name, **trainer)
    cfg["method"] = {"name": "two_optimizer_test", "loss": "bce"}
    cfg["optim"] = {"optimizer": "adam", "lr": 1e-2, "scheduler": "cosine", "interval": "step", "warmup_steps": 2}
    cfg["trainer"]["batch_size"] = 2
    return cfg


def _state(run_dir) -> dict:
    return torch.load(Path(run_dir) / "state" / "resume.ckpt", weights_only=False, map_location="cpu")


def _losses(run_dir) -> list[tuple]:
    return [(r["epoch"], r["step"], r.get("train/loss_step"), r.get("train/loss/outer_step"))
            for r in read_rows(Path(run_dir) / METRICS_LOG) if r.get("train/loss_step")]


def test_two_optimizers_train_with_a_per_step_schedule_and_resume_exactly(tiny_synth, tmp_path):
    full = train(from_dict(_config(tiny_synth, tmp_path / "a", "full", max_epochs=3)))
    ref = _state(full["run_dir"])
    assert ref["irfoundry_method_state"] == {"outer_steps": 1}  # epoch 1 only (0-based odd epochs of 3)
    assert len(ref["optimizer_states"]) == 2
    assert float(ref["state_dict"]["method.alpha"]) != 0.0  # the outer step moved alpha
    steps_per_epoch = 7  # 14 training images, batch 2
    # the inner schedule was stepped once per batch (warm-up 2 steps, then cosine over the run's steps)
    (sched,) = ref["lr_schedulers"]
    assert sched["last_epoch"] == 3 * steps_per_epoch

    cut = _config(tiny_synth, tmp_path / "b", "part", max_epochs=3)
    cut["method"]["options"] = {"stop_at_epoch": 2}  # a Ctrl-C as epoch 2 starts: epochs 0-1 are saved
    with pytest.raises(BaseException):
        train(from_dict(cut))
    run_dir = tmp_path / "b" / "part"
    cfg_file = run_dir / "config.yaml"
    saved = yaml.safe_load(cfg_file.read_text())
    saved["method"]["options"]["stop_at_epoch"] = None  # the option only simulates the interruption
    cfg_file.write_text(yaml.safe_dump(saved))
    resumed = train(None, resume=run_dir)
    got = _state(resumed["run_dir"])
    assert got["irfoundry_method_state"] == ref["irfoundry_method_state"]
    for k, v in ref["state_dict"].items():
        assert torch.equal(v, got["state_dict"][k]), k
    for a, b in zip(ref["optimizer_states"], got["optimizer_states"]):
        for pa, pb in zip(a["state"].values(), b["state"].values()):
            assert all(torch.equal(pa[k], pb[k]) for k in pa if isinstance(pa[k], torch.Tensor))
    assert _losses(full["run_dir"]) == _losses(resumed["run_dir"])
    assert full["val_metrics"] == resumed["val_metrics"]


def test_manual_optimisation_refuses_a_second_optimiser_it_cannot_step(tiny_synth, tmp_path):
    from irfoundry.errors import ConfigError
    from irfoundry.methods.base import register_method

    @register_method("two_optimizer_automatic_test")
    class Auto(two_optimizer_method.TwoOptimizer):
        automatic_optimization = True

    cfg = _config(tiny_synth, tmp_path, "auto")
    cfg["method"]["name"] = "two_optimizer_automatic_test"
    with pytest.raises(ConfigError, match="automatic_optimization = False"):
        train(from_dict(cfg))
    assert not (tmp_path / "auto").exists()  # nothing resumable was written: the folder is gone


@pytest.mark.slow
def test_two_optimizer_method_under_two_process_ddp(tiny_synth, tmp_path):
    from ddp_run import train_two_processes

    cfg_file = tmp_path / "ddp.yaml"
    cfg_file.write_text(yaml.safe_dump(_config(tiny_synth, tmp_path / "runs", "ddp", max_epochs=2)))
    proc = train_two_processes(cfg_file, tmp_path, modules=["two_optimizer_method"], module_dir=HERE)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "GLOBAL_RANK: 1" in proc.stderr
    run = tmp_path / "runs" / "ddp"
    assert json.loads((run / "last.json").read_text())["metrics"]["val/n_images"] == 5.0
    state = _state(run)
    assert state["irfoundry_method_state"] == {"outer_steps": 1} and float(state["state_dict"]["method.alpha"]) != 0.0


def test_a_method_predicts_full_training_images_through_the_one_inference_path(tiny_synth, tmp_path):
    """What a label update needs: the whole, un-augmented training images (every one once), the run's
    predictor (normalisation, padding, crop back to native size), the run's stores."""
    from irfoundry.methods.base import register_method
    from irfoundry.methods.context import DataRequests
    from irfoundry.methods.supervised import Supervised

    seen: dict = {}

    @register_method("full_image_spy_test")
    class FullImageSpy(Supervised):
        def data_requests(self):
            return DataRequests(loaders=["train_full"])

        def on_train_epoch_end(self, ctx):
            predictor = ctx.predictor(self.predict_logits)
            stats = {k: v.clone() for k, v in self.host.state_dict().items() if "running" in k}
            for batch in ctx.loader("train_full"):
                probs = predictor.batch_probabilities(batch)
                for sid, size, counted, prob in zip(batch["id"], batch["size"], batch["counted"], probs):
                    assert tuple(prob.shape) == tuple(size) and 0 <= float(prob.min()) <= float(prob.max()) <= 1
                    if counted:
                        seen[sid] = tuple(size)
            seen["stores"] = dict(ctx.stores)
            # predicted in eval mode: BatchNorm kept its running statistics, and training mode is back
            assert all(torch.equal(v, self.host.state_dict()[k]) for k, v in stats.items()) and self.training

    cfg = tiny_config(tiny_synth, tmp_path, "spy", max_epochs=1)
    cfg["method"]["name"] = "full_image_spy_test"
    result = train(from_dict(cfg))
    assert seen.pop("stores") == {} and len(seen) == result["data"]["n_train"]
    assert len({s for s in seen.values()}) > 1  # native sizes, not crops
