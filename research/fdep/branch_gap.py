"""Does FDEP's fused branch use the prior? Main minus lightweight validation IoU of the former ``bench fdep`` runs.

Both branches of an FDEP run are validated at the same epochs (``val/iou``: lightweight, the deployable
host; ``val_main/iou``: fused with the prior). :func:`legacy.branch_gaps` reads them from the
run folders the results rows name and this prints, per dataset x host x arm, the gap at the last
validation per seed, the mean gap over all validations and how often the fused branch led.

Usage: ``python research/fdep/branch_gap.py docs/results/fdep_gain_sirst.json ...`` on the machine that
holds the run folders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # legacy.py beside this script

from legacy import branch_gaps
from irfoundry.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python research/fdep/branch_gap.py RESULTS.json [RESULTS.json ...]", file=sys.stderr)
        return 2
    gaps = []
    for path in paths:
        try:
            gaps += branch_gaps(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, ConfigError) as exc:
            print(f"{path}: {exc} (expected a results file of the former `irfoundry bench fdep`)", file=sys.stderr)
            return 1
    print("| data | host | arm | seeds | main - light, last val (per seed) | mean over vals | main ahead |")
    print("|---|---|---|---|---|---|---|")
    for g in gaps:
        last = ", ".join(f"{100 * x:+.1f}" for x in g["last"])
        print(f"| {g['dataset']} | {g['host']} | {g['arm']} | {g['seeds']} | {last} | {100 * g['mean_gap']:+.1f} | "
              f"{g['ahead']}/{g['validations']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
