"""Foundation feature cache: every training image's features computed once, served per random crop.

A frozen foundation model costs far more than a small IRSTD host, and the features of a fixed image do not
change during training. :class:`FeatureCache` runs the model once per training image (the full,
un-augmented image), keeps the maps in fp16 (in memory, or in memory-mapped ``.npy`` files under a
directory keyed by everything they depend on) and cuts out, for each training crop, the cells under the
crop, turned exactly like the crop. It is one user of the per-image store of
:mod:`irfoundry.data.store` (which owns the storage, the geometry and the DDP-sharded build); this module
adds what is foundation-specific: the key (model identity + image contents) and the computation. Datasets
serve it per crop as ``batch[name]`` (``IRSTDDataset(..., crop_stores={"foundation": cache})``).

Typical use::

    fm = create_foundation("efficientnet_lite0")
    cache = FeatureCache(fm, train_samples, root="~/.cache/irfoundry/features").build()
    ds = IRSTDDataset(train_samples, transform=TrainTransform(crop_size=256, snap=cache.alignment),
                      crop_stores={"foundation": cache}, ...)
    loader = DataLoader(ds, batch_size=8, collate_fn=collate, num_workers=2)   # irfoundry.data.collate
    batch["foundation"]     # list of N x C_i x ceil(256 / s_i) x ceil(256 / s_i) float32 maps

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
      to the crop; as features for a host that sees only the crop this is arguably better context, and the
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
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from irfoundry.data.io import read_image
from irfoundry.data.layouts import Sample
from irfoundry.data.store import STORE_DTYPES, PerImageStore
from irfoundry.errors import ConfigError, DataError, IRFoundryError, ModelError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Version of the on-disk layout; part of the key."""

ALIGNMENT_POLICY = (
    "full image in [0,1] from read_image, no jitter; fm pads and crops internally; "
    "cell (a,b) of stride s covers pixels [a*s,(a+1)*s) x [b*s,(b+1)*s); cells outside the image grid are 0"
)
"""The alignment rule, as stored in the key (changing the rule invalidates old caches)."""


def image_sha1(image: np.ndarray) -> str:
    """sha1 of a decoded image: dtype, shape and bytes (what the model sees, not the file's encoding)."""
    h = hashlib.sha1()
    h.update(f"{image.dtype.str}{tuple(image.shape)}".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


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
    DataLoader workers. Reading is the store's: :meth:`lookup`, :meth:`full`, :meth:`inside`.
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
        if name not in STORE_DTYPES:
            raise ConfigError(f"FeatureCache dtype {dtype!r} is not one of {sorted(STORE_DTYPES)}.")
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
        self.root = Path(root).expanduser() if root is not None else None
        self.dtype = name
        self.device = device
        self.batch_size = int(batch_size)
        #: ``[(channels, stride), ...]`` one per level
        self.levels: list[tuple[int, int]] = [(int(d["channels"]), int(d["stride"])) for d in info]
        self.model_name = str(getattr(fm, "name", None) or type(fm).__name__)
        self._fm_key = str(fm.cache_key())
        self._store: PerImageStore | None = None
        self._built = False
        self.stats: dict = {}

    # ------------------------------------------------------------------ keys
    @property
    def store(self) -> PerImageStore:
        """The per-image store (images read once to hash them and learn their sizes)."""
        if self._store is None:
            t0 = time.perf_counter()
            sizes, extra = [], []
            for s in self.samples:
                img = read_image(s.image)
                sizes.append(img.shape)
                extra.append({"sha1": image_sha1(img)})
            listing = "".join(f"{i}\t{e['sha1']}\n" for i, e in zip(self.ids, extra))
            key = {
                "format": CACHE_FORMAT,
                "foundation": self._fm_key,
                "levels": [list(lv) for lv in self.levels],
                "policy": ALIGNMENT_POLICY,
                "dtype": self.dtype,
                "n_images": len(self.ids),
                "images_sha1": hashlib.sha1(listing.encode()).hexdigest(),
            }
            self._store = PerImageStore(self.ids, sizes, self.levels, dtype=self.dtype, root=self.root, key=key,
                                        name=self.model_name, extra=extra)
            self.stats["hash_s"] = time.perf_counter() - t0
        return self._store

    @property
    def alignment(self) -> int:
        """Least common multiple of the strides: crop origins must be multiples of it
        (``TrainTransform(snap=cache.alignment)``)."""
        return self.store.alignment

    def key(self) -> dict:
        """Everything the cached maps depend on (JSON-able); its sha256 names the disk directory."""
        return self.store.key

    def key_sha256(self) -> str:
        return self.store.key_sha256()

    @property
    def directory(self) -> Path | None:
        """``root/<model>-<sha256(key)[:16]>`` of a disk cache, ``None`` for a memory cache."""
        return self.store.directory

    @property
    def nbytes(self) -> int:
        return self.store.nbytes

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

    def _chunks(self, indices: Sequence[int]) -> list[list[int]]:
        """Images of equal size, in batches of ``batch_size``."""
        images = self.store.images
        groups: dict[tuple[int, int], list[int]] = {}
        for i in indices:
            groups.setdefault((images[i]["height"], images[i]["width"]), []).append(i)
        return [g[k : k + self.batch_size] for g in groups.values() for k in range(0, len(g), self.batch_size)]

    def _compute(self, chunk: Sequence[int]) -> list[np.ndarray]:
        images, device = self.store.images, self._fm_device()
        x = []
        for i in chunk:
            img = read_image(self.samples[i].image)
            if image_sha1(img) != images[i]["sha1"]:
                raise DataError(f"image {self.samples[i].image} changed while the feature cache was being built; rebuild.")
            x.append(torch.from_numpy(img))
        x = torch.stack(x)[:, None].to(device)
        with torch.inference_mode():
            maps = self.fm(x)
        if len(maps) != len(self.levels):
            raise ModelError(f"{self.model_name} returned {len(maps)} maps but its feature_info declares {len(self.levels)}.")
        h, w = x.shape[-2:]
        out = []
        for li, ((c, s), m) in enumerate(zip(self.levels, maps)):
            want = (len(chunk), c, -(-h // s), -(-w // s))
            if tuple(m.shape) != want:
                raise ModelError(
                    f"{self.model_name} map {li} has shape {tuple(m.shape)} for a {h}x{w} input; feature_info "
                    f"(channels {c}, stride {s}) promises {want}."
                )
            out.append(m.detach().float().cpu().numpy().astype(STORE_DTYPES[self.dtype]))
        return out

    def build(self, *, progress: bool = True) -> "FeatureCache":
        """Compute every image's maps, or reuse a valid disk cache of the same key. Returns ``self``.

        Sets ``self.stats``: ``{"reused": bool, "build_s": seconds (0 when reused), "hash_s": seconds spent
        hashing images, "nbytes": bytes of cached maps}``. Under DDP see :mod:`irfoundry.data.store`.
        """
        self.store.build(self._compute, chunks=self._chunks, progress=progress)
        self.stats.update(self.store.stats)
        self._built = True
        return self

    # ------------------------------------------------------------------ read (the store's)
    def _ready(self) -> PerImageStore:
        if not self._built and (self.root is None or self._store is None):
            raise IRFoundryError(
                f"FeatureCache({self.model_name}) has not been built: call cache.build() (in the main process, "
                "before creating the DataLoader)."
            )
        return self.store

    def index_of(self, item: int | str) -> int:
        """Position of a sample given its id (str) or position (int)."""
        return self.store.index_of(item)

    def full(self, item: int | str, *, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """The stored maps of the whole image: list of ``C_i x ceil(H / s_i) x ceil(W / s_i)``."""
        return self._ready().full(item, dtype=dtype)

    def lookup(self, item: int | str, geometry, *, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """The maps under one training crop, turned like the crop (:meth:`PerImageStore.lookup`)."""
        return self._ready().lookup(item, geometry, dtype=dtype)

    def inside(self, item: int | str, geometry) -> list[torch.Tensor]:
        """Which cells of :meth:`lookup`'s maps lie wholly inside the image (:meth:`PerImageStore.inside`)."""
        return self.store.inside(item, geometry)

    # ------------------------------------------------------------------ pickling (DataLoader workers)
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["fm"] = None  # workers only read; the model stays in the main process
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
