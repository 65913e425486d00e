"""The training pool: which training images the training crops are drawn from.

Easy-to-hard methods (PAL) train first on the images whose initial labels they trust and let the others
in as they are mined. The pool is a subset of the training split's images, in the split's order; the
training sampler permutes the pool's members each epoch (``irfoundry.engine.datamodule``), so an epoch is
one pass over the pool. A method changes it between epochs (``ctx.train_pool.add(ids)``) and then commits
its labels: the pool is saved with the label snapshot (``pool.json``) and is part of the resume state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from irfoundry.errors import DataError

POOL_FILE = "pool.json"


class TrainingPool:
    """Membership of the training images ``ids`` (all members at first).

    Args:
        ids: the training split's image ids, in its order.
    """

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = [str(i) for i in ids]
        self._index = {sid: i for i, sid in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise DataError("the training split lists an image id twice; ids must be unique")
        self._member = [True] * len(self.ids)

    def _check(self, ids: Iterable[str]) -> list[int]:
        ids = list(ids)
        unknown = [i for i in ids if i not in self._index]
        if unknown:
            raise DataError(f"{len(unknown)} id(s) are not training images (e.g. {unknown[:5]})")
        return [self._index[i] for i in ids]

    def set(self, ids: Iterable[str]) -> None:
        """Make exactly ``ids`` the members."""
        keep = set(self._check(ids))
        self._member = [i in keep for i in range(len(self.ids))]

    def add(self, ids: Iterable[str]) -> None:
        """Let ``ids`` in as well."""
        for i in self._check(ids):
            self._member[i] = True

    def __contains__(self, sid: str) -> bool:
        i = self._index.get(sid)
        return i is not None and self._member[i]

    def __len__(self) -> int:
        return sum(self._member)

    def indices(self) -> list[int]:
        """Dataset indices of the members, in the split's order."""
        return [i for i, m in enumerate(self._member) if m]

    def members(self) -> list[str]:
        return [self.ids[i] for i in self.indices()]

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/pool.json`` atomically."""
        path = Path(folder) / POOL_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"ids": self.ids, "members": self.members()}, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def load(self, folder: str | Path) -> "TrainingPool":
        """Read the membership :meth:`save` wrote (the same training images). Returns ``self``."""
        path = Path(folder) / POOL_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: no readable training pool ({exc}); the run cannot be resumed from it") from None
        if saved.get("ids") != self.ids:
            raise DataError(f"{path} belongs to another training split (its image list differs)")
        self.set(saved["members"])
        return self
