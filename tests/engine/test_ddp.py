"""Multi-process training: rank-aware samplers, and a real 2-process DDP run (CPU, gloo) whose validation
equals a 1-process evaluation of the same weights.

Lightning's default ``DistributedSampler`` pads a validation split of 5 images to 6 on 2 processes (image 0
twice), which changes the summed counters; the datamodule shards validation itself instead.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_config

from irfoundry.engine import evaluate
from irfoundry.engine.datamodule import EpochSeededSampler, EvalShardSampler

LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                "SLURM_NTASKS", "IRFOUNDRY_RUN_DIR")


@pytest.mark.parametrize("n", [0, 1, 5, 6])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_eval_shards_count_every_image_once_and_have_equal_lengths(n, world):
    shards = [list(EvalShardSampler(n, world, r)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and all(len(s) == len(EvalShardSampler(n, world, 0)) for s in shards)
    counted = sorted(i for s in shards for i, c in s if c)
    assert counted == list(range(n))
    if world == 1:
        assert shards[0] == [(i, True) for i in range(n)]


class _Items:
    """Stands in for an IRSTDDataset: the sampler needs ``len()`` and ``set_epoch``."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, None

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def test_train_shards_split_one_seeded_permutation():
    ds = _Items(7)
    single = EpochSeededSampler(ds, seed=3)
    single.set_epoch(2)
    assert ds.epoch == 2  # the augmentation epoch follows the sampler's
    order = list(single)
    g = torch.Generator().manual_seed(3 * 1_000_003 + 2)  # the 1-process order is unchanged by sharding
    assert order == torch.randperm(7, generator=g).tolist()
    shards = []
    for rank in range(2):
        s = EpochSeededSampler(ds, seed=3, num_replicas=2, rank=rank)
        s.set_epoch(2)
        shards.append(list(s))
    assert [len(x) for x in shards] == [4, 4]
    # positions rank, rank + 2, ... of the same permutation, padded by wrap-around (order[0] again)
    assert shards[0] == order[0::2] and shards[1] == order[1::2] + [order[0]]
    s.set_epoch(3)
    assert list(s) != shards[1]


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.slow
def test_two_process_ddp_validation_equals_one_process(tiny_synth, tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    # no run_name: rank 0 picks the time-stamped folder and passes it to the process Lightning starts
    cfg = tiny_config(tiny_synth, tmp_path / "runs", run_name="", max_epochs=1, batch_size=2)
    cfg_file = tmp_path / "ddp.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "irfoundry", "train", str(cfg_file), "--set", "trainer.strategy=ddp",
           "--set", "trainer.devices=2", "--set", "trainer.accelerator=cpu"]
    proc = subprocess.run(cmd, env=_clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "GLOBAL_RANK: 1" in proc.stderr and "distributed_backend=gloo" in proc.stderr

    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, f"both processes must share one run folder, got {runs}"
    run = runs[0]
    assert json.loads((run / "train_result.json").read_text())["epochs"] == 1
    logged = json.loads((run / "last.json").read_text())["metrics"]

    ref = evaluate(run / "last.safetensors", tiny_synth, split="val")  # 1 process, same weights
    assert ref["n_images"] == 5
    assert logged["val/n_images"] == 5.0, "validation counted an image twice (or skipped one)"
    for k in ("iou", "niou", "pd", "fa", "target_precision", "target_f1"):
        # logged values pass through Lightning's float32 tensors: equal after the same rounding
        assert _same(logged[f"val/{k}"], float(np.float32(ref[k]))), (k, logged[f"val/{k}"], ref[k])
    # best was chosen on the global metric: it is the only epoch, with the logged score
    best = json.loads((run / "best.json").read_text())
    assert best["epoch"] == 0 and best["metrics"]["val/iou"] == logged["val/iou"]
