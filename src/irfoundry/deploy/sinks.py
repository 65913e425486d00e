"""What prediction writes per frame: a JSON Lines record, and on request probability / mask / overlay PNGs
and an overlay video.

``targets.jsonl`` holds one line per frame, flushed as it is written (a consumer can follow it live, and an
interrupted run keeps every line so far): ``{"frame", "source", "position", "name", "size", "targets"}``,
each target ``{"centroid": [y, x], "area", "bbox": [y0, x0, y1, x1] (inclusive-exclusive), "peak_score"}``
(8-connected components of ``p > threshold``); a frame that could not be read is a line ``{"frame",
"source", "position", "error"}``. Image files are ``NAME_prob.png`` (8-bit, value = round(255 p)),
``NAME_mask.png`` (0 / 255) and ``NAME_overlay.png`` (grey image, mask in red, boxes in yellow).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from irfoundry.deploy.frames import Frame
from irfoundry.errors import ConfigError

__all__ = ["IMAGE_OUTPUTS", "ResultWriter", "describe_targets", "overlay"]

#: per-frame image files ``--save`` can ask for
IMAGE_OUTPUTS = ("prob", "mask", "overlay")


def describe_targets(prob: np.ndarray, mask: np.ndarray) -> list[dict]:
    """Connected components (8-connectivity) of ``mask`` (H x W bool) with their statistics on ``prob``."""
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
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


class _OverlayVideo:
    """Overlay frames -> one H.264 video (PyAV through imageio); frames padded to even sides (yuv420p)."""

    def __init__(self, path: Path, fps: float) -> None:
        try:
            import imageio.v3 as iio
            import av  # noqa: F401
        except ImportError as exc:
            raise ConfigError(f"--overlay-video needs the video extra ({exc}): pip install 'irfoundry[video]'") from None
        self.path, self.fps, self.size = path, fps, None
        self.file = iio.imopen(str(path), "w", plugin="pyav")
        self.file.init_video_stream("libx264", fps=fps)

    def write(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if self.size is None:
            self.size = (h, w)
        if (h, w) != self.size:
            raise ConfigError(f"--overlay-video needs frames of one size: {self.size[1]}x{self.size[0]} first, "
                              f"then {w}x{h} (write overlay PNGs with --save overlay instead)")
        self.file.write_frame(np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0))))

    def close(self) -> None:
        self.file.close()


class ResultWriter:
    """Writes the records and files of each predicted frame into ``out``.

    Args:
        out: output folder (created).
        threshold: probability threshold of the masks and targets.
        save: per-frame image files (:data:`IMAGE_OUTPUTS`).
        overlay_video: file name (inside ``out`` unless absolute) of an overlay video, or ``None``.
        fps: the overlay video's frame rate.
    """

    def __init__(self, out: str | Path, threshold: float, save: Sequence[str] = IMAGE_OUTPUTS,
                 overlay_video: str | Path | None = None, fps: float = 25.0) -> None:
        unknown = [s for s in save if s not in IMAGE_OUTPUTS]
        if unknown:
            raise ConfigError(f"--save {','.join(unknown)}: unknown output; choose from {', '.join(IMAGE_OUTPUTS)}")
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.threshold, self.save = float(threshold), tuple(save)
        self.video = _OverlayVideo(self.out / overlay_video, fps) if overlay_video else None
        self.lines = (self.out / "targets.jsonl").open("w")
        self.names: set[str] = set()
        self.n_targets = 0

    def _unique(self, frame: Frame) -> str:
        name = frame.name
        if name in self.names and frame.position is None:
            name = f"{Path(frame.source).parent.name}_{name}"
        k = 1
        base = name
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def write(self, frame: Frame, prob: np.ndarray) -> dict:
        """Record ``frame`` with its probability map ``float32 H x W``; returns the JSON record."""
        mask = prob > self.threshold
        targets = describe_targets(prob, mask)
        name = self._unique(frame) if self.save else frame.name
        record = {"frame": frame.index, "source": frame.source, "position": frame.position, "name": name,
                  "size": list(prob.shape), "targets": targets}
        self._line(record)
        self.n_targets += len(targets)
        if "prob" in self.save:
            Image.fromarray(np.round(prob.astype(np.float64) * 255).astype(np.uint8)).save(self.out / f"{name}_prob.png")
        if "mask" in self.save:
            Image.fromarray((mask * 255).astype(np.uint8)).save(self.out / f"{name}_mask.png")
        if "overlay" in self.save or self.video is not None:
            rgb = overlay(frame.image, mask, targets)
            if "overlay" in self.save:
                Image.fromarray(rgb).save(self.out / f"{name}_overlay.png")
            if self.video is not None:
                self.video.write(rgb)
        return record

    def skipped(self, frame: Frame) -> dict:
        """Record a frame that could not be read."""
        record = {"frame": frame.index, "source": frame.source, "position": frame.position, "error": frame.error}
        self._line(record)
        return record

    def _line(self, record: dict) -> None:
        self.lines.write(json.dumps(record) + "\n")
        self.lines.flush()

    def close(self) -> None:
        self.lines.close()
        if self.video is not None:
            self.video.close()
