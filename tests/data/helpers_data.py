"""Helpers for tests/data: tiny datasets written in each layout's exact file names (imported by the tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REAL_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 H x W (grey) or H x W x 3 (RGB) array as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def tiny_sample(seed: int, shape=(20, 24)) -> tuple[np.ndarray, np.ndarray]:
    """A small grey image with one bright 3x3 target and its 0/255 mask."""
    rng = np.random.default_rng(seed)
    img = rng.integers(10, 60, size=shape).astype(np.uint8)
    mask = np.zeros(shape, dtype=np.uint8)
    y, x = int(rng.integers(2, shape[0] - 4)), int(rng.integers(2, shape[1] - 4))
    img[y : y + 3, x : x + 3] = 240
    mask[y : y + 3, x : x + 3] = 255
    return img, mask


def write_split(path: Path, ids, *, crlf: bool = False, trailing_newline: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sep = "\r\n" if crlf else "\n"
    text = sep.join(ids) + (sep if trailing_newline and ids else "")
    path.write_bytes(text.encode())
    return path


def make_dataset(root: Path, layout: str, n: int = 6) -> Path:
    """Write a tiny dataset of ``n`` samples in one layout; returns ``root``.

    sirst_v1: images/Misc_i.png, masks/Misc_i_pixels0.png, idx_427 + idx_320 splits (train/val/test).
    dnanet:   images/00000i.png, masks/00000i.png, 50_50/{train,test}.txt and 70_30/{train,test}.txt.
    basicirstd: images/, masks/, img_idx/{train,test}_TINY.txt (CRLF, no trailing newline).
    sirst_v2: mixed/, annotations/masks/<id>_pixels0.png, splits/{trainval_full,test_full}.txt.
    folder:   images/, masks/ only.
    """
    if layout == "sirst_v1":
        ids = [f"Misc_{i}" for i in range(1, n + 1)]
        img_dir, mask_dir, suffix = root / "images", root / "masks", "_pixels0"
    elif layout == "sirst_v2":
        ids = [f"Misc_{i}" for i in range(1, n + 1)]
        img_dir, mask_dir, suffix = root / "mixed", root / "annotations" / "masks", "_pixels0"
    else:
        ids = [f"{i:06d}" for i in range(1, n + 1)]
        img_dir, mask_dir, suffix = root / "images", root / "masks", ""
    for k, sid in enumerate(ids):
        img, mask = tiny_sample(k)
        write_png(img_dir / f"{sid}.png", img)
        write_png(mask_dir / f"{sid}{suffix}.png", mask)
    half = n // 2
    if layout == "sirst_v1":
        for d in ("idx_427", "idx_320"):
            write_split(root / d / "train.txt", ids[: half - 1])
            write_split(root / d / "val.txt", ids[half - 1 : half])
            write_split(root / d / "test.txt", ids[half:] if d == "idx_427" else ids[half + 1 :])
            write_split(root / d / "trainval.txt", ids[:half])
    elif layout == "dnanet":
        write_split(root / "50_50" / "train.txt", ids[:half])
        write_split(root / "50_50" / "test.txt", ids[half:])
        write_split(root / "70_30" / "train.txt", ids[: half + 1])
        write_split(root / "70_30" / "test.txt", ids[half + 1 :])
    elif layout == "basicirstd":
        write_split(root / "img_idx" / "train_TINY.txt", ids[:half], crlf=True, trailing_newline=False)
        write_split(root / "img_idx" / "test_TINY.txt", ids[half:], crlf=True, trailing_newline=False)
    elif layout == "sirst_v2":
        write_split(root / "splits" / "trainval_full.txt", ids[:half])
        write_split(root / "splits" / "test_full.txt", ids[half:])
    return root
