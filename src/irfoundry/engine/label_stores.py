"""The evolving labels of a run: the training label store, its training pool and the validation label store.

Methods that evolve labels (:attr:`~irfoundry.methods.context.DataRequests.label_store`) train on a per-image
store initialised from the configured labels (e.g. point clicks), optionally through the method's
``label_init`` (PAL's contour masks and easy flag); the datamodule builds it with
:func:`build_label_store` when it is set up. A method that also trains on validation pseudo-labels
(:attr:`~irfoundry.methods.context.DataRequests.val_label_store`: semantic-prior KD's outer step) gets a
second store over the validation split, initialised the same way from the validation split's clicks (every
validation image is in: there is no validation pool).

:class:`RunLabels` is what one snapshot holds (``RUN/labels/<version>/``: the training store's levels and
manifest, ``pool.json``, and the validation store under ``val/``); the engine saves one after every
:meth:`~irfoundry.methods.context.StepContext.commit_labels` and loads the one a resume state names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from irfoundry.data.pool import TrainingPool
from irfoundry.data.store import PerImageStore

log = logging.getLogger(__name__)

#: names of the stores in ``ctx.stores``
TRAIN_LABELS, VAL_LABELS = "labels", "val_labels"
#: sub-folder of a snapshot with the validation store
VAL_FOLDER = "val"

LabelInit = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, bool]"]


def build_label_store(samples: Sequence, source, init: LabelInit | None, name: str) -> tuple[PerImageStore, list[str]]:
    """A memory store of one ``float32 1 x H x W`` label per sample, and the ids ``init`` put in the pool.

    Args:
        samples: the split's samples (``id``, ``image``).
        source: the configured label source (``load(sample, size)``, ``describe()``), e.g. the clicks.
        init: ``init(grey uint8 H x W, label float32 H x W) -> (label, in_pool)``, or ``None`` (the
            configured label as is; every image in).
        name: the store's name (:data:`TRAIN_LABELS` / :data:`VAL_LABELS`).

    Raises:
        DataError: an unreadable image (named), from the image reader.
    """
    from irfoundry.data.io import read_image, read_image_info

    sizes = [tuple(read_image_info(s.image).size) for s in samples]
    store = PerImageStore([s.id for s in samples], sizes, [(1, 1)], dtype="float32", name=name,
                          key={"labels": source.describe(), "ids": [s.id for s in samples]}).allocate()
    members = []
    for s, size in zip(samples, sizes):
        label = source.load(s, size)
        keep = True
        if init is not None:
            grey = np.rint(read_image(s.image) * np.float32(255)).astype(np.uint8)
            label, keep = init(grey, label)
        if keep:
            members.append(s.id)
        store.write(s.id, [np.asarray(label, dtype=np.float32)[None]])
    log.info("%s: %d images initialised from %s, %d in the pool", name, len(samples), source.describe(), len(members))
    return store, members


@dataclass
class RunLabels:
    """One snapshot's content: the training labels, optionally the training pool and the validation labels."""

    train: PerImageStore
    pool: TrainingPool | None = None
    val: PerImageStore | None = None

    def save(self, folder: str | Path) -> Path:
        """Write every part into ``folder`` (the validation store into ``folder/val``). Returns ``folder``."""
        folder = Path(folder)
        self.train.save(folder)
        if self.pool is not None:
            self.pool.save(folder)
        if self.val is not None:
            self.val.save(folder / VAL_FOLDER)
        return folder

    def load(self, folder: str | Path) -> "RunLabels":
        """Read a snapshot :meth:`save` wrote into the stores and pool (same images and keys)."""
        folder = Path(folder)
        self.train.load(folder)
        if self.pool is not None:
            self.pool.load(folder)
        if self.val is not None:
            self.val.load(folder / VAL_FOLDER)
        return self
