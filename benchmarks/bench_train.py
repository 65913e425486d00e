"""Benchmark: training and inference throughput of every host network (``irfoundry.bench.train``; the same
as ``irfoundry bench train``, see its docstring for what is timed).

Usage: ``OMP_NUM_THREADS=2 python benchmarks/bench_train.py [--models all] [--size 256] [--batch 8] [--json OUT]``
(any option of ``irfoundry bench train --help``).
"""

from __future__ import annotations

import sys

from irfoundry.bench.train import main

if __name__ == "__main__":
    sys.exit(main())
