"""``irfoundry models``: list host networks; import reference checkpoints."""

from __future__ import annotations

import argparse
import json
import sys

EPILOG_LIST = """examples:
  irfoundry models                 # name, params, MACs at 1x1x256x256, published values
  irfoundry models --json          # the same as JSON
"""

EPILOG_IMPORT = """Reads a checkpoint saved by the model's reference code (BasicIRSTD / LESPS .pth.tar with a
'state_dict' whose keys carry the 'model.' prefix of their Net wrapper, or DNANet's 'module.' prefix)
with torch.load(weights_only=True) - no code is unpickled - maps it onto irfoundry's key names, loads it
strictly, and writes safetensors + a JSON sidecar usable by every irfoundry command.

examples:
  irfoundry models import log/NUAA-SIRST/ACM_400.pth.tar --model acm --out weights/acm_nuaa.safetensors
  irfoundry models import DNANet_best.pth.tar --model dnanet --out dnanet.safetensors
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list host networks (params, MACs); import reference checkpoints",
        description="List registered host networks with measured params and MACs at 1x1x256x256.",
        epilog=EPILOG_LIST,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-macs", action="store_true", help="skip the MAC count (faster)")
    p.set_defaults(func=cmd_list)
    msub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    imp = msub.add_parser(
        "import",
        help="import a reference-code checkpoint (.pth / .pth.tar)",
        description="Import a checkpoint written by a host's reference code.",
        epilog=EPILOG_IMPORT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("checkpoint", help="reference .pth / .pth.tar file")
    imp.add_argument("--model", required=True, help="registry name of the architecture, e.g. acm, alcnet, dnanet")
    imp.add_argument("--out", required=True, help="output .safetensors path (a .json sidecar is written beside it)")
    imp.add_argument("--in-chans", type=int, default=1, help="input channels of the checkpoint (default 1)")
    imp.add_argument("--norm", default=None, metavar="MEAN,STD|PRESET",
                     help="the normalisation the checkpoint was trained with: MEAN,STD on 0-255 grey or a preset "
                          "(sirst3, nuaa-sirst, nudt-sirst, irstd-1k, ...); eval / predict refuse weights without it")
    imp.set_defaults(func=cmd_import)


def model_table(with_macs: bool = True) -> list[dict]:
    """One row per registered model: name, params, MACs (at 1x1x256x256) and the published values."""
    from irfoundry.models import create_model, list_models, model_entry
    from irfoundry.models.base import count_params
    from irfoundry.models.complexity import count_macs

    rows = []
    for name in list_models():
        entry = model_entry(name)
        model = create_model(name)
        rows.append(
            {
                "name": name,
                "params": count_params(model),
                "macs": count_macs(model) if with_macs else None,
                "published_params": entry.published_params,
                "published_macs": entry.published_macs,
                "paper": entry.paper,
            }
        )
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    rows = model_table(with_macs=not args.no_macs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0

    def m(v: float | None, scale: float, unit: str) -> str:
        return "-" if v is None else f"{v / scale:.3f}{unit}"

    print(f"{'model':<12} {'params':>10} {'published':>10} {'MACs@256':>10} {'published':>10}  paper")
    for r in rows:
        print(
            f"{r['name']:<12} {m(r['params'], 1e6, 'M'):>10} {m(r['published_params'], 1e6, 'M'):>10} "
            f"{m(r['macs'], 1e9, 'G'):>10} {m(r['published_macs'], 1e9, 'G'):>10}  {r['paper']}"
        )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from irfoundry.models.checkpoint import import_reference_checkpoint, save_weights

    from irfoundry.data.norm_presets import parse_norm

    norm = parse_norm(args.norm) if args.norm is not None else None  # checked before anything is read
    model = import_reference_checkpoint(args.checkpoint, args.model, in_chans=args.in_chans)
    extra = {"imported_from": str(args.checkpoint)}
    if norm is not None:
        extra.update(norm={"mean": norm["mean"], "std": norm["std"]}, norm_source=norm["source"])
    out = save_weights(model, args.out, extra=extra)
    print(f"imported {args.checkpoint} as {model.model_name} -> {out} (+ {out.with_suffix('.json').name})")
    if norm is None:
        print("note: no --norm given: eval / predict will ask for the statistics the checkpoint was trained with "
              "(--norm MEAN,STD or a preset such as sirst3)", file=sys.stderr)
    return 0
