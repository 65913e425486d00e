"""``irfoundry bench fdep``: does the foundation prior help? FDEP's core claim under a fixed budget.

For every dataset x host x seed, three arms are trained with the same config, budget and seed:

* ``host``: the host alone (method ``supervised``);
* ``fdep``: CO-ISD with the bundled ImageNet EfficientNet-Lite0 as the frozen prior (method ``fdep``);
* ``fdep_random``: the same, with a randomly initialised prior of the same architecture (seeded by the
  run seed). It has the same SAMF capacity and the same two-branch training, so ``fdep - fdep_random``
  isolates what the *pretrained* prior adds and ``fdep_random - host`` what the extra branch adds;
* ``fdep_kd`` (not in the default ``--arms``): ``fdep`` plus the explicit distillation term, main (fused)
  branch -> lightweight branch, weight ``--kd-weight`` (``method.options.kd_weight``; FDEP's paper has no
  such term, the shared weights alone are its transfer). ``fdep_kd - fdep`` shows whether what the fused
  branch gains from the prior reaches the deployable branch when it is distilled explicitly.

Each run selects its checkpoint on the validation split (SIRST idx_427: its ``val``; NUDT-SIRST 50_50,
which has none: a seeded 20 % carve-out of ``train``), then the deployable network (for FDEP the
lightweight branch = the plain host) is evaluated on the **test** split at native resolution: IoU, nIoU,
Pd, Fa at 0.5 and HSE (``hse-recon-v1``, 0.05..0.95 step 0.05). The median training-epoch time of each
run (``train/epoch_seconds``: batches and data loading, no validation) gives the FDEP / host epoch ratio.

Before training, per host, ``--cost-steps`` measures what the two speed goals are about, on one random
batch (``--cost-batch`` x 1 x ``--cost-size`` x ``--cost-size``), interleaved medians: a CO-ISD training step
with cached priors (random tensors of the foundation's shapes) against a plain supervised host step, and
the eval forward of the exported network (saved and reloaded) against a freshly built plain host, with
their parameters and MACs.

Results are appended to ``--out`` (JSON) after every run, and runs already there are skipped; a run
interrupted mid-training continues from its last finished epoch (its folder under ``--runs``, when its
config is this budget's). So an interrupted benchmark resumes where it stopped. The summary gives
mean +/- sample std over seeds and the per-seed paired differences ``fdep - host``, ``fdep_random - host``
and ``fdep - fdep_random`` (with ``fdep_kd``: also ``fdep_kd - host`` and ``fdep_kd - fdep``) with their
95 % Student-t interval: a difference is "beyond the seed-to-seed spread" when that interval lies above 0.

Budget: defaults are a CPU budget: BasicIRSTD's recipe (Adam 5e-4, SoftIoU, batch 16) at 128 crops for 10
epochs, validated every 2, with every host output starting at probability 0.01 (``--prior-prob`` and
``--prior-weight-std``: the RetinaNet prior init, :func:`irfoundry.models.init_output_prior`). Without that
init ACM / ALCNet spend their first ~100 epochs predicting all-background, so a short budget would compare
empty masks. BasicIRSTD's full protocol is
``--crop 256 --epochs 400 --prior-prob 0`` with a step schedule the benchmark does not apply (constant lr).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from irfoundry.bench import write_json
from irfoundry.errors import ConfigError

log = logging.getLogger(__name__)

ARMS = ("host", "fdep", "fdep_random", "fdep_kd")
DEFAULT_ARMS = ("host", "fdep", "fdep_random")
#: settings keys added after results were first written, with their defaults (the value older files implied)
LATER_SETTINGS = {"kd_weight": 1.0}
METRICS = ("iou", "niou", "pd", "fa", "hse")

EPILOG = """examples:
  irfoundry bench fdep --data ../shared/data/sirst --hosts acm,alcnet --seeds 0,1,2 --out fdep_gain.json
  irfoundry bench fdep --data ../shared/data/sirst ../shared/data/nudt_sirst --hosts acm,alcnet,mshnet \\
      --seeds 0,1,2 --epochs 10 --crop 128 --out docs/results/fdep_gain.json
  irfoundry bench fdep --summarize docs/results/fdep_gain.json       # print the table of a finished run
  irfoundry bench fdep --summarize worker_a.json worker_b.json --out gain.json   # join parallel workers
  irfoundry bench fdep --hosts acm,alcnet,mshnet,dnanet --seeds '' --out costs.json   # step / latency costs only
"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``irfoundry bench fdep``."""
    parser.add_argument("--data", nargs="+", default=["../shared/data/sirst", "../shared/data/nudt_sirst"],
                        help="dataset folders (default: SIRST idx_427 and NUDT-SIRST 50_50 under ../shared/data)")
    parser.add_argument("--hosts", default="acm,alcnet,mshnet", help="comma-separated hosts (default acm,alcnet,mshnet)")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                        help=f"comma-separated arms of {', '.join(ARMS)} (default {','.join(DEFAULT_ARMS)})")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per run (default 10)")
    parser.add_argument("--crop", type=int, default=128, help="training crop size (default 128)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate, constant (default 5e-4)")
    parser.add_argument("--loss", default="softiou", help="loss (default softiou)")
    parser.add_argument("--val-every", type=int, default=2, help="validate every N epochs (default 2)")
    parser.add_argument("--prior-prob", type=float, default=0.01,
                        help="start every host output at this probability (model.prior_prob; 0: the host's own "
                             "init; default 0.01)")
    parser.add_argument("--prior-weight-std", type=_std_or_none, default=0.01,
                        help="with --prior-prob: std of the redrawn logit-layer weights (model.prior_weight_std, "
                             "RetinaNet's 0.01; 'none': keep the host's weights, the earlier bias-only init)")
    parser.add_argument("--foundation", default="efficientnet_lite0", help="prior of the fdep arms (default bundled)")
    parser.add_argument("--kd-weight", type=float, default=LATER_SETTINGS["kd_weight"],
                        help="weight of the main -> lightweight distillation term of the fdep_kd arm (default "
                             f"{LATER_SETTINGS['kd_weight']})")
    parser.add_argument("--runs", default="runs/bench_fdep", help="folder for the run folders (default runs/bench_fdep)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: leave as is)")
    parser.add_argument("--out", default=None, help="JSON results file, appended after every run and resumed from")
    parser.add_argument("--cost-steps", type=int, default=10,
                        help="timed steps of the per-host step / export-latency costs (0: skip; default 10)")
    parser.add_argument("--cost-size", type=int, default=256, help="input side of the cost measurement (256)")
    parser.add_argument("--cost-batch", type=int, default=8, help="batch of the training-step cost (8)")
    parser.add_argument("--summarize", nargs="+", default=None, metavar="JSON",
                        help="only print the summary of one or more results files (same settings; runs of parallel "
                             "workers); with --out, also write their union there")
    parser.add_argument("--markdown", action="store_true", help="print the summary as Markdown tables")
    return parser


def _std_or_none(text: str) -> float | None:
    if text.strip().lower() in ("none", "null"):
        return None
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'none', got {text}")
    return value


def _dataset_name(root: str) -> str:
    return Path(root).resolve().name


def run_config(data: str, host: str, arm: str, seed: int, a: dict) -> dict:
    """The run config of one arm: identical for all arms but ``method``."""
    nudt = (Path(data) / "50_50").is_dir()
    method: dict[str, Any] = {"name": "supervised", "loss": a["loss"]}
    if arm != "host":
        options = {"foundation": a["foundation"], "weights": "random" if arm == "fdep_random" else None}
        if arm == "fdep_kd":
            options["kd_weight"] = a["kd_weight"]
        method = {"name": "fdep", "loss": a["loss"], "options": options}
    return {
        "data": {"root": str(data), "train_split": "50_50/train" if nudt else "train",
                 "test_split": "50_50/test" if nudt else "test", "crop_size": a["crop"], "target_crop_prob": 0.5,
                 "seed": seed},
        "model": {"name": host, "prior_prob": a["prior_prob"] or None, "prior_weight_std": a["prior_weight_std"]},
        "method": method,
        "optim": {"optimizer": "adam", "lr": a["lr"]},
        "trainer": {"max_epochs": a["epochs"], "batch_size": a["batch"], "val_every": a["val_every"],
                    "out_dir": str(a["runs"]), "run_name": f"{_dataset_name(data)}_{host}_{arm}_s{seed}",
                    "seed": seed, "progress_bar": False, "log_every_n_steps": 50},
    }


def _epoch_seconds(run_dir: Path, skip_validated: bool = False) -> float | None:
    """Median ``train/epoch_seconds`` in ``run_dir/logs/metrics.csv``; ``None`` without a log.

    ``skip_validated``: only epochs that ran no validation. Runs logged before the epoch-timer fix (commit
    081268d) timed their validation too, so only those epochs are training alone (:func:`recount_epochs`).
    """
    from irfoundry.engine.logs import METRICS_LOG, read_rows

    rows = read_rows(run_dir / METRICS_LOG)
    validated = {r.get("epoch") for r in rows if r.get("val/iou")} if skip_validated else set()
    values = [float(r["train/epoch_seconds"]) for r in rows
              if r.get("train/epoch_seconds") and r.get("epoch") not in validated]
    return statistics.median(values) if values else None


EPOCH_TIMER_FIX = (
    "epoch_seconds recounted from each run's metrics.csv over the epochs without validation "
    "(python benchmarks/fdep_recount_epochs.py): before commit 081268d train/epoch_seconds of a validated "
    "epoch included its validation; the logged values are kept as epoch_seconds_logged"
)


def recount_epochs(result: dict) -> dict:
    """``result`` (a ``--out`` JSON) with every row's ``epoch_seconds`` recounted over its unvalidated epochs.

    For studies run before the epoch-timer fix; the logged value moves to ``epoch_seconds_logged`` and
    ``result["corrections"]`` says so. A row whose run folder is gone is an error (nothing is written). Idempotent.
    """
    if EPOCH_TIMER_FIX in result.get("corrections", []):
        return result
    rows = []
    for row in result["rows"]:
        recounted = _epoch_seconds(Path(row["run_dir"]), skip_validated=True)
        if recounted is None:
            raise ConfigError(
                f"no training log under {row['run_dir']} to recount {row['dataset']} {row['host']} {row['arm']} "
                f"seed {row['seed']} from; run the recount where the study's run folders are"
            )
        rows.append({**row, "epoch_seconds": recounted, "epoch_seconds_logged": row.get("epoch_seconds")})
    return {**result, "rows": rows, "corrections": [*result.get("corrections", []), EPOCH_TIMER_FIX]}


def branch_gaps(result: dict) -> list[dict]:
    """Does the fused branch use the prior? Main minus lightweight val IoU of every FDEP run of ``result``.

    Reads each FDEP-arm row's ``run_dir/logs/metrics.csv`` (both branches are validated at the same epochs)
    and returns per dataset x host x arm: ``last`` (the per-seed gap at the last validation), ``mean_gap``
    (the mean over seeds of each run's mean gap over its validations), ``ahead`` / ``validations`` (how
    many validations the main branch led). Gaps are in IoU fractions. A fused branch ahead with the
    pretrained prior and not with the random one means the prior carries information the fused branch
    uses; whether the deployable branch inherits it is what the test-split comparisons say. Rows whose run
    folder is gone are an error.
    """
    from irfoundry.engine.logs import METRICS_LOG, read_rows

    groups: dict[tuple, list[list[float]]] = {}
    for row in result["rows"]:
        if row["arm"] == "host":
            continue
        path = Path(row["run_dir"]) / METRICS_LOG
        if not path.is_file():
            raise ConfigError(f"no training log {path} for {row['dataset']} {row['host']} {row['arm']} seed "
                              f"{row['seed']}; run this where the study's run folders are")
        gaps = [float(r["val_main/iou"]) - float(r["val/iou"]) for r in read_rows(path)
                if r.get("val/iou") and r.get("val_main/iou")]
        if gaps:
            groups.setdefault((row["dataset"], row["host"], row["arm"]), []).append(gaps)
    return [{"dataset": ds, "host": host, "arm": arm, "seeds": len(runs), "last": [g[-1] for g in runs],
             "mean_gap": statistics.mean(statistics.mean(g) for g in runs),
             "ahead": sum(x > 0 for g in runs for x in g), "validations": sum(len(g) for g in runs)}
            for (ds, host, arm), runs in sorted(groups.items())]


def run_one(data: str, host: str, arm: str, seed: int, a: dict) -> dict:
    """Train one arm, evaluate its selected deployable network on the test split."""
    from irfoundry.engine import evaluate, from_dict, train

    cfg = run_config(data, host, arm, seed, a)
    run_dir = Path(cfg["trainer"]["out_dir"]) / cfg["trainer"]["run_name"]
    resume = run_dir.exists() and any(run_dir.iterdir())
    if resume:
        _check_resumable(run_dir, cfg)
        log.info("resuming the interrupted run %s", run_dir)
    t0 = time.perf_counter()
    result = train(None, resume=run_dir) if resume else train(from_dict(cfg))
    train_s = time.perf_counter() - t0
    test = evaluate(result["run_dir"], data, split=cfg["data"]["test_split"])
    return {
        "dataset": _dataset_name(data), "host": host, "arm": arm, "seed": seed,
        "test_split": cfg["data"]["test_split"], "n_test": test["n_images"],
        **{k: float(test[k]) for k in METRICS},
        "best_epoch": result["best_epoch"], "val_iou": result["best_score"],
        "val_main_iou": result["val_metrics"].get("val_main/iou"),
        "epoch_seconds": _epoch_seconds(Path(result["run_dir"])), "train_seconds": train_s,
        "run_dir": result["run_dir"], **({"resumed": True} if resume else {}),
    }


def _check_resumable(run_dir: Path, cfg: dict) -> None:
    """An existing run folder without a result can be continued only if it is this very run, interrupted:
    it holds Lightning's resume state and its config equals ``cfg``. Otherwise nothing is touched."""
    from dataclasses import asdict

    from irfoundry.engine import from_dict
    from irfoundry.engine.train import RESUME_CKPT, resolve_resume

    if not (run_dir / RESUME_CKPT).is_file():
        raise ConfigError(f"{run_dir} exists but holds neither a result in --out nor a finished epoch "
                          f"({RESUME_CKPT}) to resume; delete it to rerun (nothing was overwritten)")
    saved, wanted = asdict(resolve_resume(run_dir)[0]), asdict(from_dict(cfg))
    differ = sorted(f"{section}.{key}" for section, values in wanted.items() for key, value in values.items()
                    if saved.get(section, {}).get(key) != value)
    if differ:
        raise ConfigError(f"{run_dir} is an interrupted run of another budget ({', '.join(differ)} differ from "
                          "these options); delete it or pass another --runs (nothing was overwritten)")


def host_costs(host_name: str, foundation: str, *, size: int = 256, batch: int = 8, steps: int = 10,
               seed: int = 0) -> dict:
    """Training-step cost of CO-ISD (cached priors) vs the plain host, and eval latency of the exported
    network vs the plain host; medians of ``steps`` interleaved timings after 2 warm-up rounds."""
    import tempfile

    import torch

    from irfoundry.bench.train import _median_seconds
    from irfoundry.engine.config import MethodConfig
    from irfoundry.foundation import create_foundation
    from irfoundry.methods.fdep import FDEP
    from irfoundry.methods.supervised import Supervised
    from irfoundry.models import create_model
    from irfoundry.models.checkpoint import load_weights, save_weights
    from irfoundry.models.complexity import complexity

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 1, size, size, generator=g)
    masks = (torch.rand(batch, 1, size, size, generator=g) < 0.005).float()
    shapes = create_foundation(foundation, weights="random", device="meta")  # feature_info only, no values
    priors = [torch.randn(batch, d["channels"], -(-size // d["stride"]), -(-size // d["stride"]), generator=g)
              for d in shapes.feature_info]
    cfg = MethodConfig(name="fdep", loss="softiou", options={"foundation": foundation, "cache": "memory"})
    fdep = FDEP(create_model(host_name), cfg, foundation=shapes)
    plain = Supervised(create_model(host_name), MethodConfig(loss="softiou", options={"warm_epochs": -1}))
    runs = {}
    for name, method, batch_ in (("host", plain, {"image": images, "mask": masks}),
                                 ("fdep", fdep, {"image": images, "mask": masks, "prior": priors})):
        opt = torch.optim.Adam(method.parameters(), lr=1e-4)
        method.train()

        def step(method=method, batch_=batch_, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            method.training_loss(batch_)[0].backward()
            opt.step()

        runs[name] = _median_seconds(step, steps, 2, lambda: None)[0]
    with tempfile.TemporaryDirectory() as tmp:
        exported = load_weights(save_weights(fdep.export_model(), f"{tmp}/host.safetensors")).eval()
    reference = create_model(host_name).eval()
    x = images[:1]
    lat = {"plain": [], "exported": []}
    with torch.inference_mode():
        for _ in range(2):
            reference(x), exported(x)
        for _ in range(steps):  # interleaved, so machine load hits both alike
            for key, net in (("plain", reference), ("exported", exported)):
                t0 = time.perf_counter()
                net(x)
                lat[key].append(time.perf_counter() - t0)
    plain_c, exported_c = complexity(reference), complexity(exported)
    return {
        "host": host_name, "size": size, "batch": batch, "steps": steps,
        "host_step_s": runs["host"], "fdep_step_s": runs["fdep"], "step_ratio": runs["fdep"] / runs["host"],
        "plain_eval_s": statistics.median(lat["plain"]), "exported_eval_s": statistics.median(lat["exported"]),
        "latency_ratio": statistics.median(lat["exported"]) / statistics.median(lat["plain"]),
        "params_plain": plain_c["params"], "params_exported": exported_c["params"],
        "macs_plain": plain_c["macs"], "macs_exported": exported_c["macs"],
    }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_difference(diffs: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Paired per-seed differences ``arm - reference``: mean, sample std, Student-t confidence interval, wins.

    ``beyond_spread`` is the issue's "beats it beyond the seed-to-seed spread", made testable: the whole
    two-sided ``confidence`` interval of the mean paired difference lies above zero (a paired t-test at
    ``1 - confidence``). With fewer than two seeds there is no spread to beat, so it is ``False``.
    """
    diffs = [float(d) for d in diffs if d == d]
    n = len(diffs)
    mean, std = _mean_std(diffs)
    lo = hi = float("nan")
    if n > 1:
        from scipy.stats import t

        half = float(t.ppf(0.5 + confidence / 2, n - 1)) * std / n ** 0.5
        lo, hi = mean - half, mean + half
    return {"n": n, "mean": mean, "std": std, "ci": (lo, hi), "confidence": confidence,
            "wins": sum(d > 0 for d in diffs), "beyond_spread": bool(n > 1 and lo > 0), "diffs": diffs}


def collapsed(row: dict) -> bool:
    """A run that never left the all-background start: no validation of its selected (deployable) network
    predicted a single target pixel (``val_iou == 0`` at the best epoch, hence at every epoch).

    Such runs are kept in every mean (dropping them would favour whichever arm collapses more); the
    summary lists them so a reader can see what drives a difference.
    """
    return row.get("val_iou") is not None and row["val_iou"] <= 0.0


# (arm, reference arm): what each paired comparison isolates (module docstring)
COMPARISONS = (("fdep", "host"), ("fdep_random", "host"), ("fdep", "fdep_random"), ("fdep_kd", "host"),
               ("fdep_kd", "fdep"))
# the goal's two metrics: (result key, label, scale to the printed unit)
PAIRED_METRICS = (("iou", "IoU", 100.0), ("hse", "HSE", 1.0))


def summarize(rows: list[dict]) -> list[dict]:
    """Per dataset x host x arm: mean / std of every metric and of the epoch time, and the paired comparisons.

    ``entry["paired"][reference][metric]`` is :func:`paired_difference` of ``arm - reference`` over the
    seeds both arms ran (IoU and HSE, the two metrics of the goal), for every pair in :data:`COMPARISONS`.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["host"], r["arm"]), []).append(r)
    out = []
    def listing_order(item: tuple) -> tuple:  # per dataset and host: the host arm first, then what is compared with it
        (ds, host, arm), _ = item
        return ds, host, ARMS.index(arm) if arm in ARMS else len(ARMS), arm

    for (ds, host, arm), rs in sorted(groups.items(), key=listing_order):
        entry = {"dataset": ds, "host": host, "arm": arm, "seeds": sorted(r["seed"] for r in rs), "paired": {},
                 "collapsed": sorted(r["seed"] for r in rs if collapsed(r))}
        for k in (*METRICS, "epoch_seconds"):
            entry[k] = _mean_std([r[k] for r in rs if r.get(k) is not None])
        for reference in (ref for a, ref in COMPARISONS if a == arm):
            base = {r["seed"]: r for r in groups.get((ds, host, reference), [])}
            pairs = [(r, base[r["seed"]]) for r in rs if r["seed"] in base]
            if pairs:
                entry["paired"][reference] = {k: paired_difference([r[k] - b[k] for r, b in pairs])
                                              for k, _, _ in PAIRED_METRICS}
        base = {r["seed"]: r for r in groups.get((ds, host, "host"), [])}
        ratios = [r["epoch_seconds"] / base[r["seed"]]["epoch_seconds"] for r in rs
                  if arm != "host" and r["seed"] in base and r.get("epoch_seconds")
                  and base[r["seed"]].get("epoch_seconds")]
        if ratios:
            entry["epoch_ratio_vs_host"] = _mean_std(ratios)
        out.append(entry)
    return out


def _ci_text(paired: dict, scale: float, sep: str) -> str:
    return sep.join(f"{v * scale:+.2f}" if v == v else "n/a" for v in paired["ci"])


def verdicts(summary: list[dict]) -> list[str]:
    """One line per dataset x host x comparison: the paired IoU / HSE differences and whether they clear the spread."""
    lines = []
    for e in summary:
        for reference, by_metric in e["paired"].items():
            parts = []
            for k, label, scale in PAIRED_METRICS:
                p = by_metric[k]
                parts.append(f"d{label} {p['mean'] * scale:+.2f} (95% CI {_ci_text(p, scale, '..')}, "
                             f"wins {p['wins']}/{p['n']}): {'BEYOND spread' if p['beyond_spread'] else 'within spread'}")
            lines.append(f"{e['dataset']:<11} {e['host']:<8} {e['arm']} - {reference}: " + "; ".join(parts))
    return lines


def _load(path: Path) -> dict:
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); move it away to start a new benchmark") from exc
    return {}


def _settings(settings: dict | None) -> dict | None:
    """``settings`` with the keys added since (:data:`LATER_SETTINGS`) at the value older files implied."""
    return None if settings is None else {**LATER_SETTINGS, **settings}


def merge_results(paths: Sequence[Path]) -> dict:
    """The union of results files written by workers that split one benchmark (``--arms`` / ``--seeds``).

    Settings must be equal; a run (dataset, host, arm, seed) found in two files is an error, not a silent
    pick. Machine facts and costs come from the first file that has them.
    """
    merged: dict = {}
    seen: dict[tuple, Path] = {}
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"{path} does not exist")
        doc = _load(path)
        if not doc.get("rows"):
            raise ConfigError(f"{path} holds no results")
        if merged and _settings(doc.get("settings")) != _settings(merged["settings"]):
            raise ConfigError(f"{path} was made with settings {doc.get('settings')}, {paths[0]} with "
                              f"{merged['settings']}; only runs of one budget can be summarised together")
        if merged and doc.get("corrections", []) != merged["corrections"]:
            raise ConfigError(f"{path} has corrections {doc.get('corrections', [])}, {paths[0]} has "
                              f"{merged['corrections']}; apply the same ones to both first")
        merged.setdefault("settings", doc.get("settings"))
        merged.setdefault("corrections", doc.get("corrections", []))
        merged.setdefault("machine", doc.get("machine"))
        merged.setdefault("costs", {})
        for host, cost in (doc.get("costs") or {}).items():
            merged["costs"].setdefault(host, cost)
        for r in doc["rows"]:
            key = (r["dataset"], r["host"], r["arm"], r["seed"])
            if key in seen:
                raise ConfigError(f"run {'/'.join(map(str, key))} is in both {seen[key]} and {path}; keep one")
            seen[key] = path
            merged.setdefault("rows", []).append(r)
    return merged


def run(args: dict) -> dict[str, Any]:
    """Run (or resume) the benchmark; options as :func:`add_arguments` defines them."""
    a = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
    unknown = sorted(set(args) - set(a))
    if unknown:
        raise ConfigError(f"bench fdep got unknown options {unknown}; known: {sorted(a)}")
    a.update(args)
    if a["summarize"]:
        doc = merge_results([Path(f) for f in ([a["summarize"]] if isinstance(a["summarize"], str) else a["summarize"])])
        if a["out"]:
            write_json(doc, a["out"])
        return {**doc, "summary": summarize(doc["rows"]), **({"json": str(a["out"])} if a["out"] else {})}
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
    settings = {k: a[k] for k in ("epochs", "crop", "batch", "lr", "loss", "val_every", "foundation", "prior_prob",
                                     "prior_weight_std", "kd_weight")}
    if doc.get("settings") and _settings(doc["settings"]) != settings:
        raise ConfigError(f"{out} was made with other settings {doc['settings']}; use another --out")
    doc.setdefault("settings", settings)
    doc.setdefault("machine", machine_info())
    rows: list[dict] = doc.setdefault("rows", [])
    costs: dict = doc.setdefault("costs", {})
    if a["cost_steps"] > 0:
        for host in hosts:
            if host not in costs:
                costs[host] = host_costs(host, a["foundation"], size=a["cost_size"], batch=a["cost_batch"],
                                         steps=a["cost_steps"])
                if out:
                    write_json(doc, out)
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


def _prior_text(settings: dict) -> str:
    if not settings.get("prior_prob"):
        return "off"
    std = settings.get("prior_weight_std")  # absent in files made before the weights were redrawn
    return f"{settings['prior_prob']} (logit weights {'kept' if std is None else f'std {std}'})"


def format_table(result: dict[str, Any]) -> str:
    s = result.get("settings", {})
    lines = [
        f"budget: {s.get('epochs')} epochs, {s.get('crop')} crops, batch {s.get('batch')}, Adam {s.get('lr')}, "
        f"loss {s.get('loss')}, output prior {_prior_text(s)}; foundation {s.get('foundation')}; "
        "test split, native resolution, mean +/- std over seeds",
        f"{'dataset':<11} {'host':<8} {'arm':<12} {'n':>2} {'dead':>4} {'IoU':>15} {'nIoU':>15} {'Pd':>15} {'Fa x1e-6':>17} "
        f"{'HSE':>15} {'dIoU vs host':>15} {'dHSE vs host':>15} {'epoch x host':>13}",
    ]
    costs = result.get("costs") or {}
    if costs:
        lines.insert(0, "")
        for c in reversed(list(costs.values())):
            lines.insert(0, (
                f"{c['host']:<8} CO-ISD step {c['fdep_step_s']:.3f} s vs host {c['host_step_s']:.3f} s: "
                f"x{c['step_ratio']:.2f} | exported eval {c['exported_eval_s'] * 1e3:.1f} ms vs plain "
                f"{c['plain_eval_s'] * 1e3:.1f} ms: x{c['latency_ratio']:.3f} | params {c['params_exported']:,} vs "
                f"{c['params_plain']:,}, MACs {c['macs_exported'] / 1e9:.3f}G vs {c['macs_plain'] / 1e9:.3f}G"))
        lines.insert(0, "costs (random batch, cached priors; interleaved medians):")
    for e in result.get("summary", []):
        vs_host = e["paired"].get("host", {})
        d_iou = _pm((vs_host["iou"]["mean"], vs_host["iou"]["std"])) if vs_host else "-"
        d_hse = _pm((vs_host["hse"]["mean"], vs_host["hse"]["std"]), 1.0) if vs_host else "-"
        ratio = f"{e['epoch_ratio_vs_host'][0]:.2f}" if "epoch_ratio_vs_host" in e else "-"
        lines.append(
            f"{e['dataset']:<11} {e['host']:<8} {e['arm']:<12} {len(e['seeds']):>2} {len(e['collapsed']):>4} {_pm(e['iou']):>15} "
            f"{_pm(e['niou']):>15} {_pm(e['pd']):>15} {_pm(e['fa'], 1e6):>17} {_pm(e['hse'], 1.0):>15} "
            f"{d_iou:>15} {d_hse:>15} {ratio:>13}"
        )
    dead = [f"{e['dataset']} {e['host']} {e['arm']} seed {', '.join(map(str, e['collapsed']))}"
            for e in result.get("summary", []) if e["collapsed"]]
    if dead:
        lines += ["", "dead = runs that never predicted a target on val (kept in every mean): " + "; ".join(dead)]
    paired = verdicts(result.get("summary", []))
    if paired:
        lines += ["", "paired per-seed differences (test split; beyond spread = the 95% CI of the mean lies above 0):",
                  *paired]
    lines += [f"correction: {c}" for c in result.get("corrections", [])]
    if result.get("json"):
        lines.append(f"results: {result['json']}")
    return "\n".join(lines)


def format_markdown(result: dict[str, Any]) -> str:
    """The summary as two Markdown tables (per arm; paired comparisons), for pasting into docs unchanged."""
    lines = ["| data | host | arm | seeds | dead | IoU | nIoU | Pd | Fa x1e-6 | HSE |", "|---" * 10 + "|"]
    for e in result.get("summary", []):
        lines.append(f"| {e['dataset']} | {e['host']} | {e['arm']} | {len(e['seeds'])} | {len(e['collapsed'])} | "
                     f"{_pm(e['iou'])} | {_pm(e['niou'])} | {_pm(e['pd'])} | {_pm(e['fa'], 1e6, 0)} | "
                     f"{_pm(e['hse'], 1.0)} |")
    lines += ["", "| data | host | comparison | dIoU (95% CI) | wins | dHSE (95% CI) | wins | beyond spread (IoU / HSE) |",
              "|---" * 8 + "|"]
    for e in result.get("summary", []):
        for reference, by_metric in e["paired"].items():
            cells = []
            for k, _, scale in PAIRED_METRICS:
                pd = by_metric[k]
                cells += [f"{pd['mean'] * scale:+.2f} ({_ci_text(pd, scale, ' .. ')})", f"{pd['wins']}/{pd['n']}"]
            verdict = " / ".join("yes" if by_metric[k]["beyond_spread"] else "no" for k, _, _ in PAIRED_METRICS)
            lines.append(f"| {e['dataset']} | {e['host']} | {e['arm']} - {reference} | {' | '.join(cells)} | {verdict} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="irfoundry bench fdep", description=__doc__.split("\n")[0],
                                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter))
    args = vars(parser.parse_args(argv))
    result = run(args)
    print(format_markdown(result) if args["markdown"] else format_table(result))
    return 0
