"""Benchmark: the data side of an FDEP training epoch, i.e. one epoch of the training DataLoader alone (no
model), with the plain collate and with ``PriorCollate`` (the cached foundation prior cut per crop).

The run config is exactly ``irfoundry bench fdep``'s (``run_config``: crops, batch, target-crop sampling,
the seeded sampler, the prior cache of the bundled EfficientNet-Lite0), so the difference is what the
prior lookup adds to each FDEP epoch of that benchmark. Medians over ``--repeats`` epochs, interleaved.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/fdep_data_side.py [--data ../shared/data/sirst] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader

from irfoundry.bench.fdep import add_arguments, run_config
from irfoundry.engine import from_dict
from irfoundry.engine.datamodule import IRSTDDataModule, train_collate
from irfoundry.foundation.cache import PriorCollate
from irfoundry.methods import build_method
from irfoundry.models import create_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/sirst", help="dataset folder (default SIRST)")
    parser.add_argument("--host", default="acm", help="host whose FDEP config is used (default acm)")
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per collate (default 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bench = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
    cfg = from_dict(run_config(args.data, args.host, "fdep", 0, bench))
    method = build_method(cfg.method, create_model(args.host))
    dm = IRSTDDataModule(cfg.data, cfg.trainer.batch_size)
    dm.use_prior_cache(*method.prior_cache())
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    collates = {"plain": train_collate, "prior": PriorCollate(dm.prior_cache, train_collate)}
    seconds: dict[str, list[float]] = {name: [] for name in collates}
    for _ in range(args.repeats):
        for name, collate in collates.items():
            loader = DataLoader(dm.train_set, batch_size=cfg.trainer.batch_size, sampler=sampler,
                                collate_fn=collate, drop_last=True)
            t0 = time.perf_counter()
            batches = sum(1 for _ in loader)
            seconds[name].append(time.perf_counter() - t0)
    plain, prior = (statistics.median(seconds[n]) for n in ("plain", "prior"))
    print(f"{args.data} ({args.host} fdep config): {batches} batches of {cfg.trainer.batch_size} x "
          f"{cfg.data.crop_size}px per epoch, 1 thread, medians of {args.repeats}")
    print(f"data side per epoch: plain collate {plain:.3f} s, PriorCollate {prior:.3f} s (+{prior - plain:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
