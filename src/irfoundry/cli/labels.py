"""``irfoundry labels show RUN``: the evolved training labels of a point-supervised run, as images.

Reads the newest label snapshot of ``RUN/labels/`` (what the run trains on now; see
:attr:`irfoundry.methods.context.DataRequests.label_store`) and writes, per image, ``ID_label.png`` (the
label, 0-1 as 0-255 grey) and ``ID_overlay.png`` (the image in grey with the label in red and, when the run
trained on clicks, the clicks in green); for a run with a training pool (PAL) also ``pool.txt``, its members.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from irfoundry.errors import CheckpointError

_EPILOG = """examples:
  irfoundry labels show runs/acm_sirst427_lesps --out labels_png/
  irfoundry labels show runs/acm_sirst427_lesps --out labels_png/ --ids Misc_1,Misc_7 --snapshot 0003-epoch0009"""


def newest_snapshot(run: Path, name: str | None = None) -> Path:
    """``RUN/labels/NAME``, or the newest snapshot there."""
    folder = run / "labels"
    snaps = sorted(d for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
    if not snaps:
        raise CheckpointError(f"{run} holds no label snapshots (RUN/labels/): only methods that evolve labels "
                              "(lesps, ...) write them, after their first update")
    if name is None:
        return snaps[-1]
    chosen = folder / name
    if chosen not in snaps:
        raise CheckpointError(f"{run} has no label snapshot {name!r}; it has {', '.join(s.name for s in snaps)}")
    return chosen


def _training_images(run: Path) -> tuple[dict[str, Path], dict[str, list]]:
    """``({id: image path}, {id: clicks})`` of the run's training images, as its datamodule resolves them (a
    points file, ``derive:...`` clicks, a ``data.mix``)."""
    from irfoundry.data.dataset import load_norm_stats
    from irfoundry.data.labels import PointLabels
    from irfoundry.engine.config import from_dict
    from irfoundry.engine.datamodule import IRSTDDataModule

    cfg = from_dict(yaml.safe_load((run / "config.yaml").read_text()) or {})
    dm = IRSTDDataModule(cfg.data, 1, norm=load_norm_stats(run / "norm.json"))
    clicks = dm.labels.points if isinstance(dm.labels, PointLabels) else {}
    return {s.id: s.image for s in dm.train_samples}, clicks


def run_show(args: argparse.Namespace) -> int:
    from irfoundry.data.io import read_image
    from irfoundry.data.pool import POOL_FILE
    from irfoundry.data.store import PerImageStore

    run = Path(args.run)
    snap = newest_snapshot(run, args.snapshot)
    store = PerImageStore.open_saved(snap)
    images, clicks = _training_images(run)
    ids = args.ids.split(",") if args.ids else store.ids[: args.limit]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for sid in ids:
        label = store.full(sid)[0][0].numpy()
        name = sid.replace("/", "__")  # a mixed run's ids are dataset/id
        Image.fromarray(np.round(np.clip(label, 0, 1) * 255).astype(np.uint8)).save(out / f"{name}_label.png")
        grey = np.round(read_image(images[sid]) * 255).astype(np.uint8) if sid in images else np.zeros_like(label, np.uint8)
        rgb = np.stack([grey] * 3, axis=-1).astype(np.float32)
        rgb[..., 0] = np.maximum(rgb[..., 0], 255 * np.clip(label, 0, 1))
        for y, x in clicks.get(sid, []):
            rgb[y, x] = (0, 255, 0)
        Image.fromarray(rgb.astype(np.uint8)).save(out / f"{name}_overlay.png")
    pool = ""
    if (snap / POOL_FILE).is_file():  # an easy-to-hard run (PAL): which images it trains on
        members = json.loads((snap / POOL_FILE).read_text())["members"]
        (out / "pool.txt").write_text("".join(f"{m}\n" for m in members))
        pool = f"; training pool {len(members)} of them (pool.txt)"
    print(f"wrote {len(ids)} labels of snapshot {snap.name} ({len(store.ids)} images{pool}) to {out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    labels = subparsers.add_parser("labels", help="inspect the evolved labels of a point-supervised run",
                                   description=__doc__.split("\n\n")[0], epilog=_EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = labels.add_subparsers(dest="labels_command", metavar="{show}")
    sub.required = True
    show = sub.add_parser("show", help="write the labels and overlays of a run as PNGs", epilog=_EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("run", help="run folder")
    show.add_argument("--out", required=True, help="output folder")
    show.add_argument("--ids", default=None, help="comma-separated image ids (default: the first --limit)")
    show.add_argument("--limit", type=int, default=20, help="images when --ids is not given (default 20)")
    show.add_argument("--snapshot", default=None, help="snapshot name under RUN/labels (default: the newest)")
    show.set_defaults(func=run_show)
    return labels
