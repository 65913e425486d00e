"""Registry of host networks, keyed by name (one file per model family, one builder per variant).

Usage::

    from irfoundry.models import create_model, list_models
    net = create_model("dnanet", in_chans=1)

Registering the same name twice raises, unlike timm which only warns.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from irfoundry.errors import ModelError

StateDict = dict  # name -> tensor
CheckpointFilter = Callable[[StateDict], StateDict]


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows of one host network.

    Attributes:
        name: registry key, lower case.
        builder: keyword-only factory ``builder(*, in_chans=1, **kwargs) -> SegmentationModel``.
        published_params: trainable parameters reported by the paper / reference code (1-channel input),
            or ``None`` when there is nothing published to compare with.
        published_macs: multiply-accumulates at 1x1x256x256 as published, or ``None``.
        paper: short citation of the architecture.
        reference: public reference code whose checkpoints we can import, or ``""``.
        checkpoint_filter: maps a reference checkpoint's state dict (prefixes such as ``module.`` already
            stripped) onto our key names; ``None`` when the key names are already ours.
    """

    name: str
    builder: Callable[..., "object"]
    published_params: int | None = None
    published_macs: float | None = None
    paper: str = ""
    reference: str = ""
    checkpoint_filter: CheckpointFilter | None = None
    default_kwargs: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str | None = None,
    *,
    published_params: int | None = None,
    published_macs: float | None = None,
    paper: str = "",
    reference: str = "",
    checkpoint_filter: CheckpointFilter | None = None,
) -> Callable:
    """Decorator registering a builder function under ``name`` (default: the function's name)."""

    def decorator(fn: Callable) -> Callable:
        key = (name or fn.__name__).lower()
        if key in _REGISTRY:
            raise ModelError(
                f"model name {key!r} is already registered (by {_REGISTRY[key].builder.__module__}); "
                "choose another name"
            )
        _REGISTRY[key] = ModelEntry(
            name=key,
            builder=fn,
            published_params=published_params,
            published_macs=published_macs,
            paper=paper,
            reference=reference,
            checkpoint_filter=checkpoint_filter,
        )
        return fn

    return decorator


def _unknown(name: str) -> ModelError:
    close = difflib.get_close_matches(name.lower(), list(_REGISTRY), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ModelError(f"unknown model {name!r}.{hint} Available: {', '.join(list_models())}")


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (case-insensitive); raises :class:`ModelError` if unknown."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise _unknown(name) from None


def list_models() -> list[str]:
    """Sorted names of all registered host networks."""
    return sorted(_REGISTRY)


def create_model(name: str, in_chans: int = 1, **kwargs):
    """Build model ``name`` for ``in_chans`` input channels.

    Returns an untrained :class:`~irfoundry.models.base.SegmentationModel` whose ``forward`` maps
    ``B x in_chans x H x W`` (H, W divisible by ``model.input_multiple``) to logits ``B x 1 x H x W``; the
    IRSTD hosts are :class:`~irfoundry.models.base.HostNet` s (encoder-decoder capability).
    """
    entry = model_entry(name)
    try:
        model = entry.builder(in_chans=in_chans, **kwargs)
    except TypeError as exc:
        raise ModelError(f"bad arguments for model {entry.name!r}: {exc}") from exc
    model.model_name = entry.name
    model.model_kwargs = {"in_chans": in_chans, **kwargs}
    return model
