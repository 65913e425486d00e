"""Study specs: which runs a study trains, as config overrides.

A study is datasets x hosts x seeds x arms; every run's config is composed, later winning, from

1. ``base``: the budget every run shares (a raw config, may start with ``defaults: [...]``);
2. ``datasets[D]``: the dataset (a raw config, e.g. ``{defaults: [data/sirst427]}``) and anything that
   belongs to it (a shorter schedule);
3. ``arms[A]``: what the arm changes (usually the method and its options);
4. the run's identity: ``model.name = H``, ``data.seed = trainer.seed = S``, ``trainer.out_dir`` (the
   runs folder) and ``trainer.run_name`` (``run_name`` formatted with dataset, host, arm and seed); a string
   value ``{run:HOST/ARM}`` anywhere in the config becomes the run folder of that host and arm at the same
   dataset and seed (a distillation arm naming its teacher's run: ``teacher: "{run:sam_teacher/teacher}"``;
   list the teacher's host first, so that it trains first);
5. the ``--set`` overrides given to ``irfoundry study run`` (e.g. ``trainer.max_epochs=400`` on a GPU).

Specs are YAML files, or the ones shipped in ``irfoundry/configs/studies/`` by name (``fdep_gain``).
Every run is then trained, its checkpoint selected on the validation split, and its deployable network
evaluated on the test split (:mod:`irfoundry.study.runner`). ``comparisons`` lists the ``[arm,
reference]`` pairs whose per-seed differences of the ``paired`` metrics the summary reports.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from irfoundry.engine.compose import deep_merge, expand_defaults
from irfoundry.engine.config import read_yaml
from irfoundry.errors import ConfigError
from irfoundry.metrics import REPORTED
from irfoundry.options import parse_dataclass

__all__ = ["RunKey", "StudySpec", "load_spec", "list_specs"]

#: metrics a row carries: the reported ones plus HSE
ROW_METRICS = (*REPORTED, "hse")
#: ``{run:HOST/ARM}``: the folder of another run of the study (same dataset and seed)
RUN_LINK = re.compile(r"\{run:([^/{}]+)/([^/{}]+)\}")


@dataclass(frozen=True)
class RunKey:
    """One run of a study."""

    dataset: str
    host: str
    arm: str
    seed: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class StudySpec:
    """A study (see the module docstring). ``default_arms``: the arms run when none are selected (``null``: all)."""

    name: str
    about: str = ""
    base: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arms: dict = field(default_factory=dict)
    default_arms: list[str] | None = None
    #: ``[arm, reference]`` pairs compared seed by seed
    comparisons: list[list[str]] = field(default_factory=list)
    #: metrics of the paired comparisons
    paired: list[str] = field(default_factory=lambda: ["iou", "hse"])
    #: metrics listed per arm
    metrics: list[str] = field(default_factory=lambda: ["iou", "niou", "pd", "fa", "hse"])
    #: the arm epoch times are compared with (``null``: the first arm)
    reference_arm: str | None = None
    run_name: str = "{dataset}_{host}_{arm}_s{seed}"
    #: derived arms: ``{name: [arm, branch]}``, another evaluation branch of every run of ``arm`` (e.g. a
    #: teacher) at the same checkpoint, tested as its own arm (not trained again)
    branch_arms: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"study {self.name!r}"
        for key in ("datasets", "hosts", "arms", "seeds"):
            if not getattr(self, key):
                raise ConfigError(f"{where}: '{key}' is empty; a study needs at least one")
        for key in ("datasets", "arms"):
            for name, value in getattr(self, key).items():
                if not isinstance(value, dict):
                    raise ConfigError(f"{where}: {key}.{name} must be a mapping of config sections, got {value!r}")
        for name, pair in self.branch_arms.items():
            if name in self.arms or not isinstance(pair, (list, tuple)) or len(pair) != 2 or pair[0] not in self.arms:
                raise ConfigError(f"{where}: branch_arms.{name} must be [ARM, BRANCH] with ARM one of {sorted(self.arms)} "
                                  f"and a name that is not an arm, got {pair!r}")
        arms = set(self.arms) | set(self.branch_arms)
        if set(self.default_arms or []) & set(self.branch_arms):
            raise ConfigError(f"{where}: default_arms name trained arms; branch_arms come with their arm")
        for arm in [a for pair in self.comparisons for a in pair] + [a for a in self.default_arms or []
                                                                      if a not in self.branch_arms]:
            if arm not in arms:
                raise ConfigError(f"{where}: arm {arm!r} (comparisons / default_arms) is not one of {sorted(arms)}")
        if any(len(pair) != 2 for pair in self.comparisons):
            raise ConfigError(f"{where}: every comparison is [arm, reference], got {self.comparisons}")
        for key in ("paired", "metrics"):
            bad = [m for m in getattr(self, key) if m not in ROW_METRICS]
            if bad:
                raise ConfigError(f"{where}: {key} {bad} are not row metrics ({', '.join(ROW_METRICS)})")
        if self.reference_arm is not None and self.reference_arm not in arms:
            raise ConfigError(f"{where}: reference_arm {self.reference_arm!r} is not one of {sorted(arms)}")
        try:
            self.run_name.format(dataset="d", host="h", arm="a", seed=0)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"{where}: run_name {self.run_name!r} may use {{dataset}}, {{host}}, {{arm}}, "
                              f"{{seed}} only ({exc})") from None

    @property
    def reference(self) -> str:
        return self.reference_arm or next(iter(self.arms))

    def plan(self, *, datasets=None, hosts=None, arms=None, seeds=None) -> list[RunKey]:
        """The runs, dataset by dataset, host by host, seed by seed, arm by arm (each seed's arms together, so
        an interrupted study has complete pairs). Selections must name known axes values."""
        picks = {
            "datasets": _pick("datasets", datasets, list(self.datasets)),
            "hosts": _pick("hosts", hosts, self.hosts, free=True),
            "arms": _pick("arms", arms, list(self.arms), default=self.default_arms),
            "seeds": [int(s) for s in (seeds if seeds is not None else self.seeds)],
        }
        return [RunKey(d, h, a, s) for d in picks["datasets"] for h in picks["hosts"] for s in picks["seeds"]
                for a in picks["arms"]]

    def run_config(self, key: RunKey, runs_dir: str | Path) -> dict:
        """The raw config of one run (items 1-4 of the module docstring; overrides are the runner's)."""
        raw = expand_defaults(self.base)
        raw = deep_merge(raw, expand_defaults(self.datasets[key.dataset]))
        raw = deep_merge(raw, expand_defaults(self.arms[key.arm]))
        identity = {"model": {"name": key.host}, "data": {"seed": key.seed},
                    "trainer": {"seed": key.seed, "out_dir": str(runs_dir), "run_name": self.name_of(key)}}
        return self._link_runs(deep_merge(raw, identity), key, runs_dir)

    def _link_runs(self, value: Any, key: RunKey, runs_dir: str | Path) -> Any:
        """``{run:HOST/ARM}`` in string values -> that run's folder (same dataset and seed)."""
        if isinstance(value, dict):
            return {k: self._link_runs(v, key, runs_dir) for k, v in value.items()}
        if isinstance(value, list):
            return [self._link_runs(v, key, runs_dir) for v in value]
        if not isinstance(value, str):
            return value

        def folder(match: re.Match) -> str:
            host, arm = match.group(1), match.group(2)
            if arm not in self.arms:
                raise ConfigError(f"study {self.name}: {match.group(0)} names arm {arm!r}, not one of "
                                  f"{sorted(self.arms)}")
            return str(Path(runs_dir) / self.name_of(RunKey(key.dataset, host, arm, key.seed)))

        return RUN_LINK.sub(folder, value)

    def name_of(self, key: RunKey) -> str:
        return self.run_name.format(**key.as_dict())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _pick(axis: str, chosen, known: list, *, free: bool = False, default=None) -> list:
    if chosen is None:
        return list(default or known)
    chosen = list(chosen)
    if not free:
        bad = [c for c in chosen if c not in known]
        if bad:
            raise ConfigError(f"--{axis} {bad} are not in the study ({', '.join(map(str, known))})")
    return chosen


def list_specs() -> list[str]:
    """Names of the shipped study specs."""
    folder = Path(str(resources.files("irfoundry") / "configs" / "studies"))
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_spec(source: str | Path) -> StudySpec:
    """A study spec from a YAML file, or a shipped one by name (:func:`list_specs`)."""
    path = Path(source)
    if not path.is_file():
        shipped = Path(str(resources.files("irfoundry") / "configs" / "studies" / f"{source}.yaml"))
        if not shipped.is_file():
            raise ConfigError(f"study spec {source} is neither a file nor a shipped study ({', '.join(list_specs())})")
        path = shipped
    raw = read_yaml(path, "study spec")
    raw.setdefault("name", path.stem)
    return parse_dataclass(StudySpec, raw, "study")


def spec_of(doc: dict[str, Any]) -> StudySpec | None:
    """The spec a results file records (``None`` for files written by the old FDEP benchmark)."""
    raw = doc.get("spec")
    return parse_dataclass(StudySpec, raw, "study") if raw else None
