"""Training, evaluation and prediction on Lightning.

The only package that imports Lightning, and only where it is needed: the names below load on first
use, so ``irfoundry.engine.inference`` / ``config`` / ``compose`` / ``scoring`` stay free of it. Entry
points::

    from irfoundry.engine import train, evaluate, evaluate_maps, predict, load_config
    result = train(load_config("cpu/acm_sirst427", ["trainer.max_epochs=50"]))
"""

from __future__ import annotations

import importlib
import sys
import types

#: public name -> module that defines it
_EXPORTS = {
    "RunConfig": "config", "from_dict": "config", "load_config": "config",
    "evaluate_maps": "eval_maps", "evaluate": "evaluate", "export": "export", "predict": "predict",
    "Scores": "scoring", "parse_thresholds": "scoring", "score_maps": "scoring", "train": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'irfoundry.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"irfoundry.engine.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _EngineModule(types.ModuleType):
    """Keeps ``irfoundry.engine.evaluate`` (and ``predict``, ``export``, ``train``) the function: the import
    system sets a package attribute to a submodule of the same name when the submodule is first imported
    directly (``from irfoundry.engine.evaluate import evaluate``), which would otherwise hide the function
    from a later ``from irfoundry.engine import evaluate``."""

    def __setattr__(self, name: str, value) -> None:
        if (isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name
                and value.__name__ == f"{__name__}.{name}"):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _EngineModule
