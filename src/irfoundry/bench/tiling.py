"""``irfoundry bench tiling``: what tiled inference costs and changes, per host, on a 1280 x 1024 frame.

The frame is a mosaic of real images (``--data``: a folder of images, default the SIRST images under
``../shared/data`` when present, else the synthetic dataset), normalised with the checkpoint's statistics.
Per host (``--checkpoints``: trained weights; else seeded random weights, said so in the output):

* ``whole``: one whole-frame pass (:meth:`Predictor.predict`), the reference;
* ``tiled``: :func:`irfoundry.deploy.tiling.tiled_probabilities` with ``--tile`` / ``--overlap`` / ``--blend``;
* ``tiles_batch``: the same tiles, cut beforehand, as one batch through the same path: the network's cost
  of those pixels; ``tiled / tiles_batch`` is the overhead of tiling itself (cutting, batching, blending);
* the difference of the tiled map from the whole-frame one: max and mean |dp|, and the pixels whose mask at
  0.5 changes. Exact (up to float rounding) only for a host without global context whose receptive field
  fits in half the overlap; hosts with global pooling / attention, or align-corners upsampling (MLCL-Net),
  see each tile's own statistics or grid.

Times are medians of ``--repeats`` calls after one warm-up; threads are stated.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from irfoundry.bench.train import machine_info, resolve_models
from irfoundry.errors import ConfigError
from irfoundry.jsonio import write_json

EPILOG = """examples:
  OMP_NUM_THREADS=2 irfoundry bench tiling --threads 2 --models dnanet --json tiling.json
  irfoundry bench tiling --models acm,alcnet --checkpoints runs/acm/best.safetensors,runs/alcnet/best.safetensors
"""

DEFAULT_DATA = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "sirst" / "images").resolve()


def mosaic(images: list[np.ndarray], height: int = 1024, width: int = 1280) -> np.ndarray:
    """``float32 height x width``: ``images`` placed row by row, repeating, cropped at the right / bottom."""
    out = np.zeros((height, width), dtype=np.float32)
    y = k = 0
    while y < height:
        x = row = 0
        while x < width:
            im = images[k % len(images)]
            k += 1
            h, w = min(im.shape[0], height - y), min(im.shape[1], width - x)
            out[y : y + h, x : x + w] = im[:h, :w]
            x, row = x + w, max(row, h)
        y += row
    return out


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--models", default="all", help="comma-separated hosts, or 'all' (every host but unet_tiny)")
    parser.add_argument("--checkpoints", default=None,
                        help="comma-separated weights files / run folders, one per --models entry (default: seeded "
                             "random weights)")
    parser.add_argument("--data", default=None, help="folder of images for the mosaic (default: SIRST if present)")
    parser.add_argument("--frame", default="1280x1024", help="frame size WxH (default 1280x1024)")
    parser.add_argument("--tile", type=int, default=512, help="tile side (default 512)")
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap (default 64)")
    parser.add_argument("--blend", default="crop", choices=("crop", "linear"))
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="OUT")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return parser


def frame_images(data: str | None, seed: int) -> tuple[list[np.ndarray], str]:
    from irfoundry.data.io import read_image
    from irfoundry.deploy.frames import IMAGE_SUFFIXES

    folder = Path(data) if data else DEFAULT_DATA
    if not folder.is_dir():
        if data:
            raise ConfigError(f"--data {data} is not a folder of images")
        from irfoundry.data.synth import synth_sample

        rng = np.random.default_rng(seed)
        return [synth_sample(rng)[0] for _ in range(12)], "synthetic"
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:40]
    if not paths:
        raise ConfigError(f"--data {folder} holds no images")
    return [read_image(p) for p in paths], str(folder)


def _median(fn, repeats: int) -> tuple[float, Any]:
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def bench_host(predictor, frame: np.ndarray, settings, repeats: int) -> dict:
    import torch

    from irfoundry.deploy.tiling import tile_grid, tiled_probabilities

    t_whole, whole = _median(lambda: predictor.predict(frame), repeats)
    t_tiled, tiled = _median(lambda: tiled_probabilities(predictor, frame, settings), repeats)
    h, w = frame.shape
    canvas, ys, xs, (th, tw) = tile_grid(predictor, frame, settings)
    boxes = [(y, x) for y in ys for x in xs]
    tiles = torch.stack([canvas[:, y : y + th, x : x + tw] for y, x in boxes])
    t_batch, _ = _median(lambda: predictor.batch_probabilities({"image": tiles, "box": [(0, 0, th, tw)] * len(boxes)}),
                         repeats)
    diff = np.abs(tiled.astype(np.float64) - whole)
    changed = int(((tiled > 0.5) != (whole > 0.5)).sum())
    return {"tiles": len(boxes), "tile_pixels_over_frame": len(boxes) * th * tw / (h * w),
            "whole_s": t_whole, "tiled_s": t_tiled, "tiles_batch_s": t_batch, "tiled_over_tiles_batch": t_tiled / t_batch,
            "tiled_over_whole": t_tiled / t_whole, "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "mask_pixels_changed": changed, "mask_pixels_whole": int((whole > 0.5).sum())}


def run(args: dict) -> dict[str, Any]:
    import torch

    from irfoundry.deploy.tiling import TileSettings
    from irfoundry.engine.inference import Predictor
    from irfoundry.models import create_model

    a = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
    unknown = sorted(set(args) - set(a))
    if unknown:
        raise ConfigError(f"bench tiling got unknown options {unknown}; known: {sorted(a)}")
    a.update(args)
    models = resolve_models(a["models"])
    checkpoints = [c for c in str(a["checkpoints"]).split(",") if c] if a["checkpoints"] else [None] * len(models)
    if len(checkpoints) != len(models):
        raise ConfigError(f"--checkpoints lists {len(checkpoints)} files for {len(models)} --models")
    try:
        fw, fh = (int(v) for v in str(a["frame"]).lower().split("x"))
    except ValueError:
        raise ConfigError(f"--frame {a['frame']!r} is not WxH") from None
    if a["threads"]:
        torch.set_num_threads(int(a["threads"]))
    settings = TileSettings(a["tile"], a["overlap"], a["blend"], batch=64)
    images, source = frame_images(a["data"], a["seed"])
    frame = mosaic(images, fh, fw)
    rows = []
    for name, ckpt in zip(models, checkpoints):
        if ckpt:
            predictor, meta = Predictor.from_checkpoint(ckpt)
            if meta.get("model_name") != name:
                raise ConfigError(f"--checkpoints: {ckpt} holds {meta.get('model_name')}, not {name}")
        else:
            torch.manual_seed(a["seed"])
            predictor = Predictor(create_model(name).eval(), norm={"mean": float(frame.mean()), "std": float(frame.std())})
        with torch.inference_mode():
            rows.append({"model": name, "weights": ckpt or "seeded random", **bench_host(predictor, frame, settings,
                                                                                          a["repeats"])})
    result = {"machine": machine_info(), "settings": {"frame": f"{fw}x{fh}", "tile": a["tile"], "overlap": a["overlap"],
                                                      "blend": a["blend"], "repeats": a["repeats"], "data": source},
              "results": rows}
    if a["json"]:
        result["json"] = str(write_json(result, a["json"]))
    return result


def _cells(r: dict) -> list[str]:
    return [r["model"], Path(r["weights"]).parent.name if r["weights"] != "seeded random" else "random",
            str(r["tiles"]), f"{r['tile_pixels_over_frame']:.2f}", f"{r['whole_s']:.2f}", f"{r['tiled_s']:.2f}",
            f"{r['tiles_batch_s']:.2f}", f"{r['tiled_over_tiles_batch']:.2f}", f"{r['max_abs_diff']:.2e}",
            f"{r['mean_abs_diff']:.2e}", f"{r['mask_pixels_changed']} / {r['mask_pixels_whole']}"]


HEAD = ["host", "weights", "tiles", "tile px / frame", "whole s", "tiled s", "tiles as 1 batch s", "tiled / batch",
        "max |dp|", "mean |dp|", "mask px changed / whole"]


def _title(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    return (f"{s['frame']} frame of {s['data']} images, tile {s['tile']} overlap {s['overlap']} blend {s['blend']}, "
            f"median of {s['repeats']}; {m['cpu']}, torch {m['torch']} with {m['torch_threads']} threads")


def format_table(result: dict) -> str:
    lines = [_title(result), "  ".join(HEAD)]
    lines += ["  ".join(_cells(r)) for r in result["results"]]
    if result.get("json"):
        lines.append(f"results: {result['json']}")
    return "\n".join(lines)


def format_markdown(result: dict) -> str:
    lines = [f"_{_title(result)}_", "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in result["results"]]
    return "\n".join(lines)
