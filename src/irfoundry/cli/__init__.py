"""The ``irfoundry`` command: a thin shell around importable functions.

Exit codes: 0 success, 1 error (bad input: the message names the file or key and the fix),
2 usage error (argparse), 3 ``predict`` finished but skipped unreadable frames, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from irfoundry import __version__
from irfoundry.errors import IRFoundryError, TrainingInterrupted

EPILOG = """examples:
  irfoundry quickstart                            # the main job: synthetic data -> train -> eval -> predict
  irfoundry train cpu/acm_sirst427 --set trainer.max_epochs=50   # a named run; irfoundry configs lists them
  irfoundry eval --checkpoint runs/RUN --data ../shared/data/sirst --split test --out eval/
  irfoundry predict --checkpoint runs/RUN images/ --out preds/
  irfoundry export --checkpoint runs/RUN --format onnx --out model.onnx   # ONNX Runtime: predict --backend onnx
  irfoundry data synth --out synth_sirst          # embedded default dataset (SIRST layout)
  irfoundry data check ../shared/data/sirst       # validate a dataset, list every problem
  irfoundry models                                # host networks with params and MACs
  irfoundry models import ACM_400.pth.tar --model acm --out acm.safetensors
  irfoundry bench train                           # images/s of every host (training step, inference)
  irfoundry study run fdep_gain --out gain.json   # seeds x datasets x hosts x arms, paired comparisons
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irfoundry",
        description="Infrared small-target detection toolkit: datasets, host networks, foundation-model teaching.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"irfoundry {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from irfoundry.cli import bench as bench_cli
    from irfoundry.cli import data as data_cli
    from irfoundry.cli import deploy as deploy_cli
    from irfoundry.cli import engine as engine_cli
    from irfoundry.cli import labels as labels_cli
    from irfoundry.cli import models as models_cli
    from irfoundry.cli import study as study_cli

    engine_cli.add_parsers(sub)
    deploy_cli.add_parsers(sub)
    data_cli.add_parser(sub)
    labels_cli.add_parser(sub)
    models_cli.add_parser(sub)
    bench_cli.add_parser(sub)
    study_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except TrainingInterrupted as exc:
        print(f"irfoundry: {exc}", file=sys.stderr)
        return 130
    except IRFoundryError as exc:
        print(f"irfoundry: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("irfoundry: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
