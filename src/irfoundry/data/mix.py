"""Training on several datasets at once (``data.mix``): the union of their training splits, each image keeping
its dataset's identity.

The field's SIRST3 protocol trains one network on NUAA-SIRST + NUDT-SIRST + IRSTD-1k and reports every test
set (LESPS, PAL, semantic-prior KD); SCTransNet trains on such a mix too. Each entry of ``data.mix`` names a
dataset folder and its splits; its validation images come from its own ``val_split`` (or the seeded
carve-out of ``data.val_fraction``, as for one dataset), never from a test split. Image ids become
``NAME/id`` (unique across datasets whose files share names: ``000001`` exists in several) and each sample
carries ``dataset = NAME``; evaluation reports every test set and their union
(:func:`irfoundry.engine.evaluate.evaluate` with several datasets).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from irfoundry.data.layouts import DatasetSpec, Sample
from irfoundry.errors import ConfigError
from irfoundry.options import parse_dataclass

__all__ = ["MixEntry", "mix_entries", "mixed_train_val", "tagged"]


@dataclass
class MixEntry:
    """One dataset of a mix. ``name`` (default: the folder's name) prefixes its ids; ``points``: a file of this
    dataset's clicks (its own ids) for ``data.labels: points``."""

    root: str = ""
    name: str = ""
    train_split: str = "train"
    val_split: str | None = None
    test_split: str = "test"
    points: str | None = None

    def __post_init__(self) -> None:
        if not self.root:
            raise ConfigError("every entry of data.mix needs root: the dataset folder")
        self.name = self.name or Path(self.root).name
        if "/" in self.name or not self.name:
            raise ConfigError(f"data.mix name {self.name!r} must be non-empty and without '/'")

    @property
    def test_spec(self) -> str:
        return f"{self.root}:{self.test_split}"


def mix_entries(values: Sequence[Mapping]) -> list[MixEntry]:
    """Typed entries of ``data.mix`` (errors name ``data.mix[i].key``); names must be unique."""
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"data.mix must be a list of datasets ({{root, train_split, ...}}), got {values!r}")
    entries = [parse_dataclass(MixEntry, v, f"data.mix[{i}]") for i, v in enumerate(values)]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"data.mix names {names} repeat; give each entry its own name")
    return entries


def tagged(samples: Sequence[Sample], name: str) -> list[Sample]:
    """``samples`` with ids ``name/id`` and ``dataset = name``."""
    return [dataclasses.replace(s, id=f"{name}/{s.id}", dataset=name) for s in samples]


def mixed_train_val(entries: Sequence[MixEntry], *, val_fraction: float, seed: int,
                    require_masks: bool) -> tuple[list[Sample], list[Sample], str]:
    """``(train, val, source)`` of the union: every entry's own train / val (see the module docstring)."""
    from irfoundry.data.dataset import train_val_samples

    train: list[Sample] = []
    val: list[Sample] = []
    sources = []
    for e in entries:
        tr, va, source = train_val_samples(DatasetSpec(e.root, e.train_split), val_fraction=val_fraction, seed=seed,
                                           val_split=e.val_split or "val", require_masks=require_masks)
        train += tagged(tr, e.name)
        val += tagged(va, e.name)
        sources.append(f"{e.name}: {source}")
    return train, val, "; ".join(sources)
