"""irfoundry.foundation.cache: cached crop features equal recomputed ones under the documented alignment,
keys invalidate, memmap caches work from DataLoader workers and DDP ranks, memory == disk.

Stand-in frozen models implement the foundation interface (``feature_info``, ``cache_key()``, ``fm(x)`` on
``N x 1 x H x W`` in [0, 1], internal bottom/right padding to the deepest stride, outputs cropped to
``ceil(H / s)``):

* ``LocalFM``: average pooling over aligned ``s x s`` blocks + 1x1 conv + tanh. Every cell depends only on
  its own pixels, so ``fm(crop)`` must equal the cached cells exactly wherever the crop holds image pixels.
* ``ConvFM``: strided 3x3 convolutions (receptive field wider than the stride), where only the
  "full image, then cut" reference holds.
"""

from __future__ import annotations

import json
import math
import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from irfoundry.data.dataset import IRSTDDataset
from irfoundry.data.io import read_image
from irfoundry.data.layouts import Sample
from irfoundry.data.transforms import CropGeometry, TrainTransform
from irfoundry.errors import DataError, IRFoundryError, ModelError
from irfoundry.data.collate import collate
from irfoundry.foundation.cache import FeatureCache

FP16 = dict(rtol=2e-3, atol=2e-3)


class _StandIn(nn.Module):
    def __init__(self, strides, channels, tag):
        super().__init__()
        self.strides, self.channels, self.tag = tuple(strides), tuple(channels), tag
        self.name = type(self).__name__
        self.feature_info = [{"channels": c, "stride": s, "layer": i} for i, (c, s) in enumerate(zip(channels, strides))]

    def cache_key(self) -> str:
        return f"{self.name}|strides={self.strides}|channels={self.channels}|weights={self.tag}"

    def _freeze(self):
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, x):
        h, w = x.shape[-2:]
        deep = max(self.strides)
        xp = F.pad(x, (0, (-w) % deep, 0, (-h) % deep))
        with torch.no_grad():
            maps = self.maps(xp)
        return [m[..., : -(-h // s), : -(-w // s)] for m, s in zip(maps, self.strides)]


class LocalFM(_StandIn):
    def __init__(self, strides=(2, 4, 8), channels=(3, 4, 5), tag="w0"):
        super().__init__(strides, channels, tag)
        g = torch.Generator().manual_seed(zlib.crc32(tag.encode()))
        self.convs = nn.ModuleList(nn.Conv2d(1, c, 1) for c in channels)
        for conv in self.convs:
            conv.weight.data = torch.randn(conv.weight.shape, generator=g) * 3
            conv.bias.data = torch.randn(conv.bias.shape, generator=g)
        self._freeze()

    def maps(self, x):
        return [torch.tanh(conv(F.avg_pool2d(x, s))) for conv, s in zip(self.convs, self.strides)]


class ConvFM(_StandIn):
    def __init__(self, tag="c0"):
        super().__init__((2, 4, 8), (4, 6, 8), tag)
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(1, 4, 3, 2, 1)
        self.c2 = nn.Conv2d(4, 6, 3, 2, 1)
        self.c3 = nn.Conv2d(6, 8, 3, 2, 1)
        self._freeze()

    def maps(self, x):
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a))
        return [a, b, torch.tanh(self.c3(b))]


SHAPES = [(30, 45), (20, 20), (64, 40), (33, 57), (17, 70)]  # smaller, larger and mixed w.r.t. a 32 crop


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


@pytest.fixture
def samples(tmp_path) -> list[Sample]:
    out = []
    for i, shape in enumerate(SHAPES):
        rng = np.random.default_rng(i)
        img = rng.integers(0, 256, size=shape)
        mask = np.zeros(shape, np.uint8)
        y, x = int(rng.integers(0, shape[0] - 3)), int(rng.integers(0, shape[1] - 3))
        mask[y : y + 2, x : x + 2] = 255
        img[mask > 0] = 250
        out.append(Sample(f"im{i}", _write(tmp_path / f"images/im{i}.png", img), _write(tmp_path / f"masks/im{i}.png", mask)))
    return out


def _cells_with_image(g: CropGeometry, shape, s: int, whole: bool = False) -> np.ndarray:
    """bool h x w: which cells of the (turned) crop window hold at least one image pixel (``whole``: only
    image pixels)."""
    ones = np.ones(shape, np.float32)
    h, w = shape
    widths = ((max(0, -g.top), max(0, g.top + g.height - h)), (max(0, -g.left), max(0, g.left + g.width - w)))
    padded = np.pad(ones, widths)
    y0, x0 = g.top + widths[0][0], g.left + widths[1][0]
    crop = g.apply_ops(padded[y0 : y0 + g.height, x0 : x0 + g.width])
    t = torch.from_numpy(np.ascontiguousarray(crop))[None, None]
    if whole:
        return -F.max_pool2d(-t, s, ceil_mode=True)[0, 0].numpy() > 0
    return F.max_pool2d(t, s, ceil_mode=True)[0, 0].numpy() > 0


def _full_then_cut(full: torch.Tensor, g: CropGeometry, s: int) -> torch.Tensor:
    """Independent reference: paint each full-image cell over its s x s pixels, cut the crop out of that
    pixel canvas exactly as the transform cuts the image (zero outside), turn it, read one pixel per cell."""
    canvas = full.repeat_interleave(s, -2).repeat_interleave(s, -1).numpy()
    gh, gw = canvas.shape[-2:]
    widths = ((0, 0), (max(0, -g.top), max(0, g.top + g.height - gh)), (max(0, -g.left), max(0, g.left + g.width - gw)))
    padded = np.pad(canvas, widths)
    y0, x0 = g.top + widths[1][0], g.left + widths[2][0]
    crop = g.apply_ops(padded[:, y0 : y0 + g.height, x0 : x0 + g.width])
    return torch.from_numpy(np.ascontiguousarray(crop[:, ::s, ::s]))


def test_cached_crops_equal_the_model_on_the_crop_for_a_local_model(samples):
    """End to end: dataset crops with recorded geometry -> the cached cells equal fm(the crop the host sees)
    within fp16 wherever the crop holds image pixels (borders, overhangs and flips included), and are zero
    in the padding."""
    fm = LocalFM()
    cache = FeatureCache(fm, samples).build(progress=False)
    assert cache.alignment == 8 and cache.stats["reused"] is False
    ds = IRSTDDataset(samples, transform=TrainTransform(crop_size=32, jitter=None, snap=cache.alignment), seed=0)
    n_pad = n_img = 0
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            g = CropGeometry.from_tensor(item["geometry"])
            got = cache.lookup(item["id"], item["geometry"])
            want = fm(item["image"][None])
            for lv, (c, s) in enumerate(cache.levels):
                assert got[lv].shape == want[lv].shape[1:] == (c, 32 // s, 32 // s)
                inside = torch.from_numpy(_cells_with_image(g, SHAPES[i], s))
                torch.testing.assert_close(got[lv][:, inside], want[lv][0][:, inside], **FP16)
                assert (got[lv][:, ~inside] == 0).all()
                whole = cache.inside(item["id"], g)[lv]  # cells wholly inside: a subset of those with image
                assert whole.shape == inside.shape and not (whole & ~inside).any()
                assert torch.equal(whole, torch.from_numpy(_cells_with_image(g, SHAPES[i], s, whole=True)))
                n_img += int(inside.sum())
                n_pad += int((~inside).sum())
    assert n_pad > 0 and n_img > 0  # both situations were exercised


@pytest.mark.parametrize("fm_cls", [LocalFM, ConvFM])
def test_lookup_equals_full_image_features_cut_and_turned(samples, fm_cls):
    """Any model: the lookup equals recomputing the FULL image's features and cutting them under the
    geometry (random crops, flips, quarter turns, transposes, negative and overhanging origins)."""
    fm = fm_cls()
    cache = FeatureCache(fm, samples, batch_size=2).build(progress=False)
    rng = np.random.default_rng(0)
    for i, sample in enumerate(samples):
        full = fm(torch.from_numpy(read_image(sample.image))[None, None])
        for _ in range(12):
            size = int(rng.choice([16, 32, 48]))
            g = CropGeometry(
                8 * int(rng.integers(-3, 8)), 8 * int(rng.integers(-3, 9)), size, size,
                bool(rng.integers(2)), bool(rng.integers(2)), int(rng.integers(4)), bool(rng.integers(2)),
            )
            got = cache.lookup(sample.id, g)
            for lv, (_, s) in enumerate(cache.levels):
                torch.testing.assert_close(got[lv], _full_then_cut(full[lv][0], g, s), **FP16)
        # crop sides that are not a multiple of the stride: exact without turns (ceil cells, last one overhangs)
        g = CropGeometry(8, -8, 28, 20)
        for lv, (_, s) in enumerate(cache.levels):
            ref = _full_then_cut(full[lv][0], g, s)
            assert cache.lookup(i, g)[lv].shape == (cache.levels[lv][0], math.ceil(28 / s), math.ceil(20 / s))
            torch.testing.assert_close(cache.lookup(i, g)[lv], ref, **FP16)


def test_cache_stores_fp16_full_maps(samples):
    fm = LocalFM()
    cache = FeatureCache(fm, samples).build(progress=False)
    full = cache.full("im3", dtype=torch.float16)
    ref = fm(torch.from_numpy(read_image(samples[3].image))[None, None])
    for lv, (c, s) in enumerate(cache.levels):
        assert full[lv].dtype == torch.float16 and full[lv].shape == (c, math.ceil(33 / s), math.ceil(57 / s))
        torch.testing.assert_close(full[lv].float(), ref[lv][0], **FP16)
    assert cache.nbytes == 2 * sum(c * math.ceil(h / s) * math.ceil(w / s) for h, w in SHAPES for c, s in cache.levels)


def test_memory_cache_equals_disk_cache(samples, tmp_path):
    mem = FeatureCache(LocalFM(), samples).build(progress=False)
    disk = FeatureCache(LocalFM(), samples, root=tmp_path / "cache").build(progress=False)
    assert (disk.directory / "manifest.json").is_file() and disk.directory.parent == tmp_path / "cache"
    g = CropGeometry(-8, 16, 32, 32, True, False, 1, True)
    for i in range(len(samples)):
        for a, b in zip(mem.full(i), disk.full(i)):
            assert torch.equal(a, b)
        for a, b in zip(mem.lookup(i, g), disk.lookup(i, g)):
            assert torch.equal(a, b)


def test_disk_cache_is_reused_and_invalidated_by_every_key(samples, tmp_path):
    root = tmp_path / "cache"
    first = FeatureCache(LocalFM(), samples, root=root).build(progress=False)
    d0 = first.directory
    again = FeatureCache(LocalFM(), samples, root=root).build(progress=False)
    assert again.stats["reused"] is True and again.directory == d0
    torch.testing.assert_close(again.full(0), first.full(0), rtol=0, atol=0)

    # layers (another set of maps) and weights (another weights hash in cache_key) -> new directories, rebuilt
    layers = FeatureCache(LocalFM(strides=(4, 8), channels=(4, 5)), samples, root=root).build(progress=False)
    weights = FeatureCache(LocalFM(tag="w1"), samples, root=root).build(progress=False)
    for c in (layers, weights):
        assert c.stats["reused"] is False and c.directory != d0
    assert not torch.equal(weights.full(0)[0], first.full(0)[0])
    # storage dtype is part of the key too
    assert FeatureCache(LocalFM(), samples, root=root, dtype="float32").directory != d0

    # image content: one pixel of one image changes -> new key, rebuilt, and the new features are served
    img = np.array(Image.open(samples[2].image))
    img[5, 5] = (int(img[5, 5]) + 128) % 256
    Image.fromarray(img).save(samples[2].image)
    changed = FeatureCache(LocalFM(), samples, root=root).build(progress=False)
    assert changed.stats["reused"] is False and changed.directory != d0
    ref = LocalFM()(torch.from_numpy(read_image(samples[2].image))[None, None])
    torch.testing.assert_close(changed.full(2)[0], ref[0][0], **FP16)
    assert not torch.equal(changed.full(2)[0], first.full(2)[0])


def test_stale_or_broken_manifest_is_rebuilt_never_reused(samples, tmp_path):
    root = tmp_path / "cache"
    good = FeatureCache(LocalFM(), samples, root=root).build(progress=False)
    d = good.directory
    manifest = json.loads((d / "manifest.json").read_text())

    def rebuilt() -> bool:
        c = FeatureCache(LocalFM(), samples, root=root).build(progress=False)
        assert c.directory == d
        torch.testing.assert_close(c.full(1), good.full(1), rtol=0, atol=0)
        return c.stats["reused"] is False

    tampered = json.loads(json.dumps(manifest))
    tampered["key"]["foundation"] = "something else"
    (d / "manifest.json").write_text(json.dumps(tampered))
    assert rebuilt()
    tampered = json.loads(json.dumps(manifest))
    tampered["images"][0]["sha1"] = "0" * 40
    (d / "manifest.json").write_text(json.dumps(tampered))
    assert rebuilt()
    (d / "manifest.json").write_text("{not json")
    assert rebuilt()
    (d / "manifest.json").unlink()  # interrupted build: level files without a manifest
    assert rebuilt()
    np.lib.format.open_memmap(d / "level1.npy", mode="w+", dtype=np.float16, shape=(7,)).flush()  # truncated level
    assert rebuilt()
    assert FeatureCache(LocalFM(), samples, root=root).build(progress=False).stats["reused"] is True


def test_crop_store_batches_from_two_workers(samples, tmp_path):
    """The disk cache pickles without arrays or model (a clone re-opens the memory maps and serves the same
    cells), and batches built by 2 DataLoader workers carry exactly the main-process look-ups."""
    cache = FeatureCache(LocalFM(), samples, root=tmp_path / "cache").build(progress=False)
    blob = pickle.dumps(cache)
    assert len(blob) < 20_000  # ids, sizes and offsets only
    clone = pickle.loads(blob)
    assert clone.fm is None and clone.store._arrays is None
    g = CropGeometry(-8, 8, 32, 32, True, True, 1, False)
    for a, b in zip(clone.lookup("im1", g), cache.lookup("im1", g)):
        assert torch.equal(a, b)
    ds = IRSTDDataset(samples, transform=TrainTransform(crop_size=32, snap=cache.alignment), seed=1,
                      crop_stores={"foundation": cache})
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    n = 0
    for batch in loader:
        assert batch["image"].shape[1:] == (1, 32, 32) and batch["geometry"].shape[1] == 8
        for lv, (c, s) in enumerate(cache.levels):
            assert batch["foundation"][lv].dtype == torch.float32
            assert batch["foundation"][lv].shape[1:] == (c, 32 // s, 32 // s)
        for j, sid in enumerate(batch["id"]):
            ref = cache.lookup(sid, batch["geometry"][j])
            for lv in range(len(cache.levels)):
                assert torch.equal(batch["foundation"][lv][j], ref[lv])
            n += 1
    assert n == len(samples)


def _ddp_build(rank: int, world: int, store: str, root: str, samples) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        cache = FeatureCache(LocalFM(), samples, root=root).build(progress=False)
        assert cache.stats["reused"] is False
        cache.lookup(0, CropGeometry(0, 0, 16, 16))
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_ranks_build_shards_of_one_disk_cache(samples, tmp_path):
    root = tmp_path / "cache"
    torch.multiprocessing.spawn(_ddp_build, args=(2, str(tmp_path / "store"), str(root), samples), nprocs=2)
    reread = FeatureCache(LocalFM(), samples, root=root).build(progress=False)
    assert reread.stats["reused"] is True
    mem = FeatureCache(LocalFM(), samples).build(progress=False)
    for i in range(len(samples)):  # both shards (rank 0: even, rank 1: odd images) were written
        for a, b in zip(mem.full(i), reread.full(i)):
            assert torch.equal(a, b)


def test_errors_name_the_problem(samples, tmp_path):
    cache = FeatureCache(LocalFM(), samples, root=tmp_path / "c")
    with pytest.raises(IRFoundryError, match="build"):
        cache.lookup(0, CropGeometry(0, 0, 16, 16))
    cache.build(progress=False)
    with pytest.raises(DataError, match="snap=8"):
        cache.lookup(0, CropGeometry(4, 0, 16, 16))
    with pytest.raises(DataError, match="'nope'"):
        cache.lookup("nope", CropGeometry(0, 0, 16, 16))
    # a dataset without a transform serves the whole image's cells (the identity crop)
    whole = IRSTDDataset(samples, crop_stores={"foundation": cache})[0]
    for a, b in zip(whole["foundation"], cache.full(samples[0].id)):
        assert torch.equal(a, b)
    with pytest.raises(DataError, match="unique"):
        FeatureCache(LocalFM(), samples + samples[:1])
    with pytest.raises(ModelError, match="feature_info"):
        FeatureCache(nn.Conv2d(1, 1, 1), samples)

    class Liar(LocalFM):  # declares a stride its maps do not have
        def forward(self, x):
            return [m[..., :-1, :] for m in super().forward(x)]

    with pytest.raises(ModelError, match="promises"):
        FeatureCache(Liar(), samples).build(progress=False)


def test_real_efficientnet_lite0_cache_matches_full_image_features(samples):
    """The bundled-architecture CNN from irfoundry.foundation (random weights): cached cells equal the
    full image's features cut and turned, within fp16; crops come from the dataset with snap=32."""
    foundation = pytest.importorskip("irfoundry.foundation", reason="irfoundry.foundation backbones unavailable")
    pytest.importorskip("timm", reason="timm (the foundation extra) is not installed")
    fm = foundation.create_foundation("efficientnet_lite0", weights="random")
    cache = FeatureCache(fm, samples[:3]).build(progress=False)
    assert cache.alignment == 32
    ds = IRSTDDataset(samples[:3], transform=TrainTransform(crop_size=64, snap=32), seed=0)
    for i in range(3):
        item = ds[i]
        g = CropGeometry.from_tensor(item["geometry"])
        full = fm(torch.from_numpy(read_image(samples[i].image))[None, None])
        got = cache.lookup(item["id"], g)
        for lv, (c, s) in enumerate(cache.levels):
            ref = _full_then_cut(full[lv][0], g, s)
            assert got[lv].shape == (c, 64 // s, 64 // s)
            scale = float(ref.abs().max()) + 1e-6
            torch.testing.assert_close(got[lv], ref, rtol=2e-3, atol=2e-3 * scale)
