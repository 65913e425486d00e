"""Configs composed from groups: ``data``, ``model``, ``method``, ``protocol`` (and ``studies``).

The groups ship with the package (``irfoundry/configs/<group>/<name>.yaml``). A YAML config may start with
``defaults: [protocol/cpu, data/sirst427, model/acm, method/fdep]``: those groups are merged in order
(section by section, key by key, nested mappings such as ``method.options`` too; lists are replaced), then
the file's own sections on top, then ``--set`` overrides. A group may itself have ``defaults``.

A *named run* needs no file at all: ``FAMILY/MODEL_DATA`` (e.g. ``fdep/acm_sirst427``) composes the
family's groups (``runs.yaml``: protocol and method) with ``data/DATA`` and ``model/MODEL`` in the order
protocol, data, method, model, and names the run folder ``MODEL_DATA`` plus the family's suffix. The
spelling of the files that used to ship, ``configs/fdep/acm_sirst427.yaml``, names the same run.
``model/NAME`` of a registered model without a group file is ``{model: {name: NAME}}``, so a new host
needs no config file unless its recipe differs. ``irfoundry configs`` lists groups and runs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from irfoundry.engine.config import read_yaml
from irfoundry.errors import ConfigError

__all__ = ["GROUP_KINDS", "compose", "deep_merge", "group_names", "read_config_source", "read_group", "run_names",
           "runs_table"]

#: kinds of groups, each a folder of ``irfoundry/configs``
GROUP_KINDS = ("data", "model", "method", "protocol", "studies")
#: order in which a named run composes its groups (later wins)
RUN_ORDER = ("protocol", "data", "method", "model")


def _root() -> Path:
    return Path(str(resources.files("irfoundry") / "configs"))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    """``over`` merged into ``base``: mappings key by key (recursively), everything else replaced."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = dict(v) if isinstance(v, Mapping) else v
    return out


def group_names(kind: str) -> list[str]:
    """Names of the groups of ``kind`` (for ``model``: also every registered model)."""
    if kind not in GROUP_KINDS:
        raise ConfigError(f"unknown config group {kind!r}; groups: {', '.join(GROUP_KINDS)}")
    folder = _root() / kind
    names = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    if kind == "model":
        from irfoundry.models import list_models

        names |= set(list_models())
    return sorted(names)


def read_group(ref: str, _seen: tuple[str, ...] = ()) -> dict:
    """The content of group ``KIND/NAME``, its own ``defaults`` expanded."""
    kind, _, name = ref.partition("/")
    if not name or kind not in GROUP_KINDS:
        raise ConfigError(f"config default {ref!r} must be GROUP/NAME with GROUP one of {', '.join(GROUP_KINDS)}")
    if ref in _seen:
        raise ConfigError(f"config groups include each other in a cycle: {' -> '.join(_seen + (ref,))}")
    path = _root() / kind / f"{name}.yaml"
    if not path.is_file():
        if kind == "model":
            from irfoundry.models import list_models

            if name in list_models():
                return {"model": {"name": name}}
        raise ConfigError(f"no config group {ref!r}; {kind} groups: {', '.join(group_names(kind))}")
    return expand_defaults(read_yaml(path, "config group"), _seen + (ref,))


def expand_defaults(raw: Mapping[str, Any], _seen: tuple[str, ...] = ()) -> dict:
    """``raw`` with its ``defaults`` list replaced by the merged groups it names (``raw`` on top)."""
    raw = dict(raw)
    defaults = raw.pop("defaults", None) or []
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise ConfigError(f"'defaults' must be a list of GROUP/NAME strings, got {defaults!r}")
    merged: dict = {}
    for ref in defaults:
        merged = deep_merge(merged, read_group(ref, _seen))
    return deep_merge(merged, raw)


def runs_table() -> dict[str, dict]:
    """The run families of ``runs.yaml``: ``{family: {"defaults": [...], "suffix": str, "about": str}}``."""
    table = read_yaml(_root() / "runs.yaml", "run table")
    return {k: {"defaults": list(v.get("defaults") or []), "suffix": str(v.get("suffix") or ""),
                "about": str(v.get("about") or "")} for k, v in table.items()}


def _split_run(family: str, rest: str) -> tuple[str, str] | None:
    models, datas = set(group_names("model")), group_names("data")
    for data in sorted(datas, key=len, reverse=True):
        if rest.endswith("_" + data) and rest[: -len(data) - 1] in models:
            return rest[: -len(data) - 1], data
    return None


def run_names() -> list[str]:
    """Every named run ``FAMILY/MODEL_DATA``."""
    return [f"{f}/{m}_{d}" for f in runs_table() for m in group_names("model") for d in group_names("data")]


def compose(family: str, model: str, data: str) -> dict:
    """The raw config of the named run ``FAMILY/MODEL_DATA``."""
    table = runs_table()
    if family not in table:
        raise ConfigError(f"no run family {family!r}; families: {', '.join(table)}")
    groups = {ref.partition("/")[0]: ref for ref in table[family]["defaults"]}
    groups.update({"data": f"data/{data}", "model": f"model/{model}"})
    raw: dict = {}
    for kind in RUN_ORDER:
        if kind in groups:
            raw = deep_merge(raw, read_group(groups[kind]))
    return deep_merge(raw, {"trainer": {"run_name": f"{model}_{data}{table[family]['suffix']}"}})


def parse_run_name(text: str) -> tuple[str, str, str] | None:
    """``(family, model, data)`` of ``FAMILY/MODEL_DATA`` (also ``configs/FAMILY/MODEL_DATA.yaml``), else ``None``."""
    name = str(text).replace("\\", "/")
    for suffix in (".yaml", ".yml"):
        name = name.removesuffix(suffix)
    name = name.removeprefix("./").removeprefix("configs/")
    family, _, rest = name.partition("/")
    if not rest or "/" in rest or family not in runs_table():
        return None
    split = _split_run(family, rest)
    return (family, *split) if split else None


def read_config_source(source: str | Path) -> dict:
    """The raw (uncoerced) config of a YAML file (``defaults`` expanded) or of a named run.

    Raises:
        ConfigError: neither an existing file nor a named run (the message says how to list them).
    """
    path = Path(source)
    if path.is_file():
        return expand_defaults(read_yaml(path, "config file"))
    named = parse_run_name(str(source))
    if named:
        return compose(*named)
    raise ConfigError(
        f"config file {path} does not exist and is not a named run (FAMILY/MODEL_DATA, e.g. fdep/acm_sirst427); "
        "'irfoundry configs' lists the named runs and groups"
    )
