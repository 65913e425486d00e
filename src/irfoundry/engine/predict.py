"""Prediction on images, folders and globs with an exported / trained checkpoint.

For every input image ``ID`` it writes into ``out``:

* ``ID_prob.png``: probability map, 8-bit, value = round(255 p);
* ``ID_mask.png``: binary mask (0/255) at ``threshold`` (``p > threshold``);
* ``ID_overlay.png``: the grey image with the mask in red and target boxes in yellow;
* and one ``targets.json``: per image, each detected target's centroid ``(y, x)``, area, bounding box
  ``(y0, x0, y1, x1)`` (inclusive-exclusive) and peak score, 8-connected components.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from irfoundry.data.io import read_image
from irfoundry.engine.inference import Predictor
from irfoundry.errors import DataError
from irfoundry.jsonio import write_json

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> image paths; error when none."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            paths.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item)) if Path(m).suffix.lower() in IMAGE_SUFFIXES)
            if not matches:
                raise DataError(f"input {item} is neither an image, a folder nor a glob matching images")
            paths += matches
    if not paths:
        raise DataError(f"no images found in {', '.join(map(str, inputs))} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return paths


def describe_targets(prob: np.ndarray, mask: np.ndarray) -> list[dict]:
    """Connected components (8-connectivity) of ``mask`` (H x W bool) with their statistics on ``prob``."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    targets = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[sl] == i
        ys, xs = np.nonzero(region)
        targets.append(
            {
                "centroid": [float(ys.mean() + sl[0].start), float(xs.mean() + sl[1].start)],
                "area": int(region.sum()),
                "bbox": [sl[0].start, sl[1].start, sl[0].stop, sl[1].stop],
                "peak_score": float(prob[sl][region].max()),
            }
        )
    return targets


def overlay(image: np.ndarray, mask: np.ndarray, targets: Iterable[dict]) -> np.ndarray:
    """RGB uint8: grey image, mask blended in red, bounding boxes (1 px margin) in yellow."""
    grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1).astype(np.float32)
    rgb[mask] = 0.5 * rgb[mask] + 0.5 * np.array([255, 0, 0])
    h, w = mask.shape
    for t in targets:
        y0, x0, y1, x1 = t["bbox"]
        y0, x0, y1, x1 = max(y0 - 1, 0), max(x0 - 1, 0), min(y1, h - 1), min(x1, w - 1)
        rgb[y0, x0 : x1 + 1] = rgb[y1, x0 : x1 + 1] = (255, 255, 0)
        rgb[y0 : y1 + 1, x0] = rgb[y0 : y1 + 1, x1] = (255, 255, 0)
    return rgb.astype(np.uint8)


def predict(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    threshold: float = 0.5,
    device: str = "cpu",
    norm: str | None = None,
) -> dict:
    """Run a checkpoint on images; write maps, masks, overlays and ``targets.json`` into ``out``.

    Returns ``{"out": str, "images": int, "targets": {id: [...]}}``.
    """
    predictor, _ = Predictor.from_checkpoint(checkpoint, device=device, norm=norm)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    for path in expand_inputs(inputs):
        image = read_image(path)
        prob = predictor.predict(image).astype(np.float64)
        size = prob.shape
        mask = prob > threshold
        targets = describe_targets(prob, mask)
        stem = path.stem
        if stem in results:
            stem = f"{path.parent.name}_{stem}"
        Image.fromarray(np.round(prob * 255).astype(np.uint8)).save(out / f"{stem}_prob.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(out / f"{stem}_mask.png")
        Image.fromarray(overlay(image, mask, targets)).save(out / f"{stem}_overlay.png")
        results[stem] = {"source": str(path), "size": list(size), "targets": targets}
    doc = {"checkpoint": str(checkpoint), "threshold": threshold, "images": results}
    write_json(doc, out / "targets.json")
    return {"out": str(out), "images": len(results), "targets": results}
