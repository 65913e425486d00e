"""Strict JSON for every file irfoundry writes: no ``NaN`` / ``Infinity`` (which are not JSON, and which
strict parsers and other languages reject), numpy scalars and arrays as plain numbers and lists.

A value that is undefined (a ratio with nothing to divide by: Pd of a split without targets, precision
without predictions) is written as ``null``; the writers that produce such values also say why next to
it (e.g. ``metrics.json``'s ``undefined``). :func:`write_json` writes atomically (temporary file in the same
folder, then rename) with permissions from the umask, so colleagues can read the results.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["dumps", "strict", "write_json"]


def strict(obj: Any) -> Any:
    """``obj`` with non-finite floats as ``None``, numpy scalars / arrays as Python numbers / lists, tuples
    as lists; mappings and sequences recursively."""
    if isinstance(obj, dict):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`strict` ``(obj)`` that refuses anything non-finite left over."""
    kwargs.setdefault("indent", 2)
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def write_json(obj: Any, path: str | os.PathLike, **kwargs) -> Path:
    """Write ``obj`` as strict JSON to ``path``, atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(dumps(obj, **kwargs) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
