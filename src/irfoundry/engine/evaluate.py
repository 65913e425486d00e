"""Evaluate a checkpoint on a dataset split at native resolution; write ``metrics.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from irfoundry.data import DatasetSpec
from irfoundry.engine.datamodule import eval_loader
from irfoundry.engine.metrics import build_eval_metrics
from irfoundry.engine.runs import load_checkpoint
from irfoundry.errors import DataError


@torch.no_grad()
def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    split: str | None = "test",
    out: str | Path | None = None,
    threshold: float = 0.5,
    device: str = "cpu",
    batch_size: int = 1,
) -> dict:
    """Score ``checkpoint`` (file or run folder) on ``data`` (``PATH`` or ``PATH:SPLIT``).

    Images are padded to a multiple of 32 and the output is cropped back: never resized.

    Returns (and writes to ``out/metrics.json`` when ``out`` is given) a dict with ``iou``, ``niou``,
    ``pd``, ``fa`` (fractions; ``fa`` x 1e6 is the usual printed value), the threshold, dataset, split,
    image count, checkpoint and the metric definition version.
    """
    spec = DatasetSpec.parse(data)
    if split is not None and spec.split is None:
        spec = DatasetSpec(spec.root, split)
    if spec.split is None:
        raise DataError(f"no split given for {spec.root}; pass --split NAME (e.g. test) or PATH:SPLIT")
    model, meta = load_checkpoint(checkpoint)
    model = model.to(device).eval()
    metric = build_eval_metrics(threshold)
    loader = eval_loader(spec, meta["norm"], batch_size=batch_size)
    t0 = time.perf_counter()
    for batch in loader:
        logits = model(batch["image"].to(device))
        logits = logits if isinstance(logits, torch.Tensor) else logits[0]
        metric.update_padded(logits.float().cpu(), batch["mask"], batch["size"])
    values = {k: float(v) for k, v in metric.compute().items()}
    result = {
        **values,
        "threshold": threshold,
        "dataset": str(spec.root),
        "split": spec.split,
        "n_images": len(loader.dataset),
        "checkpoint": meta["file"],
        "model": meta.get("model_name"),
        "definition": metric.definition,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if meta.get("norm_source"):
        result["norm_source"] = meta["norm_source"]
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result
