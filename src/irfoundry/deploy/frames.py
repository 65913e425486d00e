"""Frame sources for prediction: image files, folders, globs, video files and a raw frame stream on stdin.

:func:`expand_inputs` resolves the command line (before anything is written: an input that names nothing is
an error); :func:`iter_frames` then yields one :class:`Frame` at a time, so memory does not grow with the
length of the input. A frame that cannot be read is yielded with ``error`` set (file, frame index, reason)
instead of raising: the caller reports and skips it, or stops (``--strict``).

* images: every format of :func:`irfoundry.data.io.read_image` (8 / 16-bit grey or RGB, converted to grey
  as the datasets are);
* video (:data:`VIDEO_SUFFIXES`): decoded with PyAV through imageio (``pip install 'irfoundry[video]'``),
  RGB frames converted to grey with Pillow's ``convert("L")`` rule, as RGB images are;
* ``-``: raw frames on stdin, ``width x height`` pixels of ``gray`` (8-bit) or ``gray16le`` (16-bit little
  endian) each, back to back, e.g. ``ffmpeg -i cam.mp4 -f rawvideo -pix_fmt gray - | irfoundry predict ...
  - --frame-size 640x512``. A truncated last frame is reported and skipped.
"""

from __future__ import annotations

import glob
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np
from PIL import Image

from irfoundry.data.io import read_image
from irfoundry.errors import ConfigError, DataError, IRFoundryError

__all__ = ["Frame", "IMAGE_SUFFIXES", "STDIN", "VIDEO_SUFFIXES", "expand_inputs", "iter_frames", "parse_frame_size"]

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")
#: the input naming the raw frame stream on stdin
STDIN = "-"
#: stdin pixel formats -> (numpy dtype, full-scale value)
PIXEL_FORMATS = {"gray": (np.uint8, 255.0), "gray16le": (np.dtype("<u2"), 65535.0)}


@dataclass
class Frame:
    """One frame: ``index`` counts every frame of the run from 0; ``source`` is the file (``-``: stdin) and
    ``position`` the frame's index inside it (``None`` for a still image); ``image`` is ``float32 H x W`` in
    [0, 1], or ``None`` with ``error`` saying why the frame could not be read."""

    index: int
    source: str
    position: int | None
    image: np.ndarray | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        """File stem for outputs: the image's stem, or ``STEM_000123`` for a video / stream frame."""
        stem = "stdin" if self.source == STDIN else Path(self.source).stem
        return stem if self.position is None else f"{stem}_{self.position:06d}"


def _is_media(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES


def expand_inputs(inputs: Sequence[str | Path]) -> list[str]:
    """Files, folders (their images and videos, sorted), glob patterns and ``-`` -> the list of sources."""
    sources: list[str] = []
    for item in inputs:
        if str(item) == STDIN:
            sources.append(STDIN)
            continue
        p = Path(item)
        if p.is_dir():
            sources += [str(q) for q in sorted(p.iterdir()) if q.is_file() and _is_media(q)]
        elif p.is_file():
            sources.append(str(p))
        else:
            matches = sorted(m for m in glob.glob(str(item)) if _is_media(Path(m)))
            if not matches:
                raise DataError(f"input {item} is neither an image, a video, a folder, '-' (stdin) nor a glob "
                                "matching images")
            sources += matches
    if not sources:
        raise DataError(f"no images or videos found in {', '.join(map(str, inputs))} (looked for "
                        f"{', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})")
    if sources.count(STDIN) > 1:
        raise ConfigError("'-' (stdin) can be given once")
    return sources


def parse_frame_size(text: str | None) -> tuple[int, int] | None:
    """``"WIDTHxHEIGHT"`` -> ``(height, width)``."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"--frame-size {text!r} is not WIDTHxHEIGHT, e.g. 640x512") from None
    if w < 1 or h < 1:
        raise ConfigError(f"--frame-size {text!r} must be positive")
    return h, w


def _video_frames(path: str) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """``(position, grey image, None)`` per decoded frame, or ``(position, None, reason)`` once, on failure."""
    try:
        import imageio.v3 as iio
        import av  # noqa: F401  (imageio's pyav plugin needs it)
    except ImportError as exc:
        yield 0, None, f"reading video needs the video extra ({exc}): pip install 'irfoundry[video]'"
        return
    position = 0
    try:
        for rgb in iio.imiter(path, plugin="pyav"):
            grey = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).convert("L"), dtype=np.float32) / 255.0
            yield position, grey, None
            position += 1
    except Exception as exc:  # PyAV / imageio raise their own errors on corrupt or truncated streams
        yield position, None, f"cannot decode frame {position} of {path} ({type(exc).__name__}: {exc})"


def _stdin_frames(stream: BinaryIO, size: tuple[int, int], pixel_format: str) -> Iterator[tuple]:
    dtype, scale = PIXEL_FORMATS[pixel_format]
    h, w = size
    nbytes = h * w * np.dtype(dtype).itemsize
    position = 0
    while True:
        buf = stream.read(nbytes)
        if not buf:
            return
        if len(buf) < nbytes:
            yield position, None, f"stdin ended inside frame {position} ({len(buf)} of {nbytes} bytes)"
            return
        yield position, np.frombuffer(buf, dtype=dtype).reshape(h, w).astype(np.float32) / np.float32(scale), None
        position += 1


def iter_frames(sources: Sequence[str], *, frame_size: tuple[int, int] | None = None, pixel_format: str = "gray",
                stdin: BinaryIO | None = None) -> Iterator[Frame]:
    """The frames of ``sources`` (:func:`expand_inputs`) in order, one at a time.

    Args:
        frame_size: ``(height, width)`` of the raw stdin frames (needed when ``-`` is a source).
        pixel_format: stdin pixel format (:data:`PIXEL_FORMATS`).
        stdin: the binary stream read for ``-`` (default ``sys.stdin.buffer``).
    """
    if STDIN in sources and frame_size is None:
        raise ConfigError("reading raw frames from stdin ('-') needs --frame-size WIDTHxHEIGHT")
    if pixel_format not in PIXEL_FORMATS:
        raise ConfigError(f"pixel format {pixel_format!r} is not one of {', '.join(PIXEL_FORMATS)}")
    index = 0
    for source in sources:
        if source == STDIN:
            parts = _stdin_frames(stdin or sys.stdin.buffer, frame_size, pixel_format)
        elif Path(source).suffix.lower() in VIDEO_SUFFIXES:
            parts = _video_frames(source)
        else:
            try:
                parts = iter([(None, read_image(source), None)])
            except IRFoundryError as exc:
                parts = iter([(None, None, str(exc))])
        for position, image, error in parts:
            yield Frame(index, source, position, image, error)
            index += 1
