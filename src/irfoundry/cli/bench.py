"""``irfoundry bench NAME``: measurements on this machine; a thin shell around :mod:`irfoundry.bench`.

Adding a benchmark is one line in :data:`BENCHMARKS`: its module offers ``add_arguments(parser)``,
``run(args: dict) -> dict`` and ``format_table(result) -> str`` (see :mod:`irfoundry.bench`).
"""

from __future__ import annotations

import argparse
import importlib

#: subcommand -> (module, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "train": ("irfoundry.bench.train", "training / inference images/s of every host network"),
    "metrics": ("irfoundry.bench.metrics", "metrics engine vs the naive reference on SIRST / NUDT test splits"),
    "foundation": ("irfoundry.bench.foundation", "epoch cost of a frozen foundation model with / without the feature cache"),
    "step-cost": ("irfoundry.bench.step_cost", "a method's training step over the host's, and what its export costs"),
    "speed": ("irfoundry.bench.speed", "params, MACs, latency and throughput: PyTorch eager vs ONNX Runtime"),
    "tiling": ("irfoundry.bench.tiling", "tiled inference on a large frame: its overhead and its difference per host"),
    "predict": ("irfoundry.bench.predict", "the predict pipeline on a folder of frames vs the network's own throughput"),
}

EPILOG = """examples:
  irfoundry bench train                          # every host: images/s of a training step and of inference
  irfoundry bench train --models acm,mshnet --json bench_train.json
  irfoundry bench metrics --naive-max-images 40  # fast metrics vs the naive reference (source checkout)
  irfoundry bench foundation --data ../shared/data/sirst:train --max-batches 8
  irfoundry bench step-cost --hosts acm,alcnet --method fdep --threads 1
  irfoundry bench speed --models acm,dnanet --sizes 256 --batches 16 --threads 2
  irfoundry bench tiling --models dnanet --threads 2
  irfoundry bench predict --model acm --frames 1000 --threads 2
  (FDEP's gain over seeds is a study: irfoundry study run fdep_gain)
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks on this machine (training speed, metrics engine, ...)",
                       description="Measure on this machine; every benchmark prints a table and can write JSON.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    bsub.required = True
    for name, (module_name, help_text) in BENCHMARKS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # e.g. an optional extra is not installed: only this benchmark is lost
            q = bsub.add_parser(name, help=f"{help_text} (unavailable: {exc})", add_help=True)
            q.set_defaults(func=_unavailable(name, exc))
            continue
        q = bsub.add_parser(name, help=help_text, description=module.__doc__,
                            epilog=getattr(module, "EPILOG", None), formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(q)
        own = [a.dest for a in q._actions if a.dest != argparse.SUPPRESS and a.dest != "help"]
        q.set_defaults(func=_runner(module, own))


def _runner(module, dests: list[str]):
    def cmd(args: argparse.Namespace) -> int:
        result = module.run({k: getattr(args, k) for k in dests})
        markdown = getattr(args, "markdown", False) and hasattr(module, "format_markdown")
        print(module.format_markdown(result) if markdown else module.format_table(result))
        return 0 if result.get("ok", True) else 1

    return cmd


def _unavailable(name: str, exc: ImportError):
    def cmd(args: argparse.Namespace) -> int:
        from irfoundry.errors import IRFoundryError

        raise IRFoundryError(f"bench {name} cannot run here: {exc} (install the extra it needs)")

    return cmd
