"""Tiled inference: frames larger than a tile, cut into overlapping tiles, run in batches, blended back.

The frame is normalised and padded to the network's input multiple exactly as a whole-frame pass pads it
(:func:`irfoundry.engine.inference.padded_canvas`); tiles of ``tile x tile`` pixels are cut from that
canvas at starts that are multiples of the input multiple (so every tile sees the same pooling grid as the
whole frame), as few as cover the canvas with the overlap, spread evenly, the last ending on the canvas
edge. The tiles go through the one
inference path (:meth:`~irfoundry.engine.inference.Predictor.batch_probabilities`) ``batch`` at a time.

Blending (``blend``):

* ``crop`` (default): every pixel comes from the one tile it lies deepest inside: neighbouring tiles meet
  half way through their overlap, so every kept pixel is at least ``overlap / 2`` from any cut tile edge.
  For a network without global context (no global pooling or attention) whose receptive field reaches less
  than ``overlap / 2`` beyond a pixel, the result equals a whole-frame pass up to float rounding; a deep
  host's theoretical receptive field is larger, but its effective one is small, so the difference is small
  and measured (``irfoundry bench tiling``). Hosts with global pooling (ACM, DNANet, ...) see per-tile
  statistics: the difference is stated there.
* ``linear``: overlaps are blended with weights ramping linearly across the overlap (a tile's frame edges
  keep full weight): no seam even where tiles disagree, at the price of exactness.

A frame that fits one tile (canvas <= tile on both sides) is one whole-frame pass, exactly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from irfoundry.engine.inference import Predictor, padded_canvas
from irfoundry.errors import ConfigError

__all__ = ["BLENDS", "TileSettings", "tile_grid", "tile_starts", "tiled_probabilities"]

BLENDS = ("crop", "linear")


class TileSettings:
    """Tile size, overlap and blending, checked against a predictor's input multiple.

    Args:
        tile: tile side in pixels (rounded down to the input multiple).
        overlap: pixels shared by neighbouring tiles (rounded up to the input multiple; < tile).
        blend: :data:`BLENDS`.
        batch: tiles per forward pass.
    """

    def __init__(self, tile: int = 512, overlap: int = 64, blend: str = "crop", batch: int = 8) -> None:
        if blend not in BLENDS:
            raise ConfigError(f"tile blend {blend!r} is not one of {', '.join(BLENDS)}")
        if tile < 1 or overlap < 0 or batch < 1:
            raise ConfigError(f"tiling needs tile >= 1, overlap >= 0, batch >= 1 (got {tile}, {overlap}, {batch})")
        self.tile, self.overlap, self.blend, self.batch = int(tile), int(overlap), blend, int(batch)

    def aligned(self, multiple: int) -> tuple[int, int]:
        """``(tile, overlap)`` on the input-multiple grid; error when the tile cannot hold the overlap."""
        tile = self.tile // multiple * multiple
        overlap = -(-self.overlap // multiple) * multiple
        if tile < multiple or overlap >= tile:
            raise ConfigError(f"tile {self.tile} with overlap {self.overlap} does not fit the network's input "
                              f"multiple {multiple}: the tile must be at least {multiple} and larger than the "
                              f"overlap (both are aligned to {multiple})")
        return tile, overlap

    def __repr__(self) -> str:
        return f"TileSettings(tile={self.tile}, overlap={self.overlap}, blend={self.blend!r}, batch={self.batch})"


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Starts of the fewest tiles of ``tile`` covering ``[0, length)`` with at least ``overlap`` pixels shared by
    neighbours, spread evenly (so the overlaps are as equal as the grid allows), each a multiple of
    ``multiple``; the first starts at 0 and the last ends at ``length``. ``length``, ``tile`` and ``overlap``
    must lie on the ``multiple`` grid."""
    if length <= tile:
        return [0]
    n = -(-(length - overlap) // (tile - overlap))
    return [(i * (length - tile) // (n - 1)) // multiple * multiple for i in range(n)]


def _cores(starts: Sequence[int], tile: int, length: int) -> list[tuple[int, int]]:
    """``(begin, end)`` of the pixels each tile keeps in ``crop`` blending: neighbours meet half way."""
    bounds = [0] + [(a + tile + b) // 2 for a, b in zip(starts[:-1], starts[1:])] + [length]
    return list(zip(bounds[:-1], bounds[1:]))


def _ramp(start: int, tile: int, length: int, overlap: int) -> np.ndarray:
    """1-D ``linear`` weights of a tile at ``start``: ramps over ``overlap`` on sides that are not frame edges."""
    x = np.arange(tile, dtype=np.float64) + 0.5
    w = np.ones(tile)
    if overlap:
        if start > 0:
            w = np.minimum(w, x / overlap)
        if start + tile < length:
            w = np.minimum(w, (tile - x) / overlap)
    return w


def tile_grid(predictor: Predictor, image: np.ndarray, settings: TileSettings) -> tuple[torch.Tensor, list[int],
                                                                                    list[int], tuple[int, int]]:
    """``(canvas, row starts, column starts, (tile height, tile width))`` of one raw image (``float32 h x w``):
    the normalised image padded as a whole-frame pass pads it (``1 x H x W``) and where its tiles start."""
    h, w = image.shape[-2:]
    multiple = predictor.multiple
    H, W, _, _ = padded_canvas(h, w, multiple, predictor.padding)
    tile, overlap = settings.aligned(multiple)
    canvas = torch.zeros(1, H, W)
    canvas[:, :h, :w] = predictor.normalise(image)
    th, tw = min(tile, H), min(tile, W)
    return canvas, tile_starts(H, th, overlap, multiple), tile_starts(W, tw, overlap, multiple), (th, tw)


def tiled_probabilities(predictor: Predictor, image: np.ndarray, settings: TileSettings) -> np.ndarray:
    """Probability map ``float32 h x w`` of one raw image (``float32 h x w`` in [0, 1]) by tiles."""
    h, w = image.shape[-2:]
    canvas, ys, xs, (th, tw) = tile_grid(predictor, image, settings)
    if ys == xs == [0]:  # the canvas fits one tile: one whole-frame pass
        return predictor.predict(image)
    H, W = canvas.shape[-2:]
    overlap = settings.aligned(predictor.multiple)[1]
    boxes = [(y, x) for y in ys for x in xs]
    out = np.zeros((H, W), dtype=np.float64 if settings.blend == "linear" else np.float32)
    weight = np.zeros((H, W)) if settings.blend == "linear" else None
    core_y, core_x = dict(zip(ys, _cores(ys, th, H))), dict(zip(xs, _cores(xs, tw, W)))
    for i in range(0, len(boxes), settings.batch):
        chunk = boxes[i : i + settings.batch]
        tiles = torch.stack([canvas[:, y : y + th, x : x + tw] for y, x in chunk])
        probs = predictor.batch_probabilities({"image": tiles, "box": [(0, 0, th, tw)] * len(chunk)})
        for (y, x), p in zip(chunk, probs):
            p = p.numpy()
            if weight is None:
                (y0, y1), (x0, x1) = core_y[y], core_x[x]
                out[y0:y1, x0:x1] = p[y0 - y : y1 - y, x0 - x : x1 - x]
            else:
                wt = np.outer(_ramp(y, th, H, overlap), _ramp(x, tw, W, overlap))
                out[y : y + th, x : x + tw] += wt * p
                weight[y : y + th, x : x + tw] += wt
    if weight is not None:
        out = out / weight
    return np.ascontiguousarray(out[:h, :w], dtype=np.float32)
