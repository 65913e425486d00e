"""Foundation feature cache: every training image's features computed once, served per random crop.

A frozen foundation model costs far more than a small IRSTD host, and the features of a fixed image do not
change during training. :class:`FeatureCache` runs the model once per training image (the full,
un-augmented image), keeps the maps in fp16 (in memory, or in memory-mapped ``.npy`` files under a
directory keyed by everything they depend on) and cuts out, for each training crop, the cells under the
crop, turned exactly like the crop. :class:`PriorCollate` attaches them to training batches as
``batch["prior"]``.

Typical use::

    fm = create_foundation("efficientnet_lite0")
    cache = FeatureCache(fm, train_samples, root="~/.cache/irfoundry/features").build()
    ds = IRSTDDataset(train_samples, transform=TrainTransform(crop_size=256, snap=cache.alignment), ...)
    loader = DataLoader(ds, batch_size=8, collate_fn=PriorCollate(cache), num_workers=2)
    batch["prior"]          # list of N x C_i x ceil(256 / s_i) x ceil(256 / s_i) float32 maps

Alignment (the contract the tests check)
    * Input: the full image as ``read_image`` returns it (``float32 H x W`` in [0, 1], no normalisation, no
      intensity jitter), given to ``fm`` as ``1 x 1 x H x W``. ``fm`` pads internally and crops back, so
      level ``i`` (stride ``s_i``) has ``ceil(H / s_i) x ceil(W / s_i)`` cells and cell ``(a, b)`` covers
      original pixels rows ``[a s_i, (a + 1) s_i)``, columns ``[b s_i, (b + 1) s_i)``.
    * A crop with geometry ``(top, left, h, w, flips, k, transpose)``
      (:class:`~irfoundry.data.transforms.CropGeometry`; ``top`` and ``left`` must be multiples of every
      stride: build the transform with ``TrainTransform(snap=cache.alignment)``) gets, at level ``i``, the
      cells rows ``[top / s_i, top / s_i + ceil(h / s_i))``, columns likewise; cells outside the image's grid
      (padding added by the crop) are **zero**; then the same flips / quarter turns / transpose as the
      crop, on the cell array.
    * So the served maps equal ``fm(full image)`` cut and turned that way, up to fp16 storage (tested).

What this is not (inherent, documented, measured in the tests and the benchmark)
    * Context: the served features see the whole image. A ViT attends globally and a CNN's border cells see
      pixels outside the crop, so ``fm(crop)`` differs. The cache serves full-image-context features cut
      to the crop; as priors for a host that sees only the crop this is arguably better context, and the
      semantic-prior reference code likewise gives its VFM the un-augmented image.
    * Padding: cells wholly in the crop's padding are zeros, not features of padding. Cells straddling
      the image's bottom/right edge hold ``fm``'s own padding (for ``irfoundry.foundation`` backbones the
      backbone's mean colour), not the transform's pad (zero intensity or reflection).
    * Flips and turns act on the feature array: networks are not flip-equivariant, so this is not
      ``fm(flipped crop)``; it is the un-flipped features, moved with their pixels.
    * Crop sides that are not multiples of a stride (256 with DINOv2's patch 14): the window has
      ``ceil(h / s)`` cells, the last of which overhangs the crop by ``ceil(h / s) s - h`` pixels; after a
      flip or turn that overhanging cell comes first, so the grid is shifted by up to ``s - 1`` pixels
      relative to the crop. Cells align exactly when the crop side is a multiple of every stride.
    * Intensity jitter is not applied to the cached input.

Keys and invalidation
    The key is ``fm.cache_key()`` (name, weights sha256, layers, input size), the declared
    ``feature_info``, the alignment policy above, the storage dtype, the format version and each image's
    id and content hash (sha1 of the decoded ``float32`` array and its shape). On disk, the cache lives in
    ``root/<model>-<sha256(key)[:16]>/`` with ``manifest.json`` (the full key, image sizes and offsets)
    written last; a directory whose manifest is missing, incomplete, or holds a different key, or whose
    level files have the wrong size, is rebuilt, never reused. Stale directories of older keys are left in
    ``root`` (delete it to reclaim space). One builder per directory at a time (a DDP job counts as one).

Multi-process loading
    The object pickles without the model and without the arrays of a disk cache: each DataLoader worker
    re-opens the ``.npy`` files read-only as memory maps on its first look-up (the OS page cache is shared).
    A memory cache (``root=None``) is inherited by forked workers; under the ``spawn`` start method it is
    copied into every worker, so prefer a disk cache there.

DDP (``torch.distributed`` initialised, world size > 1)
    Disk cache: rank 0 checks the manifest and broadcasts the verdict; if a build is needed, rank 0
    allocates the files, every rank computes its shard of the images (``rank::world``) into the shared
    memory maps, and rank 0 writes the manifest after a barrier; then every rank reads the same files.
    The directory must be on a file system all ranks see. Memory cache: every rank computes every image
    (no sharing); use a disk cache to build once.
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

from irfoundry.data.io import read_image
from irfoundry.data.layouts import Sample
from irfoundry.data.transforms import CropGeometry
from irfoundry.errors import ConfigError, DataError, IRFoundryError, ModelError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Version of the on-disk layout; part of the key."""

ALIGNMENT_POLICY = (
    "full image in [0,1] from read_image, no jitter; fm pads and crops internally; "
    "cell (a,b) of stride s covers pixels [a*s,(a+1)*s) x [b*s,(b+1)*s); cells outside the image grid are 0"
)
"""The alignment rule, as stored in the key (changing the rule invalidates old caches)."""

_DTYPES = {"float16": np.float16, "float32": np.float32}


def image_sha1(image: np.ndarray) -> str:
    """sha1 of a decoded image: dtype, shape and bytes (what the model sees, not the file's encoding)."""
    h = hashlib.sha1()
    h.update(f"{image.dtype.str}{tuple(image.shape)}".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


class FeatureCache:
    """Features of a frozen model for a fixed list of images, computed once, cut per crop.

    Args:
        fm: the frozen model: ``fm(x)`` with ``x`` ``N x 1 x H x W`` in [0, 1] returns a list of
            ``N x C_i x ceil(H / s_i) x ceil(W / s_i)`` maps; ``fm.feature_info`` lists
            ``{"channels": C_i, "stride": s_i, ...}``; ``fm.cache_key()`` is a string naming everything
            its outputs depend on (``irfoundry.foundation.create_foundation`` models qualify).
        samples: the training samples (``Sample`` objects with ``id`` and ``image``), or a dataset with
            ``.samples``. Ids must be unique.
        root: ``None`` keeps the maps in memory; a directory keeps them in memory-mapped files under
            ``root/<model>-<key hash>/`` (see the module docstring for the key and invalidation).
        dtype: storage type, ``float16`` (default) or ``float32``.
        device: where ``fm`` runs during :meth:`build` (default: the device of its first parameter or
            buffer, else CPU).
        batch_size: images of equal size computed together during :meth:`build`.

    Call :meth:`build` once (it reuses a valid disk cache), then :meth:`lookup` from anywhere, including
    DataLoader workers.
    """

    def __init__(
        self,
        fm,
        samples,
        *,
        root: str | Path | None = None,
        dtype="float16",
        device: str | torch.device | None = None,
        batch_size: int = 8,
    ) -> None:
        samples = list(getattr(samples, "samples", samples))
        if not samples:
            raise DataError("FeatureCache got no samples; pass the training samples (e.g. IRSTDDataset.samples).")
        ids = [s.id for s in samples]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise DataError(f"FeatureCache needs unique sample ids; {dup} appear more than once.")
        name = str(getattr(dtype, "name", None) or str(dtype)).replace("torch.", "")
        if name not in _DTYPES:
            raise ConfigError(f"FeatureCache dtype {dtype!r} is not one of {sorted(_DTYPES)}.")
        if batch_size < 1:
            raise ConfigError(f"FeatureCache batch_size must be positive, got {batch_size}.")
        info = list(getattr(fm, "feature_info", None) or [])
        if not info or not hasattr(fm, "cache_key"):
            raise ModelError(
                f"{type(fm).__name__} is not a foundation model for FeatureCache: it needs feature_info "
                "(list of {'channels', 'stride'}) and cache_key(); build one with create_foundation()."
            )
        self.fm = fm
        self.samples: list[Sample] = samples
        self.ids = ids
        self._index = {i: k for k, i in enumerate(ids)}
        self.root = Path(root).expanduser() if root is not None else None
        self.dtype = name
        self.device = device
        self.batch_size = int(batch_size)
        #: ``[(channels, stride), ...]`` one per level
        self.levels: list[tuple[int, int]] = [(int(d["channels"]), int(d["stride"])) for d in info]
        self.model_name = str(getattr(fm, "name", None) or type(fm).__name__)
        self._fm_key = str(fm.cache_key())
        self._images: list[dict] | None = None  # per image: id, sha1, height, width, offsets
        self._key: dict | None = None
        self._arrays: list[np.ndarray] | None = None
        self.stats: dict = {}

    # ------------------------------------------------------------------ keys
    @property
    def alignment(self) -> int:
        """Least common multiple of the strides: crop origins must be multiples of it
        (``TrainTransform(snap=cache.alignment)``)."""
        return math.lcm(*(s for _, s in self.levels))

    def _scan(self) -> list[dict]:
        """Read every image once: content hash and size (the key needs them)."""
        if self._images is None:
            t0 = time.perf_counter()
            images = []
            for s in self.samples:
                img = read_image(s.image)
                images.append({"id": s.id, "sha1": image_sha1(img), "height": img.shape[0], "width": img.shape[1]})
            offsets = [0] * len(self.levels)
            for e in images:
                e["offsets"] = list(offsets)
                for li, (c, st) in enumerate(self.levels):
                    offsets[li] += c * (-(-e["height"] // st)) * (-(-e["width"] // st))
            self._numel = offsets
            self._images = images
            self.stats["hash_s"] = time.perf_counter() - t0
        return self._images

    def key(self) -> dict:
        """Everything the cached maps depend on (JSON-able); its sha256 names the disk directory."""
        if self._key is None:
            images = self._scan()
            listing = "".join(f"{e['id']}\t{e['sha1']}\n" for e in images)
            self._key = {
                "format": CACHE_FORMAT,
                "foundation": self._fm_key,
                "levels": [list(lv) for lv in self.levels],
                "policy": ALIGNMENT_POLICY,
                "dtype": self.dtype,
                "n_images": len(images),
                "images_sha1": hashlib.sha1(listing.encode()).hexdigest(),
            }
        return self._key

    def key_sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()

    @property
    def directory(self) -> Path | None:
        """``root/<model>-<sha256(key)[:16]>`` of a disk cache, ``None`` for a memory cache."""
        if self.root is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model_name)[:48]
        return self.root / f"{slug}-{self.key_sha256()[:16]}"

    def _manifest(self) -> dict:
        return {
            "key": self.key(),
            "key_sha256": self.key_sha256(),
            "levels": [
                {"channels": c, "stride": s, "file": f"level{i}.npy", "numel": n}
                for i, ((c, s), n) in enumerate(zip(self.levels, self._numel))
            ],
            "images": self._images,
            "complete": True,
        }

    def _valid_on_disk(self, d: Path) -> bool:
        """True when ``d`` holds a complete cache of exactly this key; says why not in the log."""
        try:
            manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("feature cache %s: unreadable manifest (%s); rebuilding", d, exc)
            return False
        want = self._manifest()
        for field in ("key", "images", "levels", "complete"):
            if manifest.get(field) != want[field]:
                log.warning("feature cache %s: manifest %r differs from the current one; rebuilding", d, field)
                return False
        for lv in want["levels"]:
            try:
                arr = np.load(d / lv["file"], mmap_mode="r")
            except (OSError, ValueError) as exc:
                log.warning("feature cache %s: cannot open %s (%s); rebuilding", d, lv["file"], exc)
                return False
            if arr.shape != (lv["numel"],) or arr.dtype != np.dtype(_DTYPES[self.dtype]):
                log.warning("feature cache %s: %s has shape %s dtype %s; rebuilding", d, lv["file"], arr.shape, arr.dtype)
                return False
        return True

    # ------------------------------------------------------------------ build
    def _fm_device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        dev = getattr(self.fm, "device", None)
        if isinstance(dev, torch.device):
            return dev
        for t in list(self.fm.parameters()) + list(self.fm.buffers()) if hasattr(self.fm, "parameters") else []:
            return t.device
        return torch.device("cpu")

    def _compute(self, indices: Sequence[int], arrays: list[np.ndarray], *, progress: bool = True) -> None:
        """Run ``fm`` on the images ``indices`` (grouped by size) and write their maps into ``arrays``."""
        images = self._images
        device = self._fm_device()
        groups: dict[tuple[int, int], list[int]] = {}
        for i in indices:
            groups.setdefault((images[i]["height"], images[i]["width"]), []).append(i)
        todo = [g[k : k + self.batch_size] for g in groups.values() for k in range(0, len(g), self.batch_size)]
        n_total, done, t0 = len(indices), 0, time.perf_counter()
        next_log = max(1, n_total // 10)
        for chunk in todo:
            x = []
            for i in chunk:
                img = read_image(self.samples[i].image)
                if image_sha1(img) != images[i]["sha1"]:
                    raise DataError(
                        f"image {self.samples[i].image} changed while the feature cache was being built; rebuild."
                    )
                x.append(torch.from_numpy(img))
            x = torch.stack(x)[:, None].to(device)
            with torch.inference_mode():
                maps = self.fm(x)
            if len(maps) != len(self.levels):
                raise ModelError(
                    f"{self.model_name} returned {len(maps)} maps but its feature_info declares {len(self.levels)}."
                )
            h, w = x.shape[-2:]
            for li, ((c, s), m) in enumerate(zip(self.levels, maps)):
                want = (len(chunk), c, -(-h // s), -(-w // s))
                if tuple(m.shape) != want:
                    raise ModelError(
                        f"{self.model_name} map {li} has shape {tuple(m.shape)} for a {h}x{w} input; feature_info "
                        f"(channels {c}, stride {s}) promises {want}."
                    )
                m = m.detach().float().cpu().numpy().astype(_DTYPES[self.dtype])
                n = m[0].size
                for j, i in enumerate(chunk):
                    o = images[i]["offsets"][li]
                    arrays[li][o : o + n] = m[j].ravel()
            done += len(chunk)
            if progress and (done >= next_log or done == n_total):
                dt = time.perf_counter() - t0
                log.info(
                    "feature cache %s: %d/%d images, %.1f s (eta %.1f s)",
                    self.model_name, done, n_total, dt, dt / done * (n_total - done),
                )
                next_log = done + max(1, n_total // 10)

    def build(self, *, progress: bool = True) -> "FeatureCache":
        """Compute every image's maps, or reuse a valid disk cache of the same key. Returns ``self``.

        Sets ``self.stats``: ``{"reused": bool, "build_s": seconds (0 when reused), "hash_s": seconds spent
        hashing images, "nbytes": bytes of cached maps}``. Under DDP see the module docstring.
        """
        self._scan()
        rank, world = _dist_rank_world()
        dtype = _DTYPES[self.dtype]
        t0 = time.perf_counter()
        if self.root is None:
            arrays = [np.zeros(n, dtype=dtype) for n in self._numel]
            self._compute(range(len(self.samples)), arrays, progress=progress)
            self._arrays = arrays
            self.stats.update(reused=False, build_s=time.perf_counter() - t0, nbytes=self.nbytes)
            return self
        d = self.directory
        valid = [self._valid_on_disk(d) if rank == 0 else None]
        if world > 1:
            torch.distributed.broadcast_object_list(valid, src=0)
        if valid[0]:
            log.info("feature cache %s: reusing %s", self.model_name, d)
            self._arrays = None
            self.stats.update(reused=True, build_s=0.0, nbytes=self.nbytes)
            return self
        log.info("feature cache %s: building %d images into %s", self.model_name, len(self.samples), d)
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
            self._compute(range(rank, len(self.samples), world), arrays, progress=progress)
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

    # ------------------------------------------------------------------ read
    @property
    def nbytes(self) -> int:
        return int(sum(self._numel)) * np.dtype(_DTYPES[self.dtype]).itemsize if self._images is not None else 0

    def _level_arrays(self) -> list[np.ndarray]:
        if self._arrays is None:
            if self._images is None or self.root is None:
                raise IRFoundryError(
                    f"FeatureCache({self.model_name}) has not been built: call cache.build() (in the main process, "
                    "before creating the DataLoader)."
                )
            d = self.directory
            self._arrays = [np.load(d / f"level{i}.npy", mmap_mode="r") for i in range(len(self.levels))]
        return self._arrays

    def index_of(self, item: int | str) -> int:
        """Position of a sample given its id (str) or position (int)."""
        if isinstance(item, str):
            try:
                return self._index[item]
            except KeyError:
                raise DataError(
                    f"image id {item!r} is not in this feature cache ({len(self.ids)} images, e.g. {self.ids[:3]}); "
                    "build the cache on the same samples as the dataset."
                ) from None
        i = int(item)
        if not 0 <= i < len(self.ids):
            raise DataError(f"feature cache index {i} is out of range [0, {len(self.ids)}).")
        return i

    def full(self, item: int | str, *, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """The stored maps of the whole image: list of ``C_i x ceil(H / s_i) x ceil(W / s_i)``."""
        i = self.index_of(item)
        arrays, e = self._level_arrays(), self._images[i]
        out = []
        for li, (c, s) in enumerate(self.levels):
            gh, gw = -(-e["height"] // s), -(-e["width"] // s)
            o = e["offsets"][li]
            out.append(torch.from_numpy(np.array(arrays[li][o : o + c * gh * gw]).reshape(c, gh, gw)).to(dtype))
        return out

    def lookup(self, item: int | str, geometry, *, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """The maps under one training crop, turned like the crop.

        Args:
            item: sample id (str) or position in ``samples`` (int).
            geometry: :class:`~irfoundry.data.transforms.CropGeometry`, or its 8-integer tensor
                (``item["geometry"]`` of an ``IRSTDDataset`` training item).
            dtype: of the returned tensors (storage is fp16; ``float32`` by default).

        Returns:
            list over levels of ``C_i x h_i x w_i`` with ``(h_i, w_i) = ceil(geometry.output_size / s_i)``
            (see the module docstring for the alignment and what is zero).

        Raises:
            DataError: unknown id, or a crop origin that is not a multiple of a stride (the transform was
                not built with ``snap=cache.alignment``).
        """
        g = geometry if isinstance(geometry, CropGeometry) else CropGeometry.from_tensor(geometry)
        i = self.index_of(item)
        arrays, e = self._level_arrays(), self._images[i]
        out = []
        for li, (c, s) in enumerate(self.levels):
            if g.top % s or g.left % s:
                raise DataError(
                    f"crop origin ({g.top}, {g.left}) of image {e['id']!r} is not a multiple of feature stride {s}; "
                    f"build the TrainTransform with snap={self.alignment} (FeatureCache.alignment)."
                )
            gh, gw = -(-e["height"] // s), -(-e["width"] // s)
            full = arrays[li][e["offsets"][li] : e["offsets"][li] + c * gh * gw].reshape(c, gh, gw)
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
        list over levels of ``bool h_i x w_i``, turned like the maps. Useful to mask the padding."""
        g = geometry if isinstance(geometry, CropGeometry) else CropGeometry.from_tensor(geometry)
        e = self._scan()[self.index_of(item)]
        out = []
        for c, s in self.levels:
            h, w = -(-g.height // s), -(-g.width // s)
            rows = np.arange(h) * s + g.top
            cols = np.arange(w) * s + g.left
            ok = ((rows >= 0) & (rows + s <= e["height"]))[:, None] & ((cols >= 0) & (cols + s <= e["width"]))[None]
            out.append(torch.from_numpy(np.ascontiguousarray(g.apply_ops(ok))))
        return out

    # ------------------------------------------------------------------ pickling (DataLoader workers)
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["fm"] = None  # workers only read; the model stays in the main process
        if self.root is not None:
            state["_arrays"] = None  # re-opened as read-only memory maps on first use
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class PriorCollate:
    """``collate_fn`` that adds foundation priors from a :class:`FeatureCache` to training batches.

    ``batch = base(items)`` (default: stacks ``image`` / ``mask`` into ``N x 1 x H x W``, lists ``id``),
    then ``batch["geometry"]`` (``N x 8`` int64) and ``batch["prior"]``: a list over levels of
    ``N x C_i x h_i x w_i`` float32 tensors, looked up by each item's ``id`` and ``geometry``
    (items from ``IRSTDDataset`` with a :class:`~irfoundry.data.transforms.TrainTransform` built with
    ``snap=cache.alignment``). Runs in the DataLoader workers; picklable.
    """

    def __init__(self, cache: FeatureCache, base: Callable[[Sequence[dict]], dict] | None = None) -> None:
        self.cache = cache
        self.base = base

    def __call__(self, items: Sequence[dict]) -> dict:
        if self.base is not None:
            batch = self.base(items)
        else:
            batch = {
                "image": torch.stack([it["image"] for it in items]),
                "mask": torch.stack([it["mask"] for it in items]),
                "id": [it["id"] for it in items],
            }
        if any("geometry" not in it for it in items):
            raise DataError(
                "training items carry no 'geometry': the dataset's transform must record its crops "
                "(TrainTransform does; evaluation items have none)."
            )
        priors = [self.cache.lookup(it["id"], it["geometry"], dtype=torch.float16) for it in items]
        batch["geometry"] = torch.stack([it["geometry"] for it in items])
        batch["prior"] = [torch.stack([p[li] for p in priors]).float() for li in range(len(self.cache.levels))]
        return batch
