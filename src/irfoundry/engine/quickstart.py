"""The README's main job: dataset -> train -> evaluate on test -> predict, in a few CPU minutes."""

from __future__ import annotations

from pathlib import Path

from irfoundry.data import DatasetSpec, write_synthetic_dataset
from irfoundry.errors import ConfigError
from irfoundry.engine.config import from_dict
from irfoundry.engine.evaluate import evaluate
from irfoundry.engine.predict import predict
from irfoundry.engine.metrics_text import format_metrics
from irfoundry.engine.train import train
from irfoundry.jsonio import dumps as json_dumps


#: epochs of the default run, sized for about 3 minutes on an idle 2-core CPU with one thread (README)
QUICKSTART_EPOCHS = 25


def quickstart(data: str | None = None, epochs: int = QUICKSTART_EPOCHS, model: str = "unet_tiny",
               out: str = "quickstart", threads: int | None = 1) -> dict:
    """Run the whole pipeline and print where everything went.

    With ``data=None`` a deterministic synthetic dataset (SIRST layout) is generated into ``out/data``
    (reused if already there). Training is a fixed, seeded amount: ``epochs`` epochs of 128-px crops, Adam
    5e-3 (SoftIoU + BCE), one torch thread by default, so the numbers are the same whatever else the machine
    is doing (a wall-clock budget gave a loaded machine 2 epochs and IoU 0.75 %). The checkpoint is selected
    on the validation split and scored on the test split.
    """
    if epochs < 1:
        raise ConfigError(f"quickstart --epochs must be positive, got {epochs}")
    out = Path(out)
    if data is None:
        data_dir = out / "data"
        if not (data_dir / "images").is_dir():
            print(f"generating the synthetic dataset in {data_dir} ...")
            write_synthetic_dataset(data_dir, n=200, size=256, seed=0)
        data = str(data_dir)
    runs = out / "runs"
    run_name = f"{model}_{Path(data).name}"
    n = 1
    while (runs / run_name).exists():
        n += 1
        run_name = f"{model}_{Path(data).name}_{n}"
    cfg = from_dict(
        {
            "data": {"root": data, "train_split": "train", "test_split": "test", "crop_size": 128,
                     "target_crop_prob": 0.7},
            "model": {"name": model, "init_prob": 0.01},  # no all-background phase on slow or loaded machines
            "method": {"name": "supervised", "loss": "softiou+bce"},
            "optim": {"optimizer": "adam", "lr": 5e-3},
            "trainer": {"max_epochs": epochs, "batch_size": 8, "val_every": 5, "out_dir": str(runs),
                        "run_name": run_name, "log_every_n_steps": 5, "threads": threads},
        }
    )
    print(f"training {model} on {data} for {epochs} epochs (selected on the validation split) ...", flush=True)
    result = train(cfg)
    run_dir = Path(result["run_dir"])
    metrics = evaluate(run_dir, DatasetSpec(data, "test"), split=None, out=run_dir / "eval_test")
    test_ids = DatasetSpec(data, "test").ids()[:4]
    images = [s.image for s in DatasetSpec(data, "test").resolve() if s.id in set(test_ids)]
    pred = predict(run_dir, images, run_dir / "predictions")
    summary = {
        "dataset": str(data),
        "run_dir": str(run_dir),
        "epochs": result["epochs"],
        "best_epoch": result["best_epoch"],
        "best_val_iou": result["best_score"],
        "test_metrics": {k: metrics[k] for k in ("iou", "niou", "pd", "fa", "n_images")},
        "metrics_json": str(run_dir / "eval_test" / "metrics.json"),
        "predictions": pred["out"],
        "weights": result["best"],
    }
    print(json_dumps(summary))
    print(f"\ntest split: {format_metrics(metrics)}\nweights: {summary['weights']}\npredictions: {summary['predictions']}")
    return summary
