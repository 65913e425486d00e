"""Benchmark: epoch time of host training with a frozen foundation model, without and with the feature
cache (``irfoundry.bench.foundation``; the same as ``irfoundry bench foundation``).

Defaults: SIRST v1 ``idx_427`` train (256 images) from ``<repo>/../shared/data/sirst``, 256 crops, batch 8,
host ACM, ``efficientnet_lite0`` and ``dinov2_vits14`` with random weights, results in
``benchmarks/results/foundation.json``.

Usage: ``OMP_NUM_THREADS=2 python benchmarks/bench_foundation.py [--max-batches 8] [--threads 2]``
(any option of ``irfoundry bench foundation --help``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from irfoundry.bench.foundation import add_arguments, format_table, run

_REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.set_defaults(
        data=str((_REPO / ".." / "shared" / "data" / "sirst").resolve()) + ":train",
        out=str(_REPO / "benchmarks" / "results" / "foundation.json"),
    )
    for action in parser._actions:  # --data has a default here
        if action.dest == "data":
            action.required = False
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(vars(parser.parse_args(argv)))
    print(format_table(result))
    print(f"results: {result.get('out') or parser.get_default('out')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
