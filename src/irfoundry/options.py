"""Typed options, parsed once at the edge: mappings (YAML, ``--set``) -> dataclass instances.

Every configuration object of irfoundry (the run config's sections, each method's options) is a
dataclass whose field annotations say what a value may be. :func:`parse_dataclass` turns a mapping into
one, so that a typo or an ill-typed value is a :class:`~irfoundry.errors.ConfigError` naming the key, the
closest known key and the allowed ones, before anything runs::

    @dataclass
    class MyOptions:
        weight: float = 1.0
        mode: Literal["soft", "hard"] = "soft"
        layers: list[int] | None = None

    parse_dataclass(MyOptions, {"weigth": 2}, "method.options")
    # ConfigError: unknown config key method.options.weigth. Did you mean method.options.weight? ...

Supported annotations: ``bool``, ``int``, ``float`` (YAML 1.1 strings such as ``"5e-4"`` are accepted),
``str``, ``None`` in a union, ``Literal[...]`` (the allowed values; strings match case-insensitively),
``list`` / ``list[T]`` / ``tuple[T, ...]`` (stored as lists), ``dict``, nested dataclasses and ``Any``.
A dataclass may declare ``RENAMED: ClassVar[dict[str, str]]`` (old key -> new key): an old key is
accepted with a warning, so configs written before a rename keep loading. Range checks that a type
cannot express belong in the dataclass's ``__post_init__`` (raise ``ConfigError`` naming the key).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import types
import typing
from typing import Any, Literal, Mapping, Union

from irfoundry.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["parse_dataclass", "coerce", "choice_error"]


def choice_error(key: str, value: Any, allowed) -> ConfigError:
    """The message every enumerated key uses: ``KEY = VALUE is not allowed; choose one of: a, b``."""
    return ConfigError(f"{key} = {value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def parse_dataclass(cls: type, values: Mapping[str, Any] | None, where: str) -> Any:
    """Build dataclass ``cls`` from ``values``; ``where`` prefixes every key named in an error.

    Raises:
        ConfigError: ``values`` is not a mapping, holds an unknown key (with the closest known one and the
            list of allowed keys), or a value of the wrong type; or ``cls.__post_init__`` refused a value.
    """
    if values is None:
        values = {}
    if dataclasses.is_dataclass(values) and not isinstance(values, type):
        if not isinstance(values, cls):
            raise ConfigError(f"{where} must be a {cls.__name__}, got a {type(values).__name__}")
        values = dataclasses.asdict(values)
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {values!r}")
    values = _renamed(cls, dict(values), where)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in values if k not in names]
    if unknown:
        k = str(unknown[0])
        close = difflib.get_close_matches(k, names, n=1)
        hint = f" Did you mean {where}.{close[0]}?" if close else ""
        raise ConfigError(
            f"unknown config key {where}.{k}.{hint} Allowed keys in {where}: {', '.join(sorted(names)) or 'none'}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: coerce(hints[k], v, f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - fields without defaults
        raise ConfigError(f"{where}: {exc}") from exc


def _renamed(cls: type, values: dict, where: str) -> dict:
    for old, new in getattr(cls, "RENAMED", {}).items():
        if old in values:
            if new in values:
                raise ConfigError(f"{where}.{old} was renamed {where}.{new}; give only {where}.{new}")
            log.warning("%s.%s is now called %s.%s; please rename it in your config", where, old, where, new)
            values[new] = values.pop(old)
    return values


def coerce(hint: Any, value: Any, key: str) -> Any:
    """``value`` checked against the annotation ``hint`` (and converted where YAML is loose)."""
    if hint is Any or hint is object:
        return value
    origin = typing.get_origin(hint)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return _coerce_union(typing.get_args(hint), value, key)
    if origin is Literal:
        return _coerce_literal(typing.get_args(hint), value, key)
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key} must be null, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    if hint is list or hint is tuple or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return [coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return parse_dataclass(hint, value, key)
    return value  # pragma: no cover - an annotation this parser does not know: taken as is


def _coerce_union(args: tuple, value: Any, key: str) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{key} must not be null")
    errors = []
    # try exact kinds first, so that int | str keeps an int and float | str parses a number
    for arg in sorted((a for a in args if a is not type(None)), key=_union_rank):
        try:
            return coerce(arg, value, key)
        except ConfigError as exc:
            errors.append(str(exc))
    if len(errors) == 1:
        raise ConfigError(errors[0])
    kinds = " or ".join(_describe(a) for a in args)
    raise ConfigError(f"{key} must be {kinds}, got {value!r}")


def _union_rank(arg: Any) -> int:
    return {bool: 0, int: 1, float: 2}.get(arg, 3 if typing.get_origin(arg) is Literal else 4)


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping"}
    origin = typing.get_origin(hint) or hint
    return names.get(origin, getattr(origin, "__name__", str(hint)))


def _coerce_literal(allowed: tuple, value: Any, key: str) -> Any:
    for a in allowed:
        if value == a and type(value) is type(a):
            return a
        if isinstance(a, str) and isinstance(value, str) and value.lower() == a.lower():
            return a
    raise choice_error(key, value, allowed)
