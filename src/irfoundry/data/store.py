"""Per-image stores: maps of every image of a split, at the image's own geometry, served per crop.

One mechanism for everything computed or kept per image: the foundation feature cache
(:class:`irfoundry.foundation.cache.FeatureCache`: features computed once, fp16, memory-mapped) and the
pseudo-label stores of point supervision (a float map per training image, rewritten by label evolution,
saved in the run folder).

Geometry (the contract the tests check)
    Image ``i`` of size ``H x W`` has, at level ``l`` with ``(channels C_l, stride s_l)``, a map of
    ``C_l x ceil(H / s_l) x ceil(W / s_l)`` cells; cell ``(a, b)`` covers original pixels rows
    ``[a s, (a + 1) s)`` and columns ``[b s, (b + 1) s)``. A training crop with geometry
    ``(top, left, h, w, flips, k, transpose)`` (:class:`~irfoundry.data.transforms.CropGeometry`; ``top``
    and ``left`` multiples of every stride: build the transform with ``TrainTransform(snap=store.alignment)``)
    gets, at level ``l``, the cells rows ``[top / s, top / s + ceil(h / s))``, columns likewise; cells
    outside the image's grid (padding added by the crop) are **zero**; then the crop's flips / quarter
    turns / transpose, on the cell array (:meth:`PerImageStore.lookup`). A stride-1 level is therefore
    cropped and turned exactly like the image.

Storage
    ``root=None``: one flat array per level in memory. ``root=DIR``: ``.npy`` files memory-mapped under
    ``DIR/<name>-<sha256(key)[:16]>/``, with ``manifest.json`` (the full key, image sizes and offsets) written
    last; a directory whose manifest is missing, incomplete or holds another key, or whose level files have
    the wrong size, is rebuilt, never reused. :meth:`save` / :meth:`load` write and read a store's whole
    content to / from a folder (the run folder's snapshot of evolved labels).

Multi-process loading
    The object pickles without the arrays of a disk store: each DataLoader worker re-opens the ``.npy``
    files read-only as memory maps on its first look-up. A memory store is inherited by forked workers.

DDP (``torch.distributed`` initialised, world size > 1)
    :meth:`PerImageStore.build` of a disk store: rank 0 checks the manifest and broadcasts the verdict; if
    a build is needed, rank 0 allocates the files, every rank computes its shard of the images
    (``rank::world``) into the shared memory maps, and rank 0 writes the manifest after a barrier. The
    directory must be on a file system all ranks see. A memory store is computed whole by every rank.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from irfoundry.data.transforms import CropGeometry
from irfoundry.errors import ConfigError, DataError, IRFoundryError

log = logging.getLogger(__name__)

__all__ = ["PerImageStore", "STORE_DTYPES", "dist_rank_world"]

STORE_DTYPES = {"float16": np.float16, "float32": np.float32}

#: ``compute(indices) -> maps``: one ``len(indices) x C_l x ceil(H / s_l) x ceil(W / s_l)`` array per level
Compute = Callable[[Sequence[int]], Sequence[np.ndarray]]


def dist_rank_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


class PerImageStore:
    """Maps of a fixed list of images at their own geometry (see the module docstring).

    Args:
        ids: image ids (unique), in the order of the samples.
        sizes: ``(H, W)`` of each image.
        levels: ``(channels, stride)`` per level.
        dtype: storage type, ``float16`` or ``float32``.
        root: ``None`` keeps the maps in memory; a directory keeps them in memory-mapped files under
            ``root/<name>-<sha256(key)[:16]>/``.
        key: everything the content depends on (JSON-able); names the disk directory and is checked on reuse.
        name: a short label (file-name safe after cleaning) for logs and the directory.
        extra: per-image JSON-able facts stored in the manifest (e.g. content hashes), one dict per image.
    """

    def __init__(
        self,
        ids: Sequence[str],
        sizes: Sequence[tuple[int, int]],
        levels: Sequence[tuple[int, int]],
        *,
        dtype: str = "float16",
        root: str | Path | None = None,
        key: dict | None = None,
        name: str = "store",
        extra: Sequence[dict] | None = None,
    ) -> None:
        ids = [str(i) for i in ids]
        if not ids:
            raise DataError(f"{name}: a per-image store needs at least one image")
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise DataError(f"{name}: a per-image store needs unique image ids; {dup} appear more than once.")
        if len(sizes) != len(ids) or (extra is not None and len(extra) != len(ids)):
            raise DataError(f"{name}: {len(ids)} ids but {len(sizes)} sizes")
        if dtype not in STORE_DTYPES:
            raise ConfigError(f"{name}: store dtype {dtype!r} is not one of {sorted(STORE_DTYPES)}.")
        if not levels or any(int(c) < 1 or int(s) < 1 for c, s in levels):
            raise DataError(f"{name}: levels must be (channels >= 1, stride >= 1) pairs, got {list(levels)}")
        self.ids = ids
        self._index = {i: k for k, i in enumerate(ids)}
        self.levels: list[tuple[int, int]] = [(int(c), int(s)) for c, s in levels]
        self.dtype = dtype
        self.root = Path(root).expanduser() if root is not None else None
        self.key = dict(key or {})
        self.name = name
        offsets = [0] * len(self.levels)
        self._images: list[dict] = []
        for k, (sid, (h, w)) in enumerate(zip(ids, sizes)):
            entry = {"id": sid, **(dict(extra[k]) if extra is not None else {}), "height": int(h), "width": int(w),
                     "offsets": list(offsets)}
            self._images.append(entry)
            for li, (c, s) in enumerate(self.levels):
                offsets[li] += c * (-(-int(h) // s)) * (-(-int(w) // s))
        self._numel = offsets
        self._arrays: list[np.ndarray] | None = None
        self.stats: dict = {}

    # ------------------------------------------------------------------ geometry
    @property
    def alignment(self) -> int:
        """Least common multiple of the strides: crop origins must be multiples of it."""
        return math.lcm(*(s for _, s in self.levels))

    @property
    def images(self) -> list[dict]:
        """Per image: ``id``, ``height``, ``width``, ``offsets`` (and the ``extra`` facts)."""
        return self._images

    @property
    def nbytes(self) -> int:
        return int(sum(self._numel)) * np.dtype(STORE_DTYPES[self.dtype]).itemsize

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, item: int | str) -> int:
        """Position of an image given its id (str) or position (int)."""
        if isinstance(item, str):
            try:
                return self._index[item]
            except KeyError:
                raise DataError(
                    f"image id {item!r} is not in {self.name} ({len(self.ids)} images, e.g. {self.ids[:3]}); "
                    "build the store on the same samples as the dataset."
                ) from None
        i = int(item)
        if not 0 <= i < len(self.ids):
            raise DataError(f"{self.name} index {i} is out of range [0, {len(self.ids)}).")
        return i

    # ------------------------------------------------------------------ disk identity
    def key_sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()

    @property
    def directory(self) -> Path | None:
        """``root/<name>-<sha256(key)[:16]>`` of a disk store, ``None`` for a memory store."""
        if self.root is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name)[:48]
        return self.root / f"{slug}-{self.key_sha256()[:16]}"

    def _manifest(self) -> dict:
        return {
            "key": self.key,
            "key_sha256": self.key_sha256(),
            "levels": [{"channels": c, "stride": s, "file": f"level{i}.npy", "numel": n}
                       for i, ((c, s), n) in enumerate(zip(self.levels, self._numel))],
            "images": self._images,
            "complete": True,
        }

    def _valid_on_disk(self, d: Path) -> bool:
        """True when ``d`` holds a complete store of exactly this key and geometry; says why not in the log."""
        try:
            manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("%s %s: unreadable manifest (%s); rebuilding", self.name, d, exc)
            return False
        want = self._manifest()
        for field in ("key", "images", "levels", "complete"):
            if manifest.get(field) != want[field]:
                log.warning("%s %s: manifest %r differs from the current one; rebuilding", self.name, d, field)
                return False
        for lv in want["levels"]:
            try:
                arr = np.load(d / lv["file"], mmap_mode="r")
            except (OSError, ValueError) as exc:
                log.warning("%s %s: cannot open %s (%s); rebuilding", self.name, d, lv["file"], exc)
                return False
            if arr.shape != (lv["numel"],) or arr.dtype != np.dtype(STORE_DTYPES[self.dtype]):
                log.warning("%s %s: %s has shape %s dtype %s; rebuilding", self.name, d, lv["file"], arr.shape,
                            arr.dtype)
                return False
        return True

    # ------------------------------------------------------------------ build / write
    def allocate(self) -> "PerImageStore":
        """An all-zero memory store (to be filled with :meth:`write`). Returns ``self``."""
        if self.root is not None:
            raise IRFoundryError(f"{self.name}: allocate() makes memory stores; a disk store is filled by build()")
        self._arrays = [np.zeros(n, dtype=STORE_DTYPES[self.dtype]) for n in self._numel]
        return self

    def build(self, compute: Compute, *, chunks: Callable[[Sequence[int]], list[list[int]]] | None = None,
              progress: bool = True) -> "PerImageStore":
        """Fill the store with ``compute`` over every image, or reuse a valid disk store of the same key.

        Args:
            compute: ``indices -> [array len(indices) x C_l x h_l x w_l per level]`` (the images of one
                chunk share a size when ``chunks`` groups them so).
            chunks: splits this process's image indices into computation chunks (default: one image each).
            progress: log progress about every tenth of the images.

        Sets ``self.stats``: ``{"reused": bool, "build_s": seconds (0 when reused), "nbytes": bytes}``.
        """
        rank, world = dist_rank_world()
        t0 = time.perf_counter()
        chunker = chunks or (lambda idx: [[i] for i in idx])
        if self.root is None:
            self.allocate()
            self._compute(chunker(list(range(len(self.ids)))), self._arrays, compute, progress)
            self.stats.update(reused=False, build_s=time.perf_counter() - t0, nbytes=self.nbytes)
            return self
        d = self.directory
        valid = [self._valid_on_disk(d) if rank == 0 else None]
        if world > 1:
            torch.distributed.broadcast_object_list(valid, src=0)
        if valid[0]:
            log.info("%s: reusing %s", self.name, d)
            self._arrays = None
            self.stats.update(reused=True, build_s=0.0, nbytes=self.nbytes)
            return self
        log.info("%s: building %d images into %s", self.name, len(self.ids), d)
        dtype = STORE_DTYPES[self.dtype]
        if rank == 0:
            d.mkdir(parents=True, exist_ok=True)
            (d / "manifest.json").unlink(missing_ok=True)
            for i, n in enumerate(self._numel):
                arr = np.lib.format.open_memmap(d / f"level{i}.npy", mode="w+", dtype=dtype, shape=(n,))
                arr.flush()
                del arr
        _barrier(world)
        arrays = [np.load(d / f"level{i}.npy", mmap_mode="r+") for i in range(len(self.levels))]
        try:
            self._compute(chunker(list(range(rank, len(self.ids), world))), arrays, compute, progress)
        finally:
            for a in arrays:
                a.flush()
            del arrays
        _barrier(world)
        if rank == 0:
            tmp = d / "manifest.json.tmp"
            tmp.write_text(json.dumps(self._manifest(), indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, d / "manifest.json")
        _barrier(world)
        self._arrays = None
        self.stats.update(reused=False, build_s=time.perf_counter() - t0, nbytes=self.nbytes)
        return self

    def _compute(self, todo: list[list[int]], arrays: list[np.ndarray], compute: Compute, progress: bool) -> None:
        n_total, done, t0 = sum(len(c) for c in todo), 0, time.perf_counter()
        next_log = max(1, n_total // 10)
        for chunk in todo:
            maps = compute(chunk)
            if len(maps) != len(self.levels):
                raise IRFoundryError(f"{self.name}: compute returned {len(maps)} maps for {len(self.levels)} levels")
            for j, i in enumerate(chunk):
                self._put(arrays, i, [m[j] for m in maps])
            done += len(chunk)
            if progress and (done >= next_log or done == n_total):
                dt = time.perf_counter() - t0
                log.info("%s: %d/%d images, %.1f s (eta %.1f s)", self.name, done, n_total, dt,
                         dt / done * (n_total - done))
                next_log = done + max(1, n_total // 10)

    def _shape(self, i: int, li: int) -> tuple[int, int, int]:
        e, (c, s) = self._images[i], self.levels[li]
        return c, -(-e["height"] // s), -(-e["width"] // s)

    def _put(self, arrays: list[np.ndarray], i: int, maps: Sequence[np.ndarray]) -> None:
        for li, m in enumerate(maps):
            want = self._shape(i, li)
            m = np.asarray(m)
            if tuple(m.shape) != want:
                raise IRFoundryError(
                    f"{self.name}: map {li} of image {self.ids[i]!r} has shape {tuple(m.shape)}, the store's "
                    f"geometry (channels {self.levels[li][0]}, stride {self.levels[li][1]}) needs {want}"
                )
            o = self._images[i]["offsets"][li]
            arrays[li][o : o + m.size] = m.astype(STORE_DTYPES[self.dtype], copy=False).ravel()

    def write(self, item: int | str, maps: Sequence[np.ndarray | torch.Tensor]) -> None:
        """Replace image ``item``'s maps (one ``C_l x h_l x w_l`` array per level) in a memory store."""
        if self._arrays is None or self.root is not None:
            raise IRFoundryError(f"{self.name}: write() needs an allocated memory store (allocate() or load())")
        self._put(self._arrays, self.index_of(item),
                  [m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else m for m in maps])

    # ------------------------------------------------------------------ save / load a whole store
    def save(self, folder: str | Path) -> Path:
        """Write the content (levels + manifest) to ``folder`` atomically (the manifest last). Returns it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for i, arr in enumerate(self._level_arrays()):
            tmp = folder / f".level{i}.npy.tmp"
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(arr), allow_pickle=False)
            os.replace(tmp, folder / f"level{i}.npy")
        tmp = folder / "manifest.json.tmp"
        tmp.write_text(json.dumps(self._manifest(), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, folder / "manifest.json")
        return folder

    def load(self, folder: str | Path) -> "PerImageStore":
        """Read a content :meth:`save` wrote into memory (same ids, sizes, levels and key). Returns ``self``."""
        folder = Path(folder)
        if not self._valid_on_disk(folder):
            raise DataError(f"{folder} does not hold a complete {self.name} of these images (manifest.json missing, "
                            "or another key / image list); it cannot be resumed from")
        self._arrays = [np.array(np.load(folder / f"level{i}.npy", allow_pickle=False))
                        for i in range(len(self.levels))]
        return self

    @classmethod
    def open_saved(cls, folder: str | Path) -> "PerImageStore":
        """A memory store with the content :meth:`save` wrote to ``folder`` (ids, sizes, levels from its
        manifest): for inspecting a run's evolved labels."""
        folder = Path(folder)
        try:
            m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{folder} holds no saved store (manifest.json: {exc})") from None
        dtype = str(np.load(folder / m["levels"][0]["file"], mmap_mode="r").dtype)
        store = cls([im["id"] for im in m["images"]], [(im["height"], im["width"]) for im in m["images"]],
                    [(lv["channels"], lv["stride"]) for lv in m["levels"]], dtype=dtype, key=m["key"],
                    name=folder.name, extra=[{k: v for k, v in im.items() if k not in ("id", "height", "width", "offsets")}
                                              for im in m["images"]])
        return store.load(folder)

    # ------------------------------------------------------------------ read
    def _level_arrays(self) -> list[np.ndarray]:
        if self._arrays is None:
            if self.root is None:
                raise IRFoundryError(f"{self.name} holds nothing yet: build(), allocate() or load() it first.")
            d = self.directory
            self._arrays = [np.load(d / f"level{i}.npy", mmap_mode="r") for i in range(len(self.levels))]
        return self._arrays

    def _full_array(self, i: int, li: int) -> np.ndarray:
        c, gh, gw = self._shape(i, li)
        o = self._images[i]["offsets"][li]
        return self._level_arrays()[li][o : o + c * gh * gw].reshape(c, gh, gw)

    def full(self, item: int | str, *, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """The stored maps of the whole image: list of ``C_l x ceil(H / s_l) x ceil(W / s_l)``."""
        i = self.index_of(item)
        return [torch.from_numpy(np.array(self._full_array(i, li))).to(dtype) for li in range(len(self.levels))]

    def lookup(self, item: int | str, geometry, *, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """The maps under one crop, turned like the crop.

        Args:
            item: image id (str) or position (int).
            geometry: :class:`~irfoundry.data.transforms.CropGeometry` or its 8-integer tensor.
            dtype: of the returned tensors.

        Returns:
            list over levels of ``C_l x h_l x w_l`` with ``(h_l, w_l) = ceil(geometry.output_size / s_l)``.

        Raises:
            DataError: unknown id, or a crop origin that is not a multiple of a stride (the transform was
                not built with ``snap=store.alignment``).
        """
        g = geometry if isinstance(geometry, CropGeometry) else CropGeometry.from_tensor(geometry)
        i = self.index_of(item)
        e = self._images[i]
        out = []
        for li, (c, s) in enumerate(self.levels):
            if g.top % s or g.left % s:
                raise DataError(
                    f"crop origin ({g.top}, {g.left}) of image {e['id']!r} is not a multiple of stride {s} of "
                    f"{self.name}; build the TrainTransform with snap={self.alignment} (the store's alignment)."
                )
            full = self._full_array(i, li)
            gh, gw = full.shape[-2:]
            a0, b0 = g.top // s, g.left // s
            h, w = -(-g.height // s), -(-g.width // s)
            win = np.zeros((c, h, w), dtype=full.dtype)
            ya, yb = max(a0, 0), min(a0 + h, gh)
            xa, xb = max(b0, 0), min(b0 + w, gw)
            if ya < yb and xa < xb:
                win[:, ya - a0 : yb - a0, xa - b0 : xb - b0] = full[:, ya:yb, xa:xb]
            out.append(torch.from_numpy(np.ascontiguousarray(g.apply_ops(win))).to(dtype))
        return out

    def inside(self, item: int | str, geometry) -> list[torch.Tensor]:
        """Which cells of :meth:`lookup`'s maps lie wholly inside the image (no padding of either kind):
        list over levels of ``bool h_l x w_l``, turned like the maps."""
        g = geometry if isinstance(geometry, CropGeometry) else CropGeometry.from_tensor(geometry)
        e = self._images[self.index_of(item)]
        out = []
        for _, s in self.levels:
            h, w = -(-g.height // s), -(-g.width // s)
            rows = np.arange(h) * s + g.top
            cols = np.arange(w) * s + g.left
            ok = ((rows >= 0) & (rows + s <= e["height"]))[:, None] & ((cols >= 0) & (cols + s <= e["width"]))[None]
            out.append(torch.from_numpy(np.ascontiguousarray(g.apply_ops(ok))))
        return out

    # ------------------------------------------------------------------ pickling (DataLoader workers)
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.root is not None:
            state["_arrays"] = None  # re-opened as read-only memory maps on first use
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
