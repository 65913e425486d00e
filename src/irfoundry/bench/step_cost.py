"""``irfoundry bench step-cost``: what a method's training step costs over the host's, and what it ships.

For every host, on one random batch (``--batch`` x 1 x ``--size`` x ``--size``, a sparse random target),
interleaved medians of ``--steps`` timings after 2 warm-up rounds:

* a training step of the method (``--method``, options from ``--option KEY=VALUE``; its per-crop features,
  e.g. FDEP's cached foundation maps, are random tensors of the declared shapes, as the feature cache would
  serve them) against a plain supervised step of the same host (warm-up off): ``step_ratio``;
* the eval forward of the method's exported network (saved and reloaded, strict) against a freshly built
  plain host: ``latency_ratio``, with both networks' parameters and MACs (equal for FDEP: the host ships).

The step runs through :class:`~irfoundry.methods.context.LocalStepContext` (plain PyTorch, one process), so
Lightning's overhead is not in it; the run's epoch ratio is measured by ``irfoundry study run``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from irfoundry.jsonio import write_json
from irfoundry.errors import ConfigError

EPILOG = """examples:
  irfoundry bench step-cost --hosts acm,alcnet,mshnet,dnanet --method fdep --threads 1
  irfoundry bench step-cost --hosts acm --method fdep --option kd_weight=1.0 --json cost.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--hosts", default="acm,alcnet,mshnet", help="comma-separated hosts (default acm,alcnet,mshnet)")
    parser.add_argument("--method", default="fdep", help="method to time against the plain host (default fdep)")
    parser.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="a method.options value (YAML scalar; repeatable)")
    parser.add_argument("--loss", default="softiou", help="loss of both steps (default softiou)")
    parser.add_argument("--size", type=int, default=256, help="input side (default 256)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: leave as is)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the result here")
    return parser


def _options(items: list[str]) -> dict:
    from irfoundry.engine.config import parse_override

    return {parse_override(f"method.{item}")[0][-1]: parse_override(f"method.{item}")[1] for item in items}


def _timed_step(method, batch: dict):
    """One optimisation step of ``method`` on ``batch`` through a local step context."""
    from irfoundry.methods.context import LocalStepContext
    from irfoundry.optim import OptimConfig, ScheduleLength

    specs = method.configure_optimizers(OptimConfig(lr=1e-4), ScheduleLength(epochs=1, steps=1))
    ctx = LocalStepContext(method, {s.name: s.optimizer for s in specs})
    method.train()

    def step() -> None:
        for s in specs:
            s.optimizer.zero_grad(set_to_none=True)
        loss = method.training_step(batch, ctx)
        if method.automatic_optimization:
            ctx.manual_backward(loss)
            for s in specs:
                s.optimizer.step()

    return step


def method_cost(host_name: str, method_name: str, options: dict, *, loss: str = "softiou", size: int = 256,
                batch: int = 8, steps: int = 10, seed: int = 0) -> dict[str, Any]:
    """The step and export costs of one host (see the module docstring)."""
    import tempfile

    import torch

    from irfoundry.bench.train import _median_seconds
    from irfoundry.engine.config import MethodConfig
    from irfoundry.methods import build_method
    from irfoundry.methods.context import BuildEnv
    from irfoundry.models import create_model
    from irfoundry.models.checkpoint import load_weights, save_weights
    from irfoundry.models.complexity import complexity

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 1, size, size, generator=g)
    target = (torch.rand(batch, 1, size, size, generator=g) < 0.005).float()
    method = build_method(MethodConfig(name=method_name, loss=loss, options=options), create_model(host_name),
                          BuildEnv(norm={"mean": 0.3, "std": 0.2}))
    mbatch: dict = {"image": images, "target": target, "id": [str(i) for i in range(batch)]}
    for req in method.data_requests().features:
        mbatch[req.name] = [torch.randn(batch, d["channels"], -(-size // d["stride"]), -(-size // d["stride"]),
                                        generator=g) for d in req.model.feature_info]
    plain = build_method(MethodConfig(name="supervised", loss=loss, options={"warm_epochs": -1}), create_model(host_name))
    timed = {"host": _timed_step(plain, {"image": images, "target": target}), "method": _timed_step(method, mbatch)}
    runs = {k: _median_seconds(fn, steps, 2, lambda: None)[0] for k, fn in timed.items()}
    with tempfile.TemporaryDirectory() as tmp:
        exported = load_weights(save_weights(method.export_model(), f"{tmp}/export.safetensors")).eval()
    reference = create_model(host_name).eval()
    x = images[:1]
    lat: dict[str, list[float]] = {"plain": [], "exported": []}
    with torch.inference_mode():
        for _ in range(2):
            reference(x), exported(x)
        for _ in range(steps):  # interleaved, so machine load hits both alike
            for key, net in (("plain", reference), ("exported", exported)):
                t0 = time.perf_counter()
                net(x)
                lat[key].append(time.perf_counter() - t0)
    plain_c, exported_c = complexity(reference), complexity(exported)
    plain_s, exported_s = statistics.median(lat["plain"]), statistics.median(lat["exported"])
    return {
        "host": host_name, "method": method_name, "options": options, "size": size, "batch": batch, "steps": steps,
        "host_step_s": runs["host"], "method_step_s": runs["method"], "step_ratio": runs["method"] / runs["host"],
        "plain_eval_s": plain_s, "exported_eval_s": exported_s, "latency_ratio": exported_s / plain_s,
        "params_plain": plain_c["params"], "params_exported": exported_c["params"],
        "macs_plain": plain_c["macs"], "macs_exported": exported_c["macs"],
    }


def run(args: dict) -> dict[str, Any]:
    """Measure every host; options as :func:`add_arguments` defines them."""
    a = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
    unknown = sorted(set(args) - set(a))
    if unknown:
        raise ConfigError(f"bench step-cost got unknown options {unknown}; known: {sorted(a)}")
    a.update(args)
    from irfoundry.bench.train import machine_info
    from irfoundry.models import list_models

    hosts = [h.strip() for h in a["hosts"].split(",") if h.strip()]
    missing = [h for h in hosts if h not in list_models()]
    if missing:
        raise ConfigError(f"--hosts {missing} are not registered models ({', '.join(list_models())})")
    if a["size"] <= 0 or a["size"] % 32 or a["steps"] < 1 or a["batch"] < 1:
        raise ConfigError("--size must be a positive multiple of 32, --steps and --batch positive")
    if a["threads"]:
        import torch

        torch.set_num_threads(int(a["threads"]))
    options = _options(a["options"])
    result = {"benchmark": "step-cost", "machine": machine_info(),
              "rows": [method_cost(h, a["method"], options, loss=a["loss"], size=a["size"], batch=a["batch"],
                                   steps=a["steps"], seed=a["seed"]) for h in hosts]}
    if a["json"]:
        write_json(result, a["json"])
    return result


def format_table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"{m['cpu']}, {m['torch_threads']} torch threads (random batch, cached features; interleaved medians)"]
    for c in result["rows"]:
        lines.append(
            f"{c['host']:<8} {c['method']} step {c['method_step_s']:.3f} s vs host {c['host_step_s']:.3f} s: "
            f"x{c['step_ratio']:.2f} | exported eval {c['exported_eval_s'] * 1e3:.1f} ms vs plain "
            f"{c['plain_eval_s'] * 1e3:.1f} ms: x{c['latency_ratio']:.3f} | params {c['params_exported']:,} vs "
            f"{c['params_plain']:,}, MACs {c['macs_exported'] / 1e9:.3f}G vs {c['macs_plain'] / 1e9:.3f}G")
    return "\n".join(lines)
