"""``irfoundry bench foundation``: what a frozen foundation model costs a training epoch, with and
without the feature cache (:mod:`irfoundry.foundation.cache`).

For each foundation model, three epochs of the same host training loop (random 256 crops, batch 8,
forward + backward + Adam step of the host, SoftIoU loss; DataLoader included) are timed:

* ``host``: the host alone (measured before and after the foundation runs; the mean is the reference);
* ``no_cache``: the foundation forward (``torch.no_grad``) on every crop batch, then the host step;
* ``cache``: the crop's features looked up in a :class:`~irfoundry.foundation.cache.FeatureCache`
  (the dataset's crop store: cells cut from the full-image maps, turned like the crop, fp16 -> fp32), then the
  host step. The cache build (every training image once, full image) is timed separately and, in the
  ``amortised`` ratio, spread over ``--epochs`` epochs.

What this measures honestly, and what not:

* no fusion module consumes the features here (FDEP's cost is ``irfoundry bench step-cost``), so both
  foundation variants pay for *producing* the features only; the host step is identical in all three;
* with ``--max-batches N`` only ``N`` batches (after one untimed warm-up batch) are timed and the epoch
  time is extrapolated to the full epoch (``measured_batches`` / ``batches_per_epoch`` in the output say
  so); the default times whole epochs;
* random weights (``--weights random``) are fine for timing: the cost does not depend on the values;
* the cache variant uses ``TrainTransform(snap=cache.alignment)`` (crop origins on the feature grid), the
  others the default unsnapped crops; the cost of cropping is the same;
* ``crop_vs_cache``: for a few cached batches (no intensity jitter), the relative L2 difference
  ``|fm(crop) - cached| / |fm(crop)|`` and the mean cosine similarity over cells wholly inside the image,
  per level: how far the full-image-context features served by the cache are from features computed on
  the crop alone (context, flips, borders; see the cache's module docstring).

Machine noise: on a shared CPU the numbers move by tens of percent between runs; the ratios are taken
within one run.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from irfoundry.jsonio import write_json
from irfoundry.data import DatasetSpec, IRSTDDataset, TrainTransform, collate, compute_norm_stats
from irfoundry.errors import ConfigError
from irfoundry.foundation.cache import FeatureCache
from irfoundry.losses import deep_supervision_loss, soft_iou_loss
from irfoundry.models import create_model

DEFAULT_FOUNDATIONS = ("efficientnet_lite0", "dinov2_vits14")
#: batch key of the cached features
FEATURES = "foundation"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``irfoundry bench foundation`` (also used by ``benchmarks/bench_foundation.py``)."""
    parser.add_argument("--data", required=True, help="training split, PATH:SPLIT (e.g. ../shared/data/sirst:train)")
    parser.add_argument("--host", default="acm", help="host network (default acm)")
    parser.add_argument(
        "--foundations", nargs="+", default=list(DEFAULT_FOUNDATIONS), help="foundation names (default: %(default)s)"
    )
    parser.add_argument(
        "--weights", default="random", help="weights for every foundation: 'random' (default; timing only) or a file"
    )
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--max-batches", type=int, default=None, help="time this many batches per variant and extrapolate to the epoch"
    )
    parser.add_argument("--epochs", type=int, default=400, help="epochs the cache build is amortised over (400)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    parser.add_argument("--cache-root", default=None, help="disk cache directory (default: in memory)")
    parser.add_argument("--diff-batches", type=int, default=2, help="cached batches compared with fm(crop) (2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: leave as is)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser


def _host_step(host, opt):
    def step(batch: dict) -> None:
        out = host(batch["image"])
        loss = deep_supervision_loss(out, batch["target"], soft_iou_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _time_epoch(loader: DataLoader, step, max_batches: int | None) -> dict:
    """One untimed warm-up batch, then ``max_batches`` timed batches (all remaining when None)."""
    n_epoch = len(loader)
    it = iter(loader)
    step(next(it))
    n = n_epoch - 1 if max_batches is None else min(max_batches, n_epoch - 1)
    if n < 1:
        raise ConfigError(f"an epoch has {n_epoch} batch(es); need at least 2 to time (one is a warm-up).")
    t0 = time.perf_counter()
    for _ in range(n):
        step(next(it))
    dt = time.perf_counter() - t0
    del it
    return {"per_batch_s": dt / n, "epoch_s": dt / n * n_epoch, "measured_batches": n}


def _crop_vs_cache(fm, loader: DataLoader, cache: FeatureCache, mean: float, std: float, n_batches: int) -> list[dict]:
    """Relative L2 difference and mean cosine similarity between fm(crop) and the cached cells, over cells
    wholly inside the image, per level."""
    num = [0.0] * len(cache.levels)
    den = [0.0] * len(cache.levels)
    cos: list[list[float]] = [[] for _ in cache.levels]
    for b, batch in enumerate(loader):
        if b >= n_batches:
            break
        with torch.no_grad():
            ref = fm(_unit(batch["image"], mean, std))
        for j, sid in enumerate(batch["id"]):
            masks = cache.inside(sid, batch["geometry"][j])
            for lv, m in enumerate(masks):
                a = ref[lv][j][:, m].float()  # C x n_cells
                c = batch[FEATURES][lv][j][:, m]
                if a.numel() == 0:
                    continue
                num[lv] += float((a - c).square().sum())
                den[lv] += float(a.square().sum())
                cos[lv].extend(torch.nn.functional.cosine_similarity(a, c, dim=0).tolist())
    return [
        {
            "stride": s,
            "rel_l2": math.sqrt(num[lv] / den[lv]) if den[lv] > 0 else None,
            "mean_cosine": float(np.mean(cos[lv])) if cos[lv] else None,
            "cells": len(cos[lv]),
        }
        for lv, (_, s) in enumerate(cache.levels)
    ]


def _unit(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Host input (train mean/std normalised) back to [0, 1] intensities, the foundation's input."""
    try:
        from irfoundry.foundation import to_unit_range
    except ImportError:  # pragma: no cover - the helper is part of the foundation package's contract
        return (x * std + mean).clamp(0.0, 1.0)
    return to_unit_range(x, mean, std)


def run(args: dict) -> dict:
    """Run the benchmark with options as :func:`add_arguments` defines them (a dict, e.g. ``vars(ns)``).

    Returns:
        the results dict (also written to ``args["out"]`` when given) with epoch seconds per variant and
        the ratios ``no_cache / host``, ``cache / host`` and ``(cache + build / epochs) / host``.
    """
    from irfoundry.foundation import create_foundation

    if "data" not in args:
        raise ConfigError("bench foundation needs 'data' (a training split, PATH:SPLIT).")
    a = vars(add_arguments(argparse.ArgumentParser()).parse_args(["--data", str(args["data"])]))
    unknown = sorted(set(args) - set(a))
    if unknown:
        raise ConfigError(f"bench foundation got unknown options {unknown}; known: {sorted(a)}.")
    a.update(args)
    if a["threads"]:
        torch.set_num_threads(int(a["threads"]))
    spec = DatasetSpec.parse(a["data"])
    samples = spec.resolve()
    norm = compute_norm_stats(samples)
    torch.manual_seed(a["seed"])
    host = create_model(a["host"])
    host.train()
    step = _host_step(host, torch.optim.Adam(host.parameters(), lr=5e-4))

    def loader(cache: FeatureCache | None = None, jitter: bool = True) -> DataLoader:
        kw = {} if jitter else {"jitter": None}
        snap = cache.alignment if cache is not None else 1
        ds = IRSTDDataset(
            samples, transform=TrainTransform(crop_size=a["crop_size"], snap=snap, **kw), norm=norm, seed=a["seed"],
            crop_stores={FEATURES: cache} if cache is not None else None,
        )
        gen = torch.Generator().manual_seed(a["seed"])
        return DataLoader(
            ds, batch_size=a["batch_size"], sampler=RandomSampler(ds, generator=gen), drop_last=True,
            num_workers=a["num_workers"], collate_fn=collate,
        )

    result: dict = {
        "benchmark": "foundation",
        "data": str(a["data"]),
        "n_train": len(samples),
        "crop_size": a["crop_size"],
        "batch_size": a["batch_size"],
        "batches_per_epoch": len(samples) // a["batch_size"],
        "max_batches": a["max_batches"],
        "epochs_amortised": a["epochs"],
        "num_workers": a["num_workers"],
        "cache_root": a["cache_root"],
        "weights": a["weights"],
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
        "torch": torch.__version__,
        "foundations": {},
    }
    host_runs = [_time_epoch(loader(), step, a["max_batches"])]
    for name in a["foundations"]:
        fm = create_foundation(name, weights=a["weights"])
        r: dict = {"feature_info": [{"channels": d["channels"], "stride": d["stride"]} for d in fm.feature_info]}

        def fm_step(batch: dict, fm=fm) -> None:
            with torch.no_grad():
                fm(_unit(batch["image"], norm["mean"], norm["std"]))
            step(batch)

        r["no_cache"] = _time_epoch(loader(), fm_step, a["max_batches"])
        cache = FeatureCache(fm, samples, root=a["cache_root"]).build()
        r["alignment"] = cache.alignment
        r["cache_build_s"] = cache.stats["build_s"]
        r["cache_hash_s"] = cache.stats["hash_s"]
        r["cache_reused"] = cache.stats["reused"]
        r["cache_bytes"] = cache.nbytes
        r["cache"] = _time_epoch(loader(cache), step, a["max_batches"])
        if a["diff_batches"] > 0:
            r["crop_vs_cache"] = _crop_vs_cache(
                fm, loader(cache, jitter=False), cache, norm["mean"], norm["std"], a["diff_batches"],
            )
        result["foundations"][name] = r
        del cache, fm
    host_runs.append(_time_epoch(loader(), step, a["max_batches"]))
    host_s = float(np.mean([h["epoch_s"] for h in host_runs]))
    result["host"] = {"runs": host_runs, "epoch_s": host_s, "name": a["host"]}
    for r in result["foundations"].values():
        r["ratio_no_cache"] = r["no_cache"]["epoch_s"] / host_s
        r["ratio_cache"] = r["cache"]["epoch_s"] / host_s
        r["ratio_cache_amortised"] = (r["cache"]["epoch_s"] + r["cache_build_s"] / a["epochs"]) / host_s
    result["extrapolated"] = any(
        run["measured_batches"] + 1 < result["batches_per_epoch"]
        for run in host_runs + [v for r in result["foundations"].values() for v in (r["no_cache"], r["cache"])]
    )
    if a["out"]:
        write_json(result, a["out"])
    return result


def format_table(result: dict) -> str:
    """The results as a plain-text table (epoch seconds and ratios to the host alone)."""
    h = result["host"]
    runs = " / ".join(f"{r['epoch_s']:.1f}" for r in h["runs"])
    lines = [
        f"host {h['name']} on {result['data']} ({result['n_train']} images, {result['crop_size']} crops, batch "
        f"{result['batch_size']}, {result['batches_per_epoch']} batches/epoch"
        + (", timed on a subset and extrapolated" if result["extrapolated"] else "")
        + f"; {result['threads']} threads)",
        f"host alone: {h['epoch_s']:.1f} s/epoch (runs before / after: {runs})",
        f"{'foundation':<20} {'no cache s':>10} {'x host':>7} {'cache s':>8} {'x host':>7} "
        f"{'build s':>8} {'x host amort.':>13}",
    ]
    for name, r in result["foundations"].items():
        lines.append(
            f"{name:<20} {r['no_cache']['epoch_s']:>10.1f} {r['ratio_no_cache']:>7.2f} {r['cache']['epoch_s']:>8.1f} "
            f"{r['ratio_cache']:>7.2f} {r['cache_build_s']:>8.1f} {r['ratio_cache_amortised']:>13.2f}"
        )
    lines.append(f"(amortised: cache build spread over {result['epochs_amortised']} epochs)")
    for name, r in result["foundations"].items():
        for d in r.get("crop_vs_cache", []):
            if d["rel_l2"] is not None:
                lines.append(
                    f"{name} stride {d['stride']}: fm(crop) vs cached cells: rel L2 {d['rel_l2']:.3f}, "
                    f"mean cosine {d['mean_cosine']:.3f} ({d['cells']} cells inside the image)"
                )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="irfoundry bench foundation", description=__doc__.split("\n")[0]))
    result = run(vars(parser.parse_args(argv)))
    print(format_table(result))
    return 0
