"""``tiny_config``: the smallest run config on the ``tiny_synth`` dataset (a fixture of tests/conftest.py)."""


def tiny_config(root, out_dir, run_name="run", **trainer):
    return {
        "data": {"root": str(root), "crop_size": 64, "seed": 0},
        "model": {"name": "unet_tiny", "kwargs": {"base": 4}},
        "method": {"name": "supervised", "loss": "softiou+bce"},
        "optim": {"optimizer": "adam", "lr": 1e-2},
        "trainer": {"max_epochs": 2, "batch_size": 4, "out_dir": str(out_dir), "run_name": run_name,
                    "progress_bar": False, "log_every_n_steps": 1, **trainer},
    }
