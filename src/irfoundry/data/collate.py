"""One collate for every loader: items (dicts) -> a batch (dict), key by key, nothing dropped.

* tensors of one shape -> stacked ``B x ...`` (``image``, ``target``, ``mask``, ``geometry``);
* lists / tuples of tensors (per-level features from a per-image store) -> one stacked tensor per level;
* ints and floats (per-image attributes such as a cluster id, ``index``) -> a ``B`` tensor;
* anything else (``id`` strings, native ``size`` tuples, ``counted`` flags) -> a list.

Items of different image sizes (full evaluation images) must be padded first: the inference path's
``pad_collate`` (:mod:`irfoundry.engine.inference`) pads them and then calls :func:`collate`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from irfoundry.errors import DataError

__all__ = ["collate"]


def _ids(items: Sequence[dict]) -> str:
    return ", ".join(str(it.get("id", "?")) for it in items[:5])


def collate(items: Sequence[dict]) -> dict[str, Any]:
    """Stack ``items`` into a batch (see the module docstring).

    Raises:
        DataError: items with different keys, or tensors of different shapes under one key (the message
            names the key and the images).
    """
    if not items:
        raise DataError("cannot collate an empty batch")
    keys = list(items[0])
    for it in items[1:]:
        if set(it) != set(keys):
            raise DataError(f"batch items carry different keys ({sorted(set(it) ^ set(keys))} differ; images {_ids(items)})")
    return {k: _stack(k, [it[k] for it in items], items) for k in keys}


def _stack(key: str, values: list, items: Sequence[dict]) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        return _stack_tensors(key, values, items)
    if isinstance(first, (list, tuple)) and first and all(isinstance(v, torch.Tensor) for v in first):
        n = len(first)
        if any(len(v) != n for v in values):
            raise DataError(f"batch key {key!r}: items hold different numbers of maps (images {_ids(items)})")
        return [_stack_tensors(f"{key}[{i}]", [v[i] for v in values], items) for i in range(n)]
    if isinstance(first, (int, float)) and not isinstance(first, bool) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return torch.tensor(values)
    return list(values)


def _stack_tensors(key: str, values: list[torch.Tensor], items: Sequence[dict]) -> torch.Tensor:
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) > 1:
        raise DataError(
            f"batch key {key!r}: items have different shapes {sorted(shapes)} (images {_ids(items)}); full images of "
            "different sizes must be padded (irfoundry.engine.inference.pad_collate)"
        )
    return torch.stack(values)
