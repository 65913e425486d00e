"""``irfoundry study run | summary | list``: a thin shell around :mod:`irfoundry.study`."""

from __future__ import annotations

import argparse

RAW = argparse.RawDescriptionHelpFormatter

EPILOG = """examples:
  irfoundry study list                                                   # the shipped study specs
  irfoundry study run fdep_gain --out fdep_gain.json                     # every run of the spec, resumable
  irfoundry study run fdep_gain --datasets sirst --hosts acm --seeds 0 --arms host --threads 1 --out one.json
  irfoundry study run my_study.yaml --set trainer.max_epochs=400 --out gpu.json
  irfoundry study summary fdep_gain.json --markdown                      # the tables of a results file
  irfoundry study summary worker_a.json worker_b.json --out joined.json  # join parallel workers of one spec

Every run's checkpoint is selected on its validation split and its deployable network is evaluated on the
test split at native resolution. Paired differences (arm - reference, seed by seed) come with a 95 %
Student-t interval; "beyond spread" means the whole interval lies above 0.
"""


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [s.strip() for s in text.split(",") if s.strip()]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run a study (seeds x datasets x hosts x arms) or summarise its results",
                       description="Studies: every arm a set of config overrides, every run a row of one results file.",
                       epilog=EPILOG, formatter_class=RAW)
    ssub = p.add_subparsers(dest="study_command", metavar="COMMAND")
    ssub.required = True
    r = ssub.add_parser("run", help="train and evaluate the runs of a spec (resumable)", epilog=EPILOG,
                        formatter_class=RAW)
    r.add_argument("spec", help="a study spec YAML file or a shipped spec name (irfoundry study list)")
    r.add_argument("--out", default=None, help="results JSON, appended after every run and continued from")
    r.add_argument("--runs", default="runs/studies", help="folder of the run folders (default runs/studies)")
    for axis in ("datasets", "hosts", "arms", "seeds"):
        r.add_argument(f"--{axis}", default=None, help=f"comma-separated subset of the spec's {axis}")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value of every run, e.g. trainer.max_epochs=400 (repeatable)")
    r.add_argument("--threads", type=int, default=None,
                   help="torch threads of every run (= --set trainer.threads=N; default: irfoundry.threads' rule)")
    r.add_argument("--markdown", action="store_true", help="print the summary as Markdown tables")
    r.set_defaults(func=cmd_run)
    s = ssub.add_parser("summary", help="print the tables of one or more results files of one spec",
                        formatter_class=RAW, epilog=EPILOG)
    s.add_argument("results", nargs="+", help="results JSON files (written by study run)")
    s.add_argument("--out", default=None, help="also write the union of the files here")
    s.add_argument("--markdown", action="store_true", help="Markdown tables")
    s.add_argument("--reference", default=None, metavar="ARM",
                   help="the arm the costs (epoch / step x ref) divide by (default: the spec's reference_arm)")
    s.set_defaults(func=cmd_summary)
    lst = ssub.add_parser("list", help="the shipped study specs")
    lst.set_defaults(func=cmd_list)


def _print(doc: dict, markdown: bool, reference: str | None = None) -> None:
    from irfoundry.study import format_markdown, format_table, summarize
    from irfoundry.study.spec import spec_of

    spec = spec_of(doc)
    summary = summarize(doc["rows"], spec.comparisons, spec.paired, spec.metrics, reference or spec.reference,
                        list(spec.arms))
    if markdown:
        print(format_markdown(summary, metrics=spec.metrics, paired=spec.paired))
        return
    title = f"study {spec.name}: {spec.about}" + (f" (overrides: {' '.join(doc['overrides'])})" if doc.get("overrides") else "")
    print(format_table(summary, metrics=spec.metrics, paired=spec.paired, title=title))


def cmd_run(args: argparse.Namespace) -> int:
    from irfoundry.study import load_spec, run_study

    overrides = list(args.overrides) + ([f"trainer.threads={int(args.threads)}"] if args.threads else [])
    seeds = _csv(args.seeds)
    try:
        seeds = None if seeds is None else [int(x) for x in seeds]
    except ValueError:
        from irfoundry.errors import ConfigError

        raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    doc = run_study(load_spec(args.spec), runs_dir=args.runs, out=args.out, overrides=overrides,
                    datasets=_csv(args.datasets), hosts=_csv(args.hosts), arms=_csv(args.arms), seeds=seeds)
    _print(doc, args.markdown)
    if args.out:
        print(f"results: {args.out}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from irfoundry.jsonio import write_json
    from irfoundry.study.runner import join_results

    doc = join_results(args.results)
    if args.reference is not None:  # before --out is written
        from irfoundry.errors import ConfigError
        from irfoundry.study.spec import spec_of

        spec = spec_of(doc)
        arms = [*spec.arms, *spec.branch_arms]
        if args.reference not in arms:
            raise ConfigError(f"--reference {args.reference!r} is not an arm of study {spec.name} "
                              f"({', '.join(arms)}); nothing was written")
    if args.out:
        write_json(doc, args.out)
    _print(doc, args.markdown, args.reference)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from irfoundry.study import list_specs, load_spec

    for name in list_specs():
        spec = load_spec(name)
        print(f"{name:<16} {spec.about}")
    return 0
