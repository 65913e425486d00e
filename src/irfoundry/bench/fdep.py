"""``irfoundry bench fdep``: does the foundation prior help? FDEP's core claim under a fixed budget.

For every dataset x host x seed, three arms are trained with the same config, budget and seed:

* ``host``: the host alone (method ``supervised``);
* ``fdep``: CO-ISD with the bundled ImageNet EfficientNet-Lite0 as the frozen prior (method ``fdep``);
* ``fdep_random``: the same, with a randomly initialised prior of the same architecture (seeded by the
  run seed). It has the same SAMF capacity and the same two-branch training, so ``fdep - fdep_random``
  isolates what the *pretrained* prior adds and ``fdep_random - host`` what the extra branch adds.

Each run selects its checkpoint on the validation split (SIRST idx_427: its ``val``; NUDT-SIRST 50_50,
which has none: a seeded 20 % carve-out of ``train``), then the deployable network (for FDEP the
lightweight branch = the plain host) is evaluated on the **test** split at native resolution: IoU, nIoU,
Pd, Fa at 0.5 and HSE (``hse-recon-v1``, 0.05..0.95 step 0.05). The median training-epoch time of each
run (``train/epoch_seconds``: batches and data loading, no validation) gives the FDEP / host epoch ratio.

Results are appended to ``--out`` (JSON) after every run, and runs already there are skipped, so an
interrupted benchmark resumes where it stopped. The summary gives mean +/- sample std over seeds and the
per-seed paired differences ``fdep - host``.

Budget: defaults are a CPU budget (128 crops, 30 epochs, batch 16, Adam 1e-3, SoftIoU + BCE, val every 5
epochs); BasicIRSTD's full protocol is ``--crop 256 --epochs 400 --lr 5e-4 --loss softiou``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from irfoundry.bench import write_json
from irfoundry.errors import ConfigError

ARMS = ("host", "fdep", "fdep_random")
METRICS = ("iou", "niou", "pd", "fa", "hse")

EPILOG = """examples:
  irfoundry bench fdep --data ../shared/data/sirst --hosts acm,alcnet --seeds 0,1,2 --out fdep_gain.json
  irfoundry bench fdep --data ../shared/data/sirst ../shared/data/nudt_sirst --hosts acm,alcnet,mshnet \\
      --seeds 0,1,2 --epochs 30 --crop 128 --out docs/results/fdep_gain.json
  irfoundry bench fdep --summarize docs/results/fdep_gain.json       # print the table of a finished run
"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``irfoundry bench fdep``."""
    parser.add_argument("--data", nargs="+", default=["../shared/data/sirst", "../shared/data/nudt_sirst"],
                        help="dataset folders (default: SIRST idx_427 and NUDT-SIRST 50_50 under ../shared/data)")
    parser.add_argument("--hosts", default="acm,alcnet,mshnet", help="comma-separated hosts (default acm,alcnet,mshnet)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms (default {','.join(ARMS)})")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per run (default 30)")
    parser.add_argument("--crop", type=int, default=128, help="training crop size (default 128)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--loss", default="softiou+bce", help="loss (default softiou+bce)")
    parser.add_argument("--val-every", type=int, default=5, help="validate every N epochs (default 5)")
    parser.add_argument("--foundation", default="efficientnet_lite0", help="prior of the fdep arms (default bundled)")
    parser.add_argument("--runs", default="runs/bench_fdep", help="folder for the run folders (default runs/bench_fdep)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: leave as is)")
    parser.add_argument("--out", default=None, help="JSON results file, appended after every run and resumed from")
    parser.add_argument("--summarize", default=None, metavar="JSON", help="only print the summary of a results file")
    return parser


def _dataset_name(root: str) -> str:
    return Path(root).resolve().name


def run_config(data: str, host: str, arm: str, seed: int, a: dict) -> dict:
    """The run config of one arm: identical for all arms but ``method``."""
    nudt = (Path(data) / "50_50").is_dir()
    method: dict[str, Any] = {"name": "supervised", "loss": a["loss"]}
    if arm != "host":
        method = {"name": "fdep", "loss": a["loss"],
                  "options": {"foundation": a["foundation"], "weights": "random" if arm == "fdep_random" else None}}
    return {
        "data": {"root": str(data), "train_split": "50_50/train" if nudt else "train",
                 "test_split": "50_50/test" if nudt else "test", "crop_size": a["crop"], "target_crop_prob": 0.5,
                 "seed": seed},
        "model": {"name": host},
        "method": method,
        "optim": {"optimizer": "adam", "lr": a["lr"]},
        "trainer": {"max_epochs": a["epochs"], "batch_size": a["batch"], "val_every": a["val_every"],
                    "out_dir": str(a["runs"]), "run_name": f"{_dataset_name(data)}_{host}_{arm}_s{seed}",
                    "seed": seed, "progress_bar": False, "log_every_n_steps": 50},
    }


def _epoch_seconds(run_dir: Path) -> float | None:
    import csv

    path = run_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        values = [float(r["train/epoch_seconds"]) for r in csv.DictReader(f) if r.get("train/epoch_seconds")]
    return statistics.median(values) if values else None


def run_one(data: str, host: str, arm: str, seed: int, a: dict) -> dict:
    """Train one arm, evaluate its selected deployable network on the test split."""
    from irfoundry.engine import evaluate, from_dict, train

    cfg = run_config(data, host, arm, seed, a)
    run_dir = Path(cfg["trainer"]["out_dir"]) / cfg["trainer"]["run_name"]
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir} exists but its result is not in --out; delete it to rerun (nothing was overwritten)")
    t0 = time.perf_counter()
    result = train(from_dict(cfg))
    train_s = time.perf_counter() - t0
    test = evaluate(result["run_dir"], data, split=cfg["data"]["test_split"])
    return {
        "dataset": _dataset_name(data), "host": host, "arm": arm, "seed": seed,
        "test_split": cfg["data"]["test_split"], "n_test": test["n_images"],
        **{k: float(test[k]) for k in METRICS},
        "best_epoch": result["best_epoch"], "val_iou": result["best_score"],
        "val_main_iou": result["val_metrics"].get("val_main/iou"),
        "epoch_seconds": _epoch_seconds(Path(result["run_dir"])), "train_seconds": train_s,
        "run_dir": result["run_dir"],
    }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(rows: list[dict]) -> list[dict]:
    """Per dataset x host x arm: mean / std of every metric and of the epoch time; paired ``fdep - host``."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["host"], r["arm"]), []).append(r)
    out = []
    for (ds, host, arm), rs in sorted(groups.items()):
        entry = {"dataset": ds, "host": host, "arm": arm, "seeds": sorted(r["seed"] for r in rs)}
        for k in (*METRICS, "epoch_seconds"):
            entry[k] = _mean_std([r[k] for r in rs if r.get(k) is not None])
        base = {r["seed"]: r for r in groups.get((ds, host, "host"), [])}
        if arm != "host" and base:
            for k in ("iou", "hse"):
                diffs = [r[k] - base[r["seed"]][k] for r in rs if r["seed"] in base]
                entry[f"d_{k}_vs_host"] = _mean_std(diffs) + (diffs,)
            ratios = [r["epoch_seconds"] / base[r["seed"]]["epoch_seconds"] for r in rs
                      if r["seed"] in base and r.get("epoch_seconds") and base[r["seed"]].get("epoch_seconds")]
            entry["epoch_ratio_vs_host"] = _mean_std(ratios)
        out.append(entry)
    return out


def _load(path: Path) -> dict:
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); move it away to start a new benchmark") from exc
    return {}


def run(args: dict) -> dict[str, Any]:
    """Run (or resume) the benchmark; options as :func:`add_arguments` defines them."""
    a = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
    unknown = sorted(set(args) - set(a))
    if unknown:
        raise ConfigError(f"bench fdep got unknown options {unknown}; known: {sorted(a)}")
    a.update(args)
    if a["summarize"]:
        doc = _load(Path(a["summarize"]))
        if not doc.get("rows"):
            raise ConfigError(f"{a['summarize']} holds no results")
        return {**doc, "summary": summarize(doc["rows"])}
    arms = [s.strip() for s in a["arms"].split(",") if s.strip()]
    bad = sorted(set(arms) - set(ARMS))
    if bad:
        raise ConfigError(f"--arms {bad} unknown; choose from {', '.join(ARMS)}")
    hosts = [s.strip() for s in a["hosts"].split(",") if s.strip()]
    from irfoundry.models import list_models

    missing = [h for h in hosts if h not in list_models()]
    if missing:
        raise ConfigError(f"--hosts {missing} are not registered hosts ({', '.join(list_models())})")
    try:
        seeds = [int(s) for s in str(a["seeds"]).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {a['seeds']!r}") from None
    for d in a["data"]:
        if not Path(d).is_dir():
            raise ConfigError(f"dataset folder {d} does not exist (see README 'Datasets')")
    if a["threads"]:
        import torch

        torch.set_num_threads(int(a["threads"]))
    from irfoundry.bench.train import machine_info

    out = Path(a["out"]) if a["out"] else None
    doc = _load(out) if out else {}
    settings = {k: a[k] for k in ("epochs", "crop", "batch", "lr", "loss", "val_every", "foundation")}
    if doc.get("settings") and doc["settings"] != settings:
        raise ConfigError(f"{out} was made with other settings {doc['settings']}; use another --out")
    doc.setdefault("settings", settings)
    doc.setdefault("machine", machine_info())
    rows: list[dict] = doc.setdefault("rows", [])
    done = {(r["dataset"], r["host"], r["arm"], r["seed"]) for r in rows}
    for data in a["data"]:
        for host in hosts:
            for seed in seeds:
                for arm in arms:
                    if (_dataset_name(data), host, arm, seed) in done:
                        continue
                    rows.append(run_one(data, host, arm, seed, a))
                    if out:
                        write_json(doc, out)
    return {**doc, "summary": summarize(rows), **({"json": str(out)} if out else {})}


def _pm(ms: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    m, s = ms[0], ms[1]
    return f"{m * scale:.{digits}f} +/- {s * scale:.{digits}f}"


def format_table(result: dict[str, Any]) -> str:
    s = result.get("settings", {})
    lines = [
        f"budget: {s.get('epochs')} epochs, {s.get('crop')} crops, batch {s.get('batch')}, Adam {s.get('lr')}, "
        f"loss {s.get('loss')}; prior {s.get('foundation')}; test split, native resolution, mean +/- std over seeds",
        f"{'dataset':<11} {'host':<8} {'arm':<12} {'n':>2} {'IoU':>15} {'nIoU':>15} {'Pd':>15} {'Fa x1e-6':>17} "
        f"{'HSE':>15} {'dIoU vs host':>15} {'dHSE vs host':>15} {'epoch x host':>13}",
    ]
    for e in result.get("summary", []):
        d_iou = _pm(e["d_iou_vs_host"]) if "d_iou_vs_host" in e else "-"
        d_hse = _pm(e["d_hse_vs_host"], 1.0) if "d_hse_vs_host" in e else "-"
        ratio = f"{e['epoch_ratio_vs_host'][0]:.2f}" if "epoch_ratio_vs_host" in e else "-"
        lines.append(
            f"{e['dataset']:<11} {e['host']:<8} {e['arm']:<12} {len(e['seeds']):>2} {_pm(e['iou']):>15} "
            f"{_pm(e['niou']):>15} {_pm(e['pd']):>15} {_pm(e['fa'], 1e6):>17} {_pm(e['hse'], 1.0):>15} "
            f"{d_iou:>15} {d_hse:>15} {ratio:>13}"
        )
    if result.get("json"):
        lines.append(f"results: {result['json']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="irfoundry bench fdep", description=__doc__.split("\n")[0],
                                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter))
    print(format_table(run(vars(parser.parse_args(argv)))))
    return 0
