"""Benchmark: FDEP's gain over the host alone, and over FDEP with a random prior (``irfoundry.bench.fdep``;
the same as ``irfoundry bench fdep``, see its docstring for the protocol).

Usage: ``python benchmarks/fdep_gain.py --data ../shared/data/sirst ../shared/data/nudt_sirst
--hosts acm,alcnet,mshnet --seeds 0,1,2 --out docs/results/fdep_gain.json`` (any option of
``irfoundry bench fdep --help``).
"""

from __future__ import annotations

import sys

from irfoundry.bench.fdep import main

if __name__ == "__main__":
    sys.exit(main())
