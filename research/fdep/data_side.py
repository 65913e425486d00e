"""The data side of an FDEP training epoch: one epoch of the training DataLoader alone (no model), with and
without the cached foundation features served per crop.

Produced the "prior lookup adds 0.10 s per SIRST epoch" figure of docs/results/fdep.md (then measured with
the former ``PriorCollate``; the features are now the dataset's crop store, the same look-up). The run
config is the ``fdep`` arm of ``irfoundry study run fdep_gain`` (crops, batch, target-crop sampling, the
seeded sampler, the bundled EfficientNet-Lite0), so the difference is what the look-up adds to each epoch.
Medians over ``--repeats`` epochs, interleaved.

Usage: ``OMP_NUM_THREADS=1 python research/fdep/data_side.py [--dataset sirst] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader

from irfoundry.data import collate
from irfoundry.engine.build import build_run
from irfoundry.engine.config import from_dict
from irfoundry.study import load_spec
from irfoundry.study.spec import RunKey


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="sirst", help="dataset of the fdep_gain study (default sirst)")
    parser.add_argument("--host", default="acm", help="host whose FDEP config is used (default acm)")
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per variant (default 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    spec = load_spec("fdep_gain")
    cfg = from_dict(spec.run_config(RunKey(args.dataset, args.host, "fdep", 0), "unused"))
    dm = build_run(cfg).datamodule
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    stores = dict(dm.train_set.crop_stores)
    seconds: dict[str, list[float]] = {"plain": [], "features": []}
    for _ in range(args.repeats):
        for name in seconds:
            dm.train_set.crop_stores = stores if name == "features" else {}
            loader = DataLoader(dm.train_set, batch_size=cfg.trainer.batch_size, sampler=sampler, collate_fn=collate,
                                drop_last=True)
            t0 = time.perf_counter()
            batches = sum(1 for _ in loader)
            seconds[name].append(time.perf_counter() - t0)
    plain, feats = (statistics.median(seconds[n]) for n in ("plain", "features"))
    print(f"{cfg.data.root} ({args.host} fdep config): {batches} batches of {cfg.trainer.batch_size} x "
          f"{cfg.data.crop_size}px per epoch, 1 thread, medians of {args.repeats}")
    print(f"data side per epoch: without features {plain:.3f} s, with cached features {feats:.3f} s "
          f"(+{feats - plain:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
