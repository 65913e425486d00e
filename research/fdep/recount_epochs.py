"""Recount ``epoch_seconds`` of ``irfoundry bench fdep`` results made before the epoch-timer fix (081268d).

Before that commit ``train/epoch_seconds`` of every validated epoch included the validation, and FDEP
validates two branches, so the FDEP / host epoch ratios of those studies were inflated (1.7-2.1x instead
of 1.4-1.6x). This rewrites each file in place with :func:`legacy.recount_epochs`: every row's
epoch time becomes the median over its epochs without validation, read from the run folder the row names;
the logged value stays as ``epoch_seconds_logged`` and the file's ``corrections`` records the change.

Usage: ``python research/fdep/recount_epochs.py docs/results/fdep_gain_sirst.json ...`` on the machine
that holds the run folders (a missing folder is an error and leaves that file untouched).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # legacy.py beside this script

from irfoundry.jsonio import write_json
from legacy import recount_epochs


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python research/fdep/recount_epochs.py RESULTS.json [RESULTS.json ...]", file=sys.stderr)
        return 2
    for path in paths:
        write_json(recount_epochs(json.loads(path.read_text())), path)
        print(f"recounted {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
