"""Benchmark: irfoundry.metrics against the naive per-threshold reference on real test splits
(``irfoundry.bench.metrics``; the same as ``irfoundry bench metrics``, see its docstring for what is timed).

Usage: ``python benchmarks/bench_metrics.py [--data-root ../shared/data] [--naive-max-images 40] [--json OUT]``
(any option of ``irfoundry bench metrics --help``). Exit status 1 if the counts of the two engines differ.
"""

from __future__ import annotations

import sys

from irfoundry.bench.metrics import main

if __name__ == "__main__":
    sys.exit(main())
