"""The extension point for training methods.

A *method* is how a batch becomes a loss, plus what is exported. It receives already-built modules
(constructor injection: a host network, later a frozen foundation model and a fusion module), never
model names, and it never reaches into a host beyond the :class:`~irfoundry.models.HostNet` interface.

To add one (``fdep``, ``lesps``, ``semprior``, ``simir`` in later issues)::

    @register_method("mine")
    class Mine(Method):
        def __init__(self, host, cfg: MethodConfig): ...
        def training_loss(self, batch): return loss, {"loss/main": ...}
        # optional: on_train_epoch_start, predict_logits, export_model, eval_branches,
        #           set_norm, prior_cache, describe

Method-specific settings live in ``cfg.options`` (YAML ``method.options``); read them with
:func:`method_options`, which rejects unknown keys by name. Schedules (warm-up, curriculum, label
evolution) key off the epoch the engine passes to :meth:`Method.on_train_epoch_start`, never off a
counter of their own, so ``--resume`` restores them.

Everything else (optimiser, logging, checkpointing, devices, DDP) is the engine's.
"""

from __future__ import annotations

import difflib
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from irfoundry.errors import ConfigError
from irfoundry.models.base import main_output

Batch = Mapping[str, object]  # {"image": B x C x h x w, "mask": B x 1 x h x w, "id": list[str], ...}


class Method(nn.Module):
    """Base class. ``self.host`` is the deployable network; everything trainable is a submodule."""

    name: str = ""

    def __init__(self, host: nn.Module, cfg) -> None:
        super().__init__()
        self.host = host
        self.cfg = cfg

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss for one training batch, plus named scalars to log."""
        raise NotImplementedError  # pragma: no cover - abstract

    def on_train_epoch_start(self, epoch: int) -> None:
        """Called by the engine before every training epoch with the 0-based ``epoch`` (the trainer's,
        restored by ``--resume``), in every process. The default does nothing."""

    def set_norm(self, norm: Mapping[str, float]) -> None:
        """Told the run's train-split normalisation (``{"mean", "std"}`` in [0, 1] units) before training,
        so a method can map host inputs back to raw intensities (e.g. for a foundation model). Default:
        ignored."""

    def prior_cache(self) -> tuple[nn.Module, str | None] | None:
        """A frozen model whose features of the un-augmented training images the data pipeline may
        compute once and serve per crop as ``batch["prior"]`` (:mod:`irfoundry.foundation.cache`), and
        the cache directory (``None``: in memory). ``None`` (default): no cache; the method computes
        whatever it needs from the batch."""
        return None

    def describe(self) -> dict:
        """JSON-able facts written into the run's checkpoints (e.g. the foundation weights' sha256)."""
        return {}

    def eval_branches(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """Networks scored on the validation split: name -> ``B x C x H x W -> B x 1 x H x W`` logits.

        The first entry is the deployable one, used to select the ``best`` checkpoint. Methods with a
        teacher or a fused branch add theirs (e.g. ``{"host": ..., "main": ...}``).
        """
        return {"host": self.predict_logits}

    def predict_logits(self, images: Tensor) -> Tensor:
        """Deployable prediction: ``B x C x H x W`` (H, W multiples of 32) -> logits ``B x 1 x H x W``."""
        return main_output(self.host(images))

    def export_model(self) -> nn.Module:
        """The network that ships (by default the host alone, no teacher or foundation weights)."""
        return self.host


_METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    def decorator(cls: type[Method]) -> type[Method]:
        if name in _METHODS:
            raise ConfigError(f"method {name!r} is already registered")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorator


def list_methods() -> list[str]:
    return sorted(_METHODS)


def build_method(cfg, host: nn.Module) -> Method:
    """Instantiate the method named ``cfg.name`` around ``host``."""
    try:
        cls = _METHODS[cfg.name]
    except KeyError:
        close = difflib.get_close_matches(cfg.name, list(_METHODS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"method.name = {cfg.name!r} is not a known method.{hint} Available: {', '.join(list_methods())}"
        ) from None
    return cls(host, cfg)


def method_options(cfg, defaults: Mapping[str, object]) -> dict:
    """``defaults`` updated with ``cfg.options``; a key not in ``defaults`` raises :class:`ConfigError`
    naming it and the keys this method accepts."""
    options = dict(getattr(cfg, "options", None) or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        close = difflib.get_close_matches(unknown[0], list(defaults), n=1)
        hint = f" Did you mean method.options.{close[0]}?" if close else ""
        raise ConfigError(
            f"unknown option method.options.{unknown[0]} for method {cfg.name!r}.{hint} Allowed: {allowed}"
        )
    return {**defaults, **options}


def check_finite(loss: Tensor, what: str = "loss") -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} is {loss.item()}")
