"""``irfoundry bench speed``: parameters, MACs, latency and throughput of host networks, PyTorch eager vs
ONNX Runtime, at several input sizes and batch sizes.

Protocol, per host (seeded random weights: speed does not depend on them) and per input ``batch x 1 x H x
W`` (standard-normal, already normalised and a multiple of 32, as the inference path hands it over):

* ``torch``: ``host(x)`` in eval mode under ``torch.inference_mode`` (the main output);
* ``onnx``: the host exported by :func:`irfoundry.deploy.onnx.export_onnx` (TorchScript exporter, opset
  17), run by an ONNX Runtime session with as many intra-op threads as torch has (CPU provider; CUDA when
  ONNX Runtime offers it and ``--device cuda``).

Each case runs ``warmup`` times untimed, then up to ``repeats`` times timed (``time.perf_counter``, CUDA
synchronised); a case whose warm-up call took longer than ``--budget`` seconds is timed fewer times (at
least once; the row says how many). Latency is the median call, throughput ``batch / median``. The header
names the CPU, torch and ONNX Runtime versions and the thread count; numbers from a loaded machine are not
comparable (run it alone, ``OMP_NUM_THREADS`` set).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from irfoundry.bench.train import machine_info, resolve_models
from irfoundry.errors import ConfigError
from irfoundry.jsonio import write_json

EPILOG = """examples:
  OMP_NUM_THREADS=2 irfoundry bench speed --threads 2 --json speed.json      # every host, the full grid
  irfoundry bench speed --models acm,dnanet --sizes 256 --batches 16 --threads 2
  irfoundry bench speed --models acm --sizes 256,512,1280x1024 --backends torch,onnx --repeats 10
"""

BACKENDS = ("torch", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--models", default="all", help="comma-separated hosts, or 'all' (every host but unet_tiny)")
    parser.add_argument("--sizes", default="256,512,1280x1024",
                        help="input sizes: N (N x N) or WxH, comma-separated (multiples of 32)")
    parser.add_argument("--batches", default="1,16", help="batch sizes, comma-separated (default 1,16)")
    parser.add_argument("--backends", default="torch,onnx", help="torch, onnx or both (default both)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per case (default 1)")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds a case may take: slower cases are timed fewer times (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON here")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return parser


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"256,1280x1024"`` -> ``[(256, 256), (1024, 1280)]`` as ``(height, width)``, multiples of 32."""
    sizes = []
    for item in str(text).split(","):
        item = item.strip().lower()
        try:
            w, h = (int(v) for v in item.split("x")) if "x" in item else (int(item), int(item))
        except ValueError:
            raise ConfigError(f"--sizes: {item!r} is not N or WxH") from None
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise ConfigError(f"--sizes: {item} must be positive multiples of 32 (host networks need them)")
        sizes.append((h, w))
    return sizes


def _time(fn: Callable[[], Any], repeats: int, warmup: int, budget: float, sync: Callable[[], None]) -> dict:
    t0 = time.perf_counter()
    for _ in range(max(warmup, 1)):
        fn()
    sync()
    first = (time.perf_counter() - t0) / max(warmup, 1)
    n = max(1, min(repeats, int(budget // max(first, 1e-9))))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return {"latency_s": statistics.median(times), "repeats": n, "times_s": times}


def bench_host(name: str, sizes, batches, backends, *, repeats: int, warmup: int, budget: float, device: str,
               seed: int, folder: Path) -> list[dict]:
    """Rows of one host: one per (size, batch, backend)."""
    import torch

    from irfoundry.deploy.onnx import OnnxNetwork, export_onnx
    from irfoundry.models import create_model
    from irfoundry.models.base import count_params, input_multiple, main_output
    from irfoundry.models.complexity import complexity

    torch.manual_seed(seed)
    dev = torch.device(device)
    host = create_model(name).eval()
    size = complexity(host, (1, 1, 256, 256))
    params = count_params(host)
    runners = {}
    if "torch" in backends:
        model = host.to(dev)
        runners["torch"] = lambda x: main_output(model(x.to(dev)))
    if "onnx" in backends:
        onnx_file = folder / f"{name}.onnx"
        export_onnx(host.cpu(), onnx_file, {"norm": {"mean": 0.0, "std": 1.0}, "input_multiple": input_multiple(host),
                                            "padding": "multiple", "threshold": 0.5, "model_name": name})
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if dev.type == "cuda" else ["CPUExecutionProvider"]
        net = OnnxNetwork(onnx_file, providers=providers)
        runners["onnx"] = net
        host.to(dev)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    rows = []
    g = torch.Generator().manual_seed(seed)
    for h, w in sizes:
        for b in batches:
            x = torch.randn(b, 1, h, w, generator=g)
            for backend, fn in runners.items():
                with torch.inference_mode():
                    t = _time(lambda: fn(x), repeats, warmup, budget, sync)
                rows.append({"model": name, "params": params, "macs_at_256": size["macs"], "height": h, "width": w,
                             "batch": b, "backend": backend, **t, "images_per_s": b / t["latency_s"]})
    return rows


def run(args: dict) -> dict[str, Any]:
    import torch

    a = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
    unknown = sorted(set(args) - set(a))
    if unknown:
        raise ConfigError(f"bench speed got unknown options {unknown}; known: {sorted(a)}")
    a.update(args)
    models = resolve_models(a["models"])
    sizes = parse_sizes(a["sizes"])
    try:
        batches = [int(v) for v in str(a["batches"]).split(",")]
    except ValueError:
        raise ConfigError(f"--batches {a['batches']!r} is not a comma list of integers") from None
    backends = [s.strip() for s in str(a["backends"]).split(",") if s.strip()]
    if not backends or any(s not in BACKENDS for s in backends) or any(b < 1 for b in batches):
        raise ConfigError(f"--backends must list {' / '.join(BACKENDS)} and --batches positive sizes")
    if a["repeats"] < 1 or a["warmup"] < 0 or a["budget"] <= 0:
        raise ConfigError("--repeats >= 1, --warmup >= 0 and --budget > 0 are needed")
    if a["threads"]:
        torch.set_num_threads(int(a["threads"]))
    info = machine_info()
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        if "onnx" in backends:
            raise ConfigError("--backends onnx needs the onnx extra: pip install 'irfoundry[onnx]'") from None
    settings = {k: a[k] for k in ("repeats", "warmup", "budget", "device", "seed")}
    settings.update(sizes=[f"{w}x{h}" for h, w in sizes], batches=batches, backends=backends)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="irfoundry-speed-") as tmp:
        for name in models:
            rows += bench_host(name, sizes, batches, backends, repeats=a["repeats"], warmup=a["warmup"],
                               budget=a["budget"], device=a["device"], seed=a["seed"], folder=Path(tmp))
    result = {"machine": {**info, "device": a["device"]}, "settings": settings, "results": rows,
              "onnx_over_torch": _ratios(rows)}
    if a["json"]:
        result["json"] = str(write_json(result, a["json"]))
    return result


def _ratios(rows: list[dict]) -> list[dict]:
    """ONNX Runtime throughput over eager PyTorch's, per (model, size, batch) measured with both."""
    by = {(r["model"], r["height"], r["width"], r["batch"], r["backend"]): r["images_per_s"] for r in rows}
    out = []
    for (m, h, w, b, backend), v in by.items():
        if backend == "onnx" and (m, h, w, b, "torch") in by:
            out.append({"model": m, "height": h, "width": w, "batch": b, "ratio": v / by[(m, h, w, b, "torch")]})
    return out


def _header(result: dict) -> list[str]:
    m, s = result["machine"], result["settings"]
    return [f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']}, onnxruntime "
            f"{m.get('onnxruntime', '-')}, {m['torch_threads']} threads (OMP_NUM_THREADS={m['omp_num_threads']}), "
            f"device {m['device']}",
            f"median of up to {s['repeats']} calls after {s['warmup']} warm-up (budget {s['budget']} s per case); "
            "seeded random weights; MACs at 1x1x256x256"]


def format_table(result: dict) -> str:
    ratio = {(r["model"], r["height"], r["width"], r["batch"]): r["ratio"] for r in result["onnx_over_torch"]}
    lines = _header(result)
    lines.append(f"{'model':<9} {'params':>10} {'GMACs':>7} {'input':>10} {'batch':>5} {'backend':>7} "
                 f"{'latency ms':>11} {'img/s':>9} {'n':>3} {'onnx/torch':>10}")
    for r in result["results"]:
        q = ratio.get((r["model"], r["height"], r["width"], r["batch"])) if r["backend"] == "onnx" else None
        lines.append(f"{r['model']:<9} {r['params']:>10,} {r['macs_at_256'] / 1e9:>7.2f} {r['width']}x{r['height']:<5}"
                     f"{r['batch']:>5} {r['backend']:>7} {1e3 * r['latency_s']:>11.1f} {r['images_per_s']:>9.2f} "
                     f"{r['repeats']:>3} {'' if q is None else f'{q:.2f}x':>10}")
    if result.get("json"):
        lines.append(f"results: {result['json']}")
    return "\n".join(lines)


def format_markdown(result: dict) -> str:
    ratio = {(r["model"], r["height"], r["width"], r["batch"]): r["ratio"] for r in result["onnx_over_torch"]}
    lines = [f"_{line}_  " for line in _header(result)] + [
        "", "| host | params | GMACs (256) | input | batch | backend | latency (ms) | images/s | calls | ONNX / torch |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|---:|"]
    for r in result["results"]:
        q = ratio.get((r["model"], r["height"], r["width"], r["batch"])) if r["backend"] == "onnx" else None
        lines.append(f"| {r['model']} | {r['params']:,} | {r['macs_at_256'] / 1e9:.2f} | {r['width']}x{r['height']} | "
                     f"{r['batch']} | {r['backend']} | {1e3 * r['latency_s']:.1f} | {r['images_per_s']:.2f} | "
                     f"{r['repeats']} | {'' if q is None else f'{q:.2f}x'} |")
    return "\n".join(lines)
