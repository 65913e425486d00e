"""Prediction on images, folders, globs, video files and raw stdin streams with a checkpoint or ONNX file.

The frames (:mod:`irfoundry.deploy.frames`) are read in a background thread, consecutive frames of one
canvas size are batched through the one inference path (:class:`~irfoundry.engine.inference.Predictor`,
PyTorch or ONNX Runtime), frames larger than ``--tile`` are predicted by tiles (:mod:`irfoundry.deploy.
tiling`), and the results are written by a second thread (:class:`~irfoundry.deploy.sinks.ResultWriter`:
``targets.jsonl`` plus the requested PNGs or overlay video), so reading, the network and the writing overlap
and memory stays flat however long the input is. A frame that cannot be read is reported (file, frame
index, reason) in ``targets.jsonl`` and on stderr and skipped, unless ``strict``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Sequence

import numpy as np

from irfoundry.deploy.frames import IMAGE_SUFFIXES, STDIN, Frame, expand_inputs, iter_frames
from irfoundry.deploy.sinks import IMAGE_OUTPUTS, ResultWriter
from irfoundry.deploy.tiling import TileSettings, tiled_probabilities
from irfoundry.engine.inference import Predictor, padded_canvas
from irfoundry.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["predict"]

_DONE = object()


def _background(items: Iterable, depth: int) -> Iterator:
    """Iterate ``items`` in a daemon thread, ``depth`` ahead; its exceptions are raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer
            q.put(exc)
            return
        q.put(_DONE)

    thread = threading.Thread(target=run, name="irfoundry-read", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class _Consumer:
    """Calls ``fn(*args)`` in one daemon thread, in order, at most ``depth`` calls queued; :meth:`close` waits
    for the queue and raises the first exception of ``fn``."""

    def __init__(self, fn: Callable, depth: int) -> None:
        self.fn, self.q, self.error = fn, queue.Queue(maxsize=depth), None
        self.thread = threading.Thread(target=self._run, name="irfoundry-write", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (args := self.q.get()) is not _DONE:
            if self.error is None:
                try:
                    self.fn(*args)
                except BaseException as exc:
                    self.error = exc

    def put(self, *args) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(args)

    def close(self) -> None:
        self.q.put(_DONE)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _groups(frames: Iterable[Frame], predictor: Predictor, batch: int, tile: TileSettings | None) -> Iterator:
    """``("skip", frame)``, ``("tiled", frame)`` or ``("batch", [frames])``: consecutive readable frames of one
    padded canvas, at most ``batch``; a frame whose canvas exceeds the tile goes alone, by tiles."""
    pending: list[Frame] = []
    canvas = None
    for frame in frames:
        if frame.error is not None:
            yield from ([("batch", pending)] if pending else [])
            pending, canvas = [], None
            yield "skip", frame
            continue
        h, w = frame.image.shape
        c = padded_canvas(h, w, predictor.multiple, predictor.padding)[:2]
        if tile is not None and max(c) > tile.aligned(predictor.multiple)[0]:
            yield from ([("batch", pending)] if pending else [])
            pending, canvas = [], None
            yield "tiled", frame
            continue
        if pending and (c != canvas or len(pending) == batch):
            yield "batch", pending
            pending = []
        pending.append(frame)
        canvas = c
    if pending:
        yield "batch", pending


def predict(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    threshold: float | None = None,
    device: str = "cpu",
    norm: str | None = None,
    *,
    backend: str | None = None,
    batch: int = 8,
    tile: TileSettings | None = None,
    save: Sequence[str] | None = None,
    overlay_video: str | None = None,
    fps: float = 25.0,
    frame_size: tuple[int, int] | None = None,
    pixel_format: str = "gray",
    strict: bool = False,
    stdin: BinaryIO | None = None,
) -> dict:
    """Run a checkpoint (run folder, ``.safetensors`` or exported ``.onnx``) on ``inputs``; write into ``out``.

    Args:
        threshold: mask / target threshold (default: the one stored with an exported model, else 0.5).
        backend: ``torch`` or ``onnx`` (default: from the checkpoint's suffix).
        batch: frames per forward pass (consecutive frames of one padded size).
        tile: predict frames whose padded canvas exceeds ``tile.tile`` by tiles (``None``: whole frames).
        save: per-frame PNGs (:data:`~irfoundry.deploy.sinks.IMAGE_OUTPUTS`; default all three for still
            images, none when a video or stdin is among the inputs).
        overlay_video: write overlay frames into this video file inside ``out``.
        frame_size / pixel_format: raw stdin frames (``(height, width)``, ``gray`` / ``gray16le``).
        strict: stop at the first unreadable frame (a :class:`DataError`) instead of skipping it.

    Returns:
        ``{"out", "frames", "skipped", "targets", "seconds", "frames_per_s", "backend", "threshold"}``;
        ``skipped`` lists ``{"source", "position", "error"}`` of every skipped frame.
    """
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    sources = expand_inputs(inputs)
    streams = any(s == STDIN or Path(s).suffix.lower() not in IMAGE_SUFFIXES for s in sources)
    save = (() if streams else IMAGE_OUTPUTS) if save is None else tuple(save)
    predictor, meta = Predictor.from_checkpoint(checkpoint, device=device, norm=norm, backend=backend)
    if tile is not None:
        tile.aligned(predictor.multiple)  # a tile that cannot hold the overlap is refused before anything is written
    threshold = float(meta.get("threshold", 0.5) if threshold is None else threshold)
    if not 0.0 <= threshold < 1.0:
        raise ConfigError(f"threshold must lie in [0, 1), got {threshold}")
    frames = iter_frames(sources, frame_size=frame_size, pixel_format=pixel_format, stdin=stdin)
    writer = ResultWriter(out, threshold, save=save, overlay_video=overlay_video, fps=fps)
    # every record goes through the writer thread, in frame order (prob None: a skipped frame)
    sink = _Consumer(lambda frame, prob: writer.skipped(frame) if prob is None else writer.write(frame, prob),
                     depth=2 * batch)
    skipped: list[dict] = []
    n_frames = 0
    t0 = time.perf_counter()
    try:
        for kind, item in _groups(_background(frames, depth=2 * batch), predictor, batch, tile):
            if kind == "skip":
                where = item.source if item.position is None else f"{item.source} frame {item.position}"
                if strict:
                    raise DataError(f"{where}: {item.error} (stopped by --strict; drop it to skip such frames)")
                log.warning("skipped %s: %s", where, item.error)
                skipped.append({"source": item.source, "position": item.position, "error": item.error})
                sink.put(item, None)
                continue
            if kind == "tiled":
                probs = [tiled_probabilities(predictor, item.image, tile)]
                item = [item]
            else:
                probs = [p.numpy() for p in predictor.batch_probabilities(
                    predictor.collate([{"image": predictor.normalise(f.image)} for f in item]))]
            for frame, prob in zip(item, probs):
                sink.put(frame, np.asarray(prob, dtype=np.float32))
            n_frames += len(item)
    finally:
        try:
            sink.close()
        finally:
            writer.close()
    seconds = time.perf_counter() - t0
    return {"out": str(out), "frames": n_frames, "skipped": skipped, "targets": writer.n_targets,
            "seconds": round(seconds, 3), "frames_per_s": round(n_frames / seconds, 2) if seconds > 0 else None,
            "backend": meta["backend"], "threshold": threshold}
