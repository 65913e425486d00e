"""``irfoundry predict | export``: thin shells around :mod:`irfoundry.engine.predict` and
:mod:`irfoundry.engine.export`.

``predict`` exits 0 when every frame was predicted, 3 when it finished but skipped unreadable frames (each
one named in ``targets.jsonl`` and on stderr), 1 on an error (with ``--strict``: the first unreadable frame).
"""

from __future__ import annotations

import argparse
import sys

from irfoundry.cli.engine import RAW, _add_norm_flag, _add_threads_flag
from irfoundry.jsonio import dumps as json_dumps

#: exit status of a prediction that finished but skipped frames
EXIT_SKIPPED = 3

PREDICT_EPILOG = """examples:
  irfoundry predict --checkpoint runs/acm_sirst images/*.png --out preds
  irfoundry predict --checkpoint acm.onnx ../shared/data/sirst/images --out preds --batch 16
  irfoundry predict --checkpoint acm.onnx flight.mp4 --out preds --overlay-video overlay.mp4
  irfoundry predict --checkpoint acm.safetensors big_frames/ --tile 512 --tile-overlap 64 --out preds
  ffmpeg -i cam.mp4 -f rawvideo -pix_fmt gray - | irfoundry predict --checkpoint acm.onnx - --frame-size 640x512 --out p

Writes OUT/targets.jsonl: one JSON line per frame (frame, source, position in a video / stream, name, size,
targets with centroid [y, x], bbox [y0, x0, y1, x1], area and peak score), flushed as it goes; per still
image ID_prob.png (8-bit, value = round(255 p)), ID_mask.png and ID_overlay.png (--save chooses; video and
stdin inputs write none unless asked). An unreadable frame is reported and skipped (exit status 3), or
stops the run with --strict (exit status 1). A .onnx checkpoint runs on ONNX Runtime (--backend onnx).
"""

EXPORT_EPILOG = """examples:
  irfoundry export --checkpoint runs/acm_sirst427_fdep --out acm_fdep.safetensors
  irfoundry export --checkpoint runs/acm_sirst427_fdep --which last --out acm_last.safetensors --overwrite
  irfoundry export --checkpoint runs/acm_sirst427 --format onnx --out acm.onnx --threshold 0.5

Writes the deployable network alone (for FDEP: the host, no SAMF, no foundation model) as OUT.safetensors
plus OUT.json (model name and arguments, train-split normalisation, provenance of the run), or with
--format onnx one OUT.onnx (dynamic batch, height and width; normalisation, input multiple, padding policy
and threshold in its metadata; refused unless ONNX Runtime matches PyTorch within 1e-4). Its parameters
and MACs are printed; they equal the plain host's. predict / eval accept the file.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="detect targets in images, folders, videos or a raw stdin stream",
                       description="Run a checkpoint or an exported ONNX model on frames.", epilog=PREDICT_EPILOG,
                       formatter_class=RAW)
    p.add_argument("--checkpoint", required=True, help=".safetensors file, run folder or exported .onnx file")
    p.add_argument("inputs", nargs="+", help="images, videos, folders, glob patterns, or - (raw frames on stdin)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threshold", type=float, default=None,
                   help="probability threshold (default: the exported model's, else 0.5)")
    p.add_argument("--backend", choices=("torch", "onnx"), default=None,
                   help="torch (PyTorch eager) or onnx (ONNX Runtime; needs a .onnx file); default from the suffix")
    p.add_argument("--batch", type=int, default=8, help="frames per forward pass (default 8)")
    p.add_argument("--tile", type=int, default=None, metavar="PIXELS",
                   help="predict frames larger than PIXELS (after padding) by overlapping tiles of that side")
    p.add_argument("--tile-overlap", type=int, default=64, help="pixels shared by neighbouring tiles (default 64)")
    p.add_argument("--tile-blend", choices=("crop", "linear"), default="crop",
                   help="crop: each pixel from the tile it lies deepest in (default); linear: ramped weights")
    p.add_argument("--save", default=None, metavar="LIST",
                   help="per-frame PNGs: comma list of prob,mask,overlay, or none (default: all for images, "
                        "none for video / stdin)")
    p.add_argument("--overlay-video", default=None, metavar="FILE", help="also write overlays as a video in OUT")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of --overlay-video (default 25)")
    p.add_argument("--frame-size", default=None, metavar="WxH", help="size of raw stdin frames, e.g. 640x512")
    p.add_argument("--pixel-format", choices=("gray", "gray16le"), default="gray", help="raw stdin pixel format")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable frame instead of skipping it")
    _add_norm_flag(p)
    _add_threads_flag(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write the deployable network of a run alone (safetensors or ONNX)",
                       description="Export the network that ships (the host alone) from a run or weights file.",
                       epilog=EXPORT_EPILOG, formatter_class=RAW)
    p.add_argument("--checkpoint", required=True, help="run folder or .safetensors file")
    p.add_argument("--out", required=True, help="output path (.safetensors or .onnx)")
    p.add_argument("--format", choices=("safetensors", "onnx"), default=None,
                   help="default: from --out's suffix (.onnx), else safetensors")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="checkpoint of a run folder (default best, selected on validation; falls back to last)")
    p.add_argument("--threshold", type=float, default=0.5, help="detection threshold stored with the model")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                   help="ONNX graph writer of PyTorch (default torchscript)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    _add_norm_flag(p)
    p.set_defaults(func=cmd_export)


def cmd_predict(args: argparse.Namespace) -> int:
    from irfoundry.deploy.frames import parse_frame_size
    from irfoundry.deploy.tiling import TileSettings
    from irfoundry.engine.predict import predict
    from irfoundry.threads import use_threads

    use_threads(args.threads)
    save = None if args.save is None else [s for s in args.save.split(",") if s and s != "none"]
    tile = None if args.tile is None else TileSettings(args.tile, args.tile_overlap, args.tile_blend, args.batch)
    result = predict(args.checkpoint, args.inputs, args.out, threshold=args.threshold, norm=args.norm,
                     backend=args.backend, batch=args.batch, tile=tile, save=save, overlay_video=args.overlay_video,
                     fps=args.fps, frame_size=parse_frame_size(args.frame_size), pixel_format=args.pixel_format,
                     strict=args.strict)
    print(f"predicted {result['frames']} frame(s), {result['targets']} target(s) in {result['seconds']} s "
          f"({result['frames_per_s']} frames/s, {result['backend']}) -> {result['out']}/targets.jsonl")
    if result["skipped"]:
        print(f"irfoundry: skipped {len(result['skipped'])} unreadable frame(s), listed in "
              f"{result['out']}/targets.jsonl", file=sys.stderr)
        return EXIT_SKIPPED
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from irfoundry.engine.export import export

    fmt = args.format or ("onnx" if str(args.out).lower().endswith(".onnx") else "safetensors")
    result = export(args.checkpoint, args.out, which=args.which, overwrite=args.overwrite, norm=args.norm,
                    format=fmt, threshold=args.threshold, exporter=args.exporter)
    print(json_dumps(result))
    return 0
