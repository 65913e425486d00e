"""``irfoundry bench predict``: the ``predict`` pipeline on a folder of frames against the network alone.

A folder of ``--frames`` PNG frames of ``--frame-size`` is written (mosaics of the SIRST images under
``../shared/data`` when present, shifted per frame, else synthetic images), then:

* ``model``: the network's own throughput on those frames: the frames read, normalised and batched
  beforehand (``--batch``), timed over :meth:`Predictor.batch_probabilities` only (forward + sigmoid);
* ``predict``: :func:`irfoundry.engine.predict.predict` on the folder, end to end: reading and decoding
  the PNGs, batching, the network, connected components, ``targets.jsonl`` and the ``--save`` PNGs.

``predict / model`` is the share of the network's throughput the pipeline keeps: reading and writing run
in threads beside the network, so it should stay close to 1 until I/O or post-processing outgrow the
network's time. Threads are stated (the I/O threads share the same cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from irfoundry.bench.tiling import frame_images, mosaic
from irfoundry.bench.train import machine_info
from irfoundry.errors import ConfigError
from irfoundry.jsonio import write_json

EPILOG = """examples:
  OMP_NUM_THREADS=2 irfoundry bench predict --model acm --frames 1000 --threads 2 --json predict.json
  irfoundry bench predict --checkpoint runs/acm/best.safetensors --frames 200 --save prob,mask,overlay
(seeded random weights flood the map with targets: measure post-processing with a trained --checkpoint)
"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default="acm", help="host with seeded random weights (default acm)")
    parser.add_argument("--checkpoint", default=None, help="weights file / run folder / .onnx instead of --model")
    parser.add_argument("--frames", type=int, default=1000, help="frames in the folder (default 1000)")
    parser.add_argument("--frame-size", default="256x256", help="WxH of every frame (default 256x256)")
    parser.add_argument("--batch", type=int, default=16, help="frames per forward pass (default 16)")
    parser.add_argument("--save", default="none", help="predict's --save (default none: targets.jsonl only)")
    parser.add_argument("--data", default=None, help="folder of source images (default: SIRST if present)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="OUT")
    return parser


def run(args: dict) -> dict[str, Any]:
    import torch
    from PIL import Image

    from irfoundry.data.io import read_image
    from irfoundry.engine.inference import Predictor
    from irfoundry.engine.predict import predict
    from irfoundry.models import create_model
    from irfoundry.models.checkpoint import save_weights

    a = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
    unknown = sorted(set(args) - set(a))
    if unknown:
        raise ConfigError(f"bench predict got unknown options {unknown}; known: {sorted(a)}")
    a.update(args)
    try:
        fw, fh = (int(v) for v in str(a["frame_size"]).lower().split("x"))
    except ValueError:
        raise ConfigError(f"--frame-size {a['frame_size']!r} is not WxH") from None
    if a["frames"] < a["batch"] or a["batch"] < 1:
        raise ConfigError("--frames must be at least --batch, and --batch at least 1")
    if a["threads"]:
        torch.set_num_threads(int(a["threads"]))
    save = [s for s in str(a["save"]).split(",") if s and s != "none"]
    images, source = frame_images(a["data"], a["seed"])
    with tempfile.TemporaryDirectory(prefix="irfoundry-bench-predict-") as tmp:
        folder = Path(tmp) / "frames"
        folder.mkdir()
        for i in range(a["frames"]):
            frame = mosaic(images[i % len(images):] + images[: i % len(images)], fh, fw)
            Image.fromarray(np.round(frame * 255).astype(np.uint8)).save(folder / f"frame_{i:05d}.png")
        checkpoint = a["checkpoint"]
        if checkpoint is None:
            torch.manual_seed(a["seed"])
            checkpoint = save_weights(create_model(a["model"]), Path(tmp) / "host.safetensors",
                                      extra={"norm": {"mean": 0.4, "std": 0.15}})
        predictor, meta = Predictor.from_checkpoint(checkpoint)
        # the network alone: frames read and batched beforehand
        paths = sorted(folder.iterdir())
        batches = [predictor.collate([{"image": predictor.normalise(read_image(p))} for p in paths[i : i + a["batch"]]])
                   for i in range(0, len(paths), a["batch"])]
        predictor.batch_probabilities(batches[0])  # warm-up
        t0 = time.perf_counter()
        for b in batches:
            predictor.batch_probabilities(b)
        model_s = time.perf_counter() - t0
        del batches
        predict(checkpoint, [paths[0]], Path(tmp) / "warm", save=save)  # warm-up (imports, allocator)
        result = predict(checkpoint, [folder], Path(tmp) / "out", batch=a["batch"], save=save)
    model_fps = a["frames"] / model_s
    out = {"machine": machine_info(),
           "settings": {k: a[k] for k in ("frames", "frame_size", "batch", "save", "seed")} | {"data": source,
                                                                                             "model": meta.get("model_name")},
           "model_frames_per_s": model_fps, "predict_frames_per_s": result["frames_per_s"],
           "predict_over_model": result["frames_per_s"] / model_fps, "predict_seconds": result["seconds"],
           "model_seconds": model_s, "backend": result["backend"], "targets_per_frame": result["targets"] / a["frames"],
           "weights": str(a["checkpoint"]) if a["checkpoint"] else "seeded random"}
    if a["json"]:
        out["json"] = str(write_json(out, a["json"]))
    return out


def format_table(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = [f"{s['frames']} frames {s['frame_size']} ({s['data']}), {s['model']}, batch {s['batch']}, save "
             f"{s['save']}, backend {result['backend']}, weights {result['weights']}; {m['cpu']}, torch {m['torch']} with "
             f"{m['torch_threads']} threads",
             f"targets per frame: {result['targets_per_frame']:.1f} (post-processing grows with them)",
             f"network alone: {result['model_frames_per_s']:.1f} frames/s ({result['model_seconds']:.1f} s)",
             f"predict:       {result['predict_frames_per_s']:.1f} frames/s ({result['predict_seconds']:.1f} s)",
             f"predict / network: {result['predict_over_model']:.2f}"]
    if result.get("json"):
        lines.append(f"results: {result['json']}")
    return "\n".join(lines)
