"""``irfoundry bench train``: training and inference throughput (images/s) of host networks on this machine.

Per host, on one random batch ``batch x 1 x size x size`` (standard-normal image, ~0.5 % target pixels):

* ``train``: a full training step of the ``supervised`` method: ``zero_grad``, forward in training mode,
  the soft-IoU loss over every deep-supervision output (MSHNet after its warm-up: all five outputs),
  backward, ``Adam.step``;
* ``eval``: a forward pass in eval mode under ``torch.inference_mode`` (the deployable output only).

Each is run ``warmup`` times untimed, then ``steps`` times timed with ``time.perf_counter`` (CUDA
synchronised); the reported time is the median step, images/s is ``batch / median``. No data loading,
no Lightning: this is the network's cost. Numbers depend on the machine and its load; the table header
names the CPU, the torch version and the number of torch threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from irfoundry.jsonio import write_json
from irfoundry.errors import ConfigError

#: registered hosts that exist for tests only and are skipped by default
TEST_ONLY = ("unet_tiny",)

EPILOG = """examples:
  irfoundry bench train                                    # every host, 256x256, batch 8, 2 + 5 steps
  irfoundry bench train --models acm,alcnet --steps 10 --json bench_train.json
  OMP_NUM_THREADS=2 irfoundry bench train --threads 2 --models mshnet
"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``irfoundry bench train``."""
    parser.add_argument("--models", default="all",
                        help="comma-separated host names, or 'all' (default: every host but the test-only unet_tiny)")
    parser.add_argument("--size", type=int, default=256, help="input height = width (multiple of 32; default 256)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as torch starts)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the random batch")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON here")
    return parser


def resolve_models(spec: str | Sequence[str]) -> list[str]:
    """``"all"`` -> every registered host except :data:`TEST_ONLY`; else the listed names, checked."""
    from irfoundry.models import list_models

    known = list_models()
    if isinstance(spec, str):
        if spec.strip().lower() == "all":
            return [m for m in known if m not in TEST_ONLY]
        spec = [s for s in spec.split(",") if s.strip()]
    names = [s.strip().lower() for s in spec]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"--models: unknown host {unknown[0] if unknown else '(none given)'}; "
                          f"choose from {', '.join(known)} or 'all'")
    return names


def machine_info() -> dict[str, Any]:
    """CPU model, logical CPUs, torch version and threads, ``OMP_NUM_THREADS``, platform."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def _median_seconds(fn: Callable[[], Any], steps: int, warmup: int, sync: Callable[[], None]) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def bench_model(name: str, *, size: int = 256, batch: int = 8, steps: int = 5, warmup: int = 2,
                device: str = "cpu", seed: int = 0) -> dict[str, Any]:
    """Median training-step and eval-forward times of host ``name`` (see the module docstring)."""
    import torch

    from irfoundry.engine.config import MethodConfig
    from irfoundry.methods.supervised import Supervised
    from irfoundry.models import create_model
    from irfoundry.models.base import count_params

    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(seed)
    host = create_model(name).to(dev)
    # warm_epochs -1: the full post-warm-up loss for hosts with a warm-up (MSHNet); a no-op for the others
    method = Supervised(host, MethodConfig(loss="softiou", options={"warm_epochs": -1})).to(dev)
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 1, size, size, generator=g).to(dev)
    masks = (torch.rand(batch, 1, size, size, generator=g) < 0.005).float().to(dev)
    data = {"image": images, "target": masks}

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss, _ = method.training_loss(data)
        loss.backward()
        opt.step()

    host.train()
    t_train, train_times = _median_seconds(train_step, steps, warmup, sync)
    host.eval()
    with torch.inference_mode():
        t_eval, eval_times = _median_seconds(lambda: host(images), steps, warmup, sync)
    return {
        "model": name,
        "params": count_params(host),
        "train_step_s": t_train,
        "train_images_per_s": batch / t_train,
        "eval_step_s": t_eval,
        "eval_images_per_s": batch / t_eval,
        "train_step_times_s": train_times,
        "eval_step_times_s": eval_times,
    }


def run(args: dict) -> dict[str, Any]:
    """Benchmark the hosts ``args["models"]``; options as :func:`add_arguments` defines them."""
    import torch

    a = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
    unknown = sorted(set(args) - set(a))
    if unknown:
        raise ConfigError(f"bench train got unknown options {unknown}; known: {sorted(a)}")
    a.update(args)
    if a["size"] <= 0 or a["size"] % 32:
        raise ConfigError(f"--size must be a positive multiple of 32 (host networks need it), got {a['size']}")
    for key in ("batch", "steps"):
        if a[key] < 1:
            raise ConfigError(f"--{key} must be >= 1, got {a[key]}")
    if a["warmup"] < 0:
        raise ConfigError(f"--warmup must be >= 0, got {a['warmup']}")
    models = resolve_models(a["models"])
    if a["threads"]:
        torch.set_num_threads(int(a["threads"]))
    settings = {k: a[k] for k in ("size", "batch", "steps", "warmup", "device", "seed")}
    result: dict[str, Any] = {"machine": {**machine_info(), "device": a["device"]}, "settings": settings,
                              "results": []}
    for name in models:
        result["results"].append(bench_model(name, size=a["size"], batch=a["batch"], steps=a["steps"],
                                             warmup=a["warmup"], device=a["device"], seed=a["seed"]))
    if a["json"]:
        result["json"] = str(write_json(result, a["json"]))
    return result


def format_table(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']} with {m['torch_threads']} "
        f"threads (OMP_NUM_THREADS={m['omp_num_threads']}), device {m['device']}",
        f"input 1x{s['size']}x{s['size']}, batch {s['batch']}, median of {s['steps']} steps after {s['warmup']} "
        "warm-up steps; train = forward + supervised loss (all outputs) + backward + Adam step",
        f"{'model':<10} {'params':>11} {'train img/s':>12} {'train s/step':>13} {'eval img/s':>11} {'eval s/step':>12}",
    ]
    for r in result["results"]:
        lines.append(
            f"{r['model']:<10} {r['params']:>11,} {r['train_images_per_s']:>12.2f} {r['train_step_s']:>13.3f} "
            f"{r['eval_images_per_s']:>11.2f} {r['eval_step_s']:>12.3f}"
        )
    if result.get("json"):
        lines.append(f"results: {result['json']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="irfoundry bench train", description=__doc__.split("\n")[0]))
    print(format_table(run(vars(parser.parse_args(argv)))))
    return 0
