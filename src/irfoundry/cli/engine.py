"""``irfoundry train | configs | eval | eval-maps | quickstart``: thin shells around :mod:`irfoundry.engine`
(``predict`` and ``export``: :mod:`irfoundry.cli.deploy`)."""

from __future__ import annotations

import argparse
import sys

from irfoundry.jsonio import dumps as json_dumps

RAW = argparse.RawDescriptionHelpFormatter

TRAIN_EPILOG = """examples:
  irfoundry train cpu/acm_sirst427                                  # a named run (irfoundry configs lists them)
  irfoundry train fdep/acm_sirst427 --set optim.lr=1e-3 --set trainer.max_epochs=50
  irfoundry train cpu/acm_sirst427 --set trainer.devices=2 --set trainer.strategy=ddp
  irfoundry train my_run.yaml        # a YAML file; 'defaults: [protocol/cpu, data/nudt, model/acm, method/fdep]'
  irfoundry train --resume runs/acm_sirst427                         # continue an interrupted run
  irfoundry train --resume runs/acm_sirst427 --set trainer.max_epochs=200   # extend a finished one

Config sections: data, model, method, optim, trainer (see irfoundry/engine/config.py for every key;
method.options are the method's own, checked when the config is loaded). Every part is built before the
run folder is written, so a bad value leaves nothing behind. The run folder gets config.yaml (resolved),
norm.json (train-split statistics), best/last.safetensors (+ .json), resume.ckpt, CSV and TensorBoard logs.
'best' is selected on the validation split.
"""

CONFIGS_EPILOG = """examples:
  irfoundry configs                         # run families, groups and the named runs they make
  irfoundry configs fdep/acm_sirst427       # the resolved config of a named run (or of a YAML file), as YAML
"""

EVAL_EPILOG = """examples:
  irfoundry eval --checkpoint runs/acm_sirst --data ../shared/data/sirst --split test --out eval/acm
  irfoundry eval --checkpoint acm.safetensors --data ../shared/data/nudt_sirst:test
  irfoundry eval --checkpoint runs/acm_mix --data ../shared/data/sirst:test --data ../shared/data/nudt_sirst:50_50/test
  irfoundry eval --checkpoint runs/acm_sirst --data ../shared/data/sirst --out eval/acm \
      --thresholds 0.05:0.95:0.05 --report

Writes OUT/metrics.json: iou, niou, pd, fa (fractions; fa x 1e6 is the usual printed value),
target_precision, target_f1 at --threshold, hse (percent, with hse_detail), threshold, dataset, split and
image count; with several --data the metrics of their union and, under sets, of each (a mixed run's test
sets: a union is scored over all its images, not averaged over sets). HSE uses --thresholds, else 0.05..0.95 step 0.05. Images are evaluated at native resolution.
--thresholds also writes OUT/curves.csv (one row per threshold) and the plots iou_niou_vs_threshold.png,
pd_vs_fa.png, roc.png; --report writes OUT/report.html (one self-contained page).
"""

EVAL_MAPS_EPILOG = """examples:
  irfoundry eval-maps --pred maps/ --data ../shared/data/sirst --split test --out eval/maps
  irfoundry eval-maps --pred maps/ --data ../shared/data/nudt_sirst:test --thresholds 0.05:0.95:0.05 --report --out e
  irfoundry predict --checkpoint runs/acm_sirst ../shared/data/sirst/images --out preds
  irfoundry eval-maps --pred preds --data ../shared/data/sirst --ignore-extra --out eval/preds

Scores saved maps from any toolkit: one file per image id of the split, <id>.png (8-bit, probability =
value / 255, so threshold 0.5 means value >= 128) or <id>.npy (float probabilities in [0, 1]), at the
native image size. irfoundry predict's ID_prob.png maps are found too (suffix _prob, detected). A missing
map, a map of an id outside the split, an id with both .png and .npy, or a size mismatch is an error that
names the id. Writes the same metrics.json keys as eval (and curves.csv, plots, report.html on request).
"""

QUICK_EPILOG = """examples:
  irfoundry quickstart                        # synthetic data, 25 epochs: about 3 minutes on a 2-core CPU
  irfoundry quickstart --epochs 5 --out qs
  irfoundry quickstart --data ../shared/data/sirst --model acm --epochs 100 --threads 2
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a host network (Lightning)", description="Train from a YAML config.",
                       epilog=TRAIN_EPILOG, formatter_class=RAW)
    p.add_argument("config", nargs="?", help="YAML config (sections data, model, method, optim, trainer)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. optim.lr=1e-3 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("configs", help="list the config groups and named runs, or print a resolved config",
                       description="Configs compose from groups (data, model, method, protocol); a named run "
                       "FAMILY/MODEL_DATA needs no file.", epilog=CONFIGS_EPILOG, formatter_class=RAW)
    p.add_argument("name", nargs="?", help="a named run or YAML file to resolve")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value before printing (repeatable)")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split", description="Evaluate a checkpoint.",
                       epilog=EVAL_EPILOG, formatter_class=RAW)
    p.add_argument("--checkpoint", required=True, help=".safetensors file or run folder (uses best, else last)")
    p.add_argument("--data", required=True, action="append",
                   help="dataset folder, or PATH:SPLIT; repeat it for several test sets (their union and each one)")
    p.add_argument("--split", default=None, help="split name or split file (default: test)")
    p.add_argument("--out", default=None, help="folder for metrics.json (default: print only)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    p.add_argument("--branch", default=None, metavar="NAME",
                   help="score another branch of the run's method at its best checkpoint (e.g. teacher: "
                        "semprior; main: fdep) instead of the deployable network; needs a run folder")
    _add_curve_flags(p)
    _add_norm_flag(p)
    _add_threads_flag(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("eval-maps", help="score saved probability maps (PNG / NPY) against a dataset split",
                       description="Score saved maps of any toolkit with the metrics of 'irfoundry eval'.",
                       epilog=EVAL_MAPS_EPILOG, formatter_class=RAW)
    p.add_argument("--pred", required=True, metavar="DIR", help="folder of <id>.png (8-bit) or <id>.npy maps")
    p.add_argument("--data", required=True, help="dataset folder, or PATH:SPLIT")
    p.add_argument("--split", default=None, help="split name or split file (default: test)")
    p.add_argument("--out", default=None, help="folder for metrics.json (default: print only)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="probability threshold (default 0.5, i.e. 8-bit value >= 128)")
    _add_curve_flags(p)
    p.add_argument("--suffix", default=None,
                   help="file name ending after the id, e.g. _prob for ID_prob.png (default: detect '' or _prob)")
    p.add_argument("--ignore-extra", action="store_true",
                   help="ignore maps of ids outside the split instead of failing")
    p.set_defaults(func=cmd_eval_maps)

    p = sub.add_parser("quickstart", help="the main job: data -> train -> eval -> predict in a few minutes",
                       description="Generate (or use) a dataset, train a small host for a few CPU minutes, "
                       "evaluate it on the test split and predict a few images.", epilog=QUICK_EPILOG,
                       formatter_class=RAW)
    p.add_argument("--data", default=None, help="dataset folder (default: generate the synthetic dataset)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 25: about 3 min on 2 cores)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the same numbers on any load; see irfoundry.threads)")
    p.add_argument("--model", default="unet_tiny", help="host network (default unet_tiny)")
    p.add_argument("--out", default="quickstart", help="output folder (default ./quickstart)")
    p.set_defaults(func=cmd_quickstart)


def cmd_train(args: argparse.Namespace) -> int:
    from irfoundry.engine.config import load_config
    from irfoundry.engine.train import train
    from irfoundry.errors import ConfigError

    if args.resume:
        if args.config:
            raise ConfigError("--resume continues a run with its saved config; do not pass a config file "
                              "(--set trainer.max_epochs=N may extend it)")
        result = train(None, resume=args.resume, resume_overrides=args.overrides)
    else:
        if not args.config:
            raise ConfigError("give a config (a named run such as cpu/acm_sirst427, or a YAML file) or --resume RUN_DIR")
        result = train(load_config(args.config, args.overrides))
    print(json_dumps(result))
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    from irfoundry.engine.compose import GROUP_KINDS, group_names, runs_table
    from irfoundry.engine.config import load_config

    if args.name:
        print(load_config(args.name, args.overrides).to_yaml(), end="")
        return 0
    print("run families (irfoundry train FAMILY/MODEL_DATA):")
    for family, entry in runs_table().items():
        print(f"  {family:<12} {', '.join(entry['defaults'])} -- {entry['about']}")
    print("groups (a YAML file composes them with 'defaults: [GROUP/NAME, ...]'):")
    for kind in GROUP_KINDS:
        print(f"  {kind:<12} {', '.join(group_names(kind)) or '-'}")
    return 0


def _add_norm_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--norm", default=None, metavar="MEAN,STD|PRESET",
                   help="normalisation replacing the checkpoint's: MEAN,STD on 0-255 grey or a preset (sirst3, "
                        "nuaa-sirst, nudt-sirst, irstd-1k, ...); needed for weights imported without statistics")


def _add_threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: OMP_NUM_THREADS if set, else half the CPUs; irfoundry.threads)")


def _add_curve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (fractions) instead of the table")
    p.add_argument("--empty-niou", type=float, choices=(0.0, 1.0), default=0.0,
                   help="nIoU score of an image with empty ground truth and empty prediction: 0 (the field's "
                        "legacy rule, default) or 1; recorded in metrics.json as niou_empty")
    p.add_argument("--thresholds", default=None, metavar="START:STOP:STEP",
                   help="curve thresholds, e.g. 0.05:0.95:0.05 (STOP included) or 0.1,0.5,0.9: adds curves.csv "
                   "and plots to --out and computes HSE on them")
    p.add_argument("--report", action="store_true", help="also write OUT/report.html (needs --out)")


def _print_metrics(result: dict, args: argparse.Namespace) -> None:
    """The metrics as the field prints them (``--json``: the metrics without their curve lists as JSON; the
    full record is OUT/metrics.json)."""
    from irfoundry.engine.metrics_text import format_metrics, summary_view

    if args.json:
        print(json_dumps(summary_view(result)))
    elif "sets" in result:  # several sets: their union, then each
        print("union of " + " + ".join(result["sets"]) + ": " + format_metrics(result))
        for name, metrics in result["sets"].items():
            print(f"{name}: " + format_metrics(metrics))
    else:
        print(f"{result['dataset']}:{result['split']}: " + format_metrics(result))
    if args.out is not None:
        files = ["metrics.json", "per_image.csv"]
        files += ["curves.csv", "iou_niou_vs_threshold.png", "pd_vs_fa.png", "roc.png"] if args.thresholds else []
        files += ["report.html"] if args.report else []
        print(f"wrote {', '.join(files)} to {args.out}", file=sys.stderr)


def _default_split(args: argparse.Namespace) -> str | None:
    return args.split if args.split is not None else (None if ":" in str(args.data) else "test")


def cmd_eval(args: argparse.Namespace) -> int:
    from irfoundry.engine.evaluate import evaluate
    from irfoundry.threads import use_threads

    use_threads(args.threads)
    data = args.data[0] if len(args.data) == 1 else args.data
    # --split fills in the split of every PATH that names none (PATH:SPLIT keeps its own)
    result = evaluate(args.checkpoint, data, split=args.split or "test", out=args.out,
                      threshold=args.threshold, thresholds=args.thresholds, report=args.report,
                      empty_niou=args.empty_niou, norm=args.norm, branch=args.branch)
    _print_metrics(result, args)
    return 0


def cmd_eval_maps(args: argparse.Namespace) -> int:
    from irfoundry.engine.eval_maps import evaluate_maps

    result = evaluate_maps(args.pred, args.data, split=_default_split(args), out=args.out,
                           threshold=args.threshold, thresholds=args.thresholds, report=args.report,
                           suffix=args.suffix, ignore_extra=args.ignore_extra, empty_niou=args.empty_niou)
    _print_metrics(result, args)
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from irfoundry.engine.quickstart import QUICKSTART_EPOCHS, quickstart

    quickstart(data=args.data, epochs=QUICKSTART_EPOCHS if args.epochs is None else args.epochs, model=args.model,
               out=args.out, threads=args.threads)
    return 0
