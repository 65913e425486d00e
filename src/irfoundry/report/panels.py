"""Gallery panels of the HTML report: ``[image | overlay]`` with prediction, GT ring, missed targets and
false alarms (:func:`render_panel`; the colours and sizes the report's legend names)."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from irfoundry.metrics.targets import TargetMatch

__all__ = ["PANEL_SIDE", "render_panel"]

#: longest side of one panel in the gallery image (pixels); smaller images are enlarged by an integer factor
PANEL_SIDE = 256

_PRED_RGB = np.array([0.0, 220.0, 255.0])
_GT_RGB = (0, 255, 0)
_MISS_RGB = (255, 40, 40)
_FA_RGB = (255, 230, 0)


def _stretch(image: np.ndarray) -> np.ndarray:
    """Raw intensities -> [0, 1] with the 0.5 / 99.9 percentiles as black / white (NaN -> 0)."""
    a = np.asarray(image, dtype=np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros(a.shape)
    lo, hi = np.percentile(finite, [0.5, 99.9])
    if not hi > lo:
        lo, hi = float(finite.min()), float(finite.max())
    if not hi > lo:
        return np.zeros(a.shape)
    return np.clip(np.nan_to_num((a - lo) / (hi - lo), nan=0.0), 0.0, 1.0)


def _resample(a: np.ndarray, out_h: int, out_w: int, reduce: str) -> np.ndarray:
    """Nearest-neighbour enlargement, or block ``"mean"`` / ``"max"`` reduction (so 1-pixel targets
    survive in masks) to ``out_h x out_w``."""
    h, w = a.shape
    if out_h >= h and out_w >= w:
        return a[(np.arange(out_h) * h) // out_h][:, (np.arange(out_w) * w) // out_w]
    rs = (np.arange(out_h) * h) // out_h
    cs = (np.arange(out_w) * w) // out_w
    if reduce == "max":
        return np.maximum.reduceat(np.maximum.reduceat(a, rs, axis=0), cs, axis=1)
    s = np.add.reduceat(np.add.reduceat(a.astype(np.float64), rs, axis=0), cs, axis=1)
    nr = np.diff(np.append(rs, h))
    nc = np.diff(np.append(cs, w))
    return s / (nr[:, None] * nc[None, :])


def display_size(h: int, w: int) -> tuple[int, int, float]:
    side = max(h, w)
    scale = float(max(1, PANEL_SIDE // side)) if side <= PANEL_SIDE else PANEL_SIDE / side
    return max(1, round(h * scale)), max(1, round(w * scale)), scale


def render_panel(image: np.ndarray, gt: np.ndarray, prob: np.ndarray, match: TargetMatch) -> Image.Image:
    """RGB panel ``[image | overlay]`` (see the module docstring), at most :data:`PANEL_SIDE` pixels high
    and two panels wide. ``image``, ``gt``, ``prob``: ``H x W``; ``match``: their :func:`match_targets`."""
    h, w = gt.shape
    oh, ow, _ = display_size(h, w)
    sy, sx = oh / h, ow / w
    grey = _resample(_stretch(image), oh, ow, "mean") * 255.0
    fg = _resample(np.asarray(prob, dtype=np.float64) > match.threshold, oh, ow, "max")  # float64, as the metrics
    gt_d = _resample(gt, oh, ow, "max")
    outline = ndimage.binary_dilation(gt_d) & ~gt_d  # a ring just outside the GT: the prediction stays visible
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[fg] = 0.45 * rgb[fg] + 0.55 * _PRED_RGB
    rgb[outline] = _GT_RGB
    right = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(right)
    for g in match.gt:
        if g.hit:
            continue
        y0, x0, y1, x1 = g.bbox
        cy, cx = (y0 + y1) / 2 * sy, (x0 + x1) / 2 * sx
        r = max(0.5 * math.hypot((y1 - y0) * sy, (x1 - x0) * sx) + 4.0, 7.0)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=_MISS_RGB, width=2)
    for p in match.pred:
        if not p.false_alarm:
            continue
        y0, x0, y1, x1 = p.bbox
        draw.rectangle((x0 * sx - 3, y0 * sy - 3, x1 * sx + 2, y1 * sy + 2), outline=_FA_RGB, width=2)
    gap = 4
    panel = Image.new("RGB", (2 * ow + gap, oh), (255, 255, 255))
    panel.paste(Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB"), (0, 0))
    panel.paste(right, (ow + gap, 0))
    return panel


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- stats
