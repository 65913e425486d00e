"""``irfoundry data ...``: the ``synth``, ``check``, ``points`` and ``clusters`` subcommands.

The lead's ``irfoundry.cli`` calls :func:`add_parser` with its subparsers; each subcommand sets
``func(args) -> int`` (the exit status).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from irfoundry.data.check import check_dataset
from irfoundry.data.synth import write_synthetic_dataset
from irfoundry.errors import DataError

_SYNTH_EPILOG = """examples:
  irfoundry data synth --out data/synth                 # 200 images, about 256 px, seed 0
  irfoundry data synth --out /tmp/tiny --n 20 --size 64 --seed 3

Writes SIRST v1 layout: images/Misc_N.png, masks/Misc_N_pixels0.png, idx_427/{train,val,test,trainval}.txt
(60/20/20 %). The same --n/--size/--seed give byte-identical files."""

_CHECK_EPILOG = """examples:
  irfoundry data check ../shared/data/sirst                       # every split of idx_427 and idx_320
  irfoundry data check ../shared/data/sirst:test                  # one split (or --split test)
  irfoundry data check ../shared/data/nudt_sirst --split 50_50/train
  irfoundry data check data/NUAA --split /path/to/train.txt       # split file by path

Exit status 0 when there are no errors (warnings such as a rescaled mask are allowed), 1 otherwise."""


_POINTS_EPILOG = """examples:
  irfoundry data points ../shared/data/sirst --split trainval --kind centroid --out points/sirst_centroid.csv
  irfoundry data points ../shared/data/nudt_sirst:50_50/train --kind coarse --seed 1 --out nudt_coarse.json

centroid: floor of each 8-connected target's centroid (LESPS centroid_anno.m); coarse: the centroid moved by
N(0, 1/4) x half the target's box, redrawn until it falls on a target (LESPS coarse_anno.m); the seed fixes
the draws of each image. The file (CSV 'id,x,y', or JSON for background-only images too) is what
data.labels: points with data.points: FILE trains on; see irfoundry.data.point_files for the format."""


def run_points(args: argparse.Namespace) -> int:
    """``irfoundry data points``: derive point labels from a dataset's masks and write them; returns 0."""
    from irfoundry.data.dataset import DatasetSpec
    from irfoundry.data.point_files import derive_point_table, write_points

    spec = DatasetSpec.parse(args.dataset)
    if args.split is not None:
        spec = DatasetSpec(spec.root, args.split)
    samples = spec.resolve()
    table, counts = derive_point_table(samples, args.kind, args.seed)
    empty = [i for i, pts in table.items() if not pts]
    if empty and str(args.out).lower().endswith(".csv"):
        raise DataError(f"{len(empty)} image(s) of {spec} have no target (e.g. {empty[:3]}) and a CSV cannot list "
                        f"an image without clicks (training would refuse them as unlabelled); write --out "
                        f"{Path(args.out).with_suffix('.json')} instead")
    out = write_points(table, args.out)
    seed = f", seed {args.seed}" if args.kind == "coarse" else ""
    print(f"wrote {counts['targets']} {args.kind} points of {counts['images']} images ({spec}{seed}) to {out}")
    if counts["off_target"]:
        print(f"note: {counts['off_target']} centroid points lie beside their (non-convex) target, as LESPS' rule "
              "puts them")
    return 0


_CLUSTERS_EPILOG = """examples:
  irfoundry data clusters ../shared/data/sirst:train --k 16 --out runs/clusters_sirst.json --table stats.csv
  irfoundry data clusters ../shared/data/nudt_sirst:50_50/train --k 64 --out nudt_clusters.json \\
      --assign ../shared/data/nudt_sirst:50_50/test

Fits semantic-prior KD's image clusters (55 grey-level statistics -> filter -> standardise -> PCA 90 % ->
KMeans, twice, the second time on the 32 statistics most informative about the first clusters) on the
given (training) images only, and writes the fitted model as JSON. --assign places the images of other
splits at the nearest centre without refitting; --table writes every image's statistics and cluster."""


def run_clusters(args: argparse.Namespace) -> int:
    """``irfoundry data clusters``: fit clusters on a split, write them, optionally assign other splits."""
    import csv

    import numpy as np

    from irfoundry.data.clusters import ClusterSettings, fit_clusters, statistics_table
    from irfoundry.data.dataset import DatasetSpec
    from irfoundry.data.image_stats import FEATURE_NAMES

    def spec_of(text: str, split: str | None) -> DatasetSpec:
        spec = DatasetSpec.parse(text)
        return DatasetSpec(spec.root, split) if split is not None else spec

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise DataError(f"{out} already exists; choose another --out or pass --overwrite (nothing was written)")
    others = [spec_of(a, None) for a in args.assign]
    fit_spec = spec_of(args.dataset, args.split)
    t0 = time.perf_counter()
    ids, table = statistics_table(fit_spec.resolve())
    model = fit_clusters(ids, table, FEATURE_NAMES, ClusterSettings(k=args.k, top_features=args.top_features))
    rows = [(str(fit_spec), i, int(c), t) for i, c, t in zip(ids, model.train_labels, table)]
    for spec in others:
        o_ids, o_table = statistics_table(spec.resolve())
        rows += [(str(spec), i, int(c), t) for i, c, t in zip(o_ids, model.assign(o_table, FEATURE_NAMES), o_table)]
    model.save(out)
    sizes = np.bincount(model.train_labels, minlength=model.k)
    print(f"fitted {model.k} clusters on {len(ids)} images of {fit_spec} ({len(model.columns)} statistics kept, "
          f"{model.pca_components.shape[0]} PCA components) in {time.perf_counter() - t0:.1f} s -> {out}")
    print(f"cluster sizes: min {sizes.min()}, median {int(np.median(sizes))}, max {sizes.max()}; "
          f"{int((sizes == 0).sum())} empty")
    for spec in others:
        assigned = np.array([c for s, _, c, _ in rows if s == str(spec)])
        print(f"{spec}: {len(assigned)} images assigned to {len(np.unique(assigned))} clusters")
    if args.table:
        with open(args.table, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["split", "id", "cluster", *FEATURE_NAMES])
            for s, i, c, t in rows:
                w.writerow([s, i, c, *(f"{v:.7g}" for v in t)])
        print(f"wrote the statistics and clusters of {len(rows)} images to {args.table}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    """``irfoundry data synth``: write the synthetic dataset; returns 0."""
    t0 = time.perf_counter()
    out = write_synthetic_dataset(args.out, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote {args.n} synthetic samples (size ~{args.size}, seed {args.seed}) to {out} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """``irfoundry data check``: print the report; returns 0 when clean, 1 when there are errors."""
    report = check_dataset(args.path, split=args.split, count_targets=not args.no_targets)
    print(report.format())
    return 0 if report.ok else 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``data`` with subcommands ``synth``, ``check`` and ``points`` on an argparse subparsers object."""
    data = subparsers.add_parser(
        "data",
        help="datasets: generate synthetic data, validate a dataset",
        description="Dataset tools. Dataset paths are PATH, PATH:SPLIT or PATH:/path/to/split.txt.",
        epilog="examples:\n  irfoundry data synth --out synth_sirst\n  irfoundry data check ../shared/data/sirst\n"
        "  irfoundry data check ../shared/data/sirst:../shared/data/splits/basicirstd/NUAA-SIRST/test.txt\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = data.add_subparsers(dest="data_command", metavar="{synth,check,points,clusters}")
    sub.required = True

    synth = sub.add_parser(
        "synth",
        help="write a deterministic synthetic IRSTD dataset (SIRST v1 layout)",
        description="Write a deterministic synthetic IRSTD dataset in SIRST v1 layout.",
        epilog=_SYNTH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synth.add_argument("--out", required=True, help="output folder (absent or empty)")
    synth.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    synth.add_argument(
        "--size", type=int, default=256, help="nominal image side in px; sides vary 0.625-1.25x (default 256)"
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.set_defaults(func=run_synth)

    check = sub.add_parser(
        "check",
        help="validate a dataset and report every problem with its file",
        description="Validate a dataset: unreadable images, missing or wrong-size masks, non-binary masks, "
        "split ids without files, empty splits, duplicate ids; print a summary.",
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("path", help="dataset folder, optionally PATH:SPLIT or PATH:/path/split.txt")
    check.add_argument("--split", default=None, help="split name (train, test, 50_50/test, ...) or split-file path; "
                       "default: every split of the layout")
    check.add_argument("--no-targets", action="store_true", help="skip target statistics (faster)")
    check.set_defaults(func=run_check)

    points = sub.add_parser(
        "points",
        help="derive point labels (one click per target) from a dataset's masks, as LESPS does",
        description="Derive point labels from masks: centroid or coarse points (LESPS' rules), one per "
        "8-connected target, written as CSV or JSON.",
        epilog=_POINTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    points.add_argument("dataset", help="dataset folder, PATH:SPLIT or PATH:/path/split.txt")
    points.add_argument("--split", default=None, help="split name or split file (default: the one in DATASET, "
                        "else every image)")
    points.add_argument("--kind", choices=("centroid", "coarse"), default="centroid", help="default: centroid")
    points.add_argument("--seed", type=int, default=0, help="seed of the coarse draws (default 0)")
    points.add_argument("--out", required=True, help="output .csv or .json")
    points.set_defaults(func=run_points)

    clusters = sub.add_parser(
        "clusters",
        help="fit semantic-prior KD's image clusters on training images; assign other splits",
        description="Fit the image clusters of semantic-prior KD on one split's images only and save them.",
        epilog=_CLUSTERS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    clusters.add_argument("dataset", help="dataset folder, PATH:SPLIT or PATH:/path/split.txt (the fitted images)")
    clusters.add_argument("--split", default=None, help="split to fit on (default: the one in DATASET)")
    clusters.add_argument("--k", type=int, default=256, help="clusters (default 256, the released value; at most "
                          "the number of images)")
    clusters.add_argument("--top-features", type=int, default=32, help="statistics kept for the second fit (32)")
    clusters.add_argument("--assign", action="append", default=[], metavar="PATH:SPLIT",
                          help="also assign this split's images to the nearest centre (repeatable)")
    clusters.add_argument("--table", default=None, metavar="CSV", help="write every image's statistics and cluster")
    clusters.add_argument("--out", required=True, help="output .json (the fitted clusters)")
    clusters.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    clusters.set_defaults(func=run_clusters)
    return data
