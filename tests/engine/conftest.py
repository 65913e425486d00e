from __future__ import annotations

import pytest

from irfoundry.data import write_synthetic_dataset


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """24 synthetic images (60-120 px) in SIRST v1 layout: 14 train / 5 val / 5 test."""
    root = tmp_path_factory.mktemp("synth") / "tiny"
    write_synthetic_dataset(root, n=24, size=96, seed=3)
    return root


def tiny_config(root, out_dir, run_name="run", **trainer):
    return {
        "data": {"root": str(root), "crop_size": 64, "seed": 0},
        "model": {"name": "unet_tiny", "kwargs": {"base": 4}},
        "method": {"name": "supervised", "loss": "softiou+bce"},
        "optim": {"optimizer": "adam", "lr": 1e-2},
        "trainer": {"max_epochs": 2, "batch_size": 4, "out_dir": str(out_dir), "run_name": run_name,
                    "progress_bar": False, "log_every_n_steps": 1, **trainer},
    }
