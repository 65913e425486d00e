"""``irfoundry data ...``: the ``synth`` and ``check`` subcommands.

The lead's ``irfoundry.cli`` calls :func:`add_parser` with its subparsers; each subcommand sets
``func(args) -> int`` (the exit status).
"""

from __future__ import annotations

import argparse
import time

from irfoundry.data.check import check_dataset
from irfoundry.data.synth import write_synthetic_dataset

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
    """Register ``data`` with subcommands ``synth`` and ``check`` on an argparse subparsers object."""
    data = subparsers.add_parser(
        "data",
        help="datasets: generate synthetic data, validate a dataset",
        description="Dataset tools. Dataset paths are PATH, PATH:SPLIT or PATH:/path/to/split.txt.",
        epilog="examples:\n  irfoundry data synth --out synth_sirst\n  irfoundry data check ../shared/data/sirst\n"
        "  irfoundry data check ../shared/data/sirst:../shared/data/splits/basicirstd/NUAA-SIRST/test.txt\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = data.add_subparsers(dest="data_command", metavar="{synth,check}")
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
    return data
