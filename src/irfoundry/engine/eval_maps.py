"""Score saved probability maps from any toolkit against a dataset split (``irfoundry eval-maps``).

A prediction folder holds one file per image id of the split, ``<id><suffix>.png`` or
``<id><suffix>.npy`` (``suffix`` is empty for most toolkits and ``_prob`` for the ``ID_prob.png`` maps of
``irfoundry predict``; by default it is detected, see :func:`evaluate_maps`):

* PNG: 8-bit single channel (mode ``L``), probability = value / 255, so at threshold 0.5 a pixel is
  foreground iff value >= 128. Also read: RGB / RGBA / LA whose colour channels are equal and whose alpha
  is fully opaque (one channel is taken), and 1-bit PNGs (0 or 1). 16-bit and palette PNGs are refused
  (save 8-bit, value = round(255 p), or a float ``.npy``).
* NPY: ``H x W`` float (or bool) probabilities in [0, 1]; leading axes of size 1 are dropped.

Every id of the split needs exactly one map of exactly its mask's size; files with other endings
(``.json``, ``.txt``, ...) are ignored, and in ``_prob`` mode so are predict's ``ID_mask.png`` /
``ID_overlay.png``. The metrics are those of ``irfoundry eval`` (:func:`irfoundry.engine.scoring.score_maps`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from irfoundry.data import IRSTDDataset
from irfoundry.engine.scoring import resolve_split, score_maps, write_outputs
from irfoundry.errors import ConfigError, DataError
from irfoundry.metrics import MetricSettings

PRED_EXTENSIONS = (".png", ".npy")
#: suffix of ``irfoundry predict``'s probability maps (``ID_prob.png``)
PREDICT_SUFFIX = "_prob"
_LIST = 10


def _listing(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_LIST])
    return shown + (f", ... ({len(ids) - _LIST} more)" if len(ids) > _LIST else "")


def _index_predictions(pred_dir: Path, suffix: str) -> tuple[dict[str, list[Path]], list[Path]]:
    """``{id: [files]}`` of the ``.png`` / ``.npy`` files ending in ``suffix``, and the other image files."""
    found: dict[str, list[Path]] = {}
    others: list[Path] = []
    for p in sorted(pred_dir.iterdir()):
        if not p.is_file():
            continue
        if p.suffix.lower() not in PRED_EXTENSIONS:
            others.append(p)
            continue
        stem = p.name[: -len(p.suffix)]
        if suffix and not stem.endswith(suffix):
            continue
        found.setdefault(stem[: len(stem) - len(suffix)], []).append(p)
    return found, others


def _detect_suffix(pred_dir: Path, ids: Sequence[str]) -> str:
    """``""`` when some id has ``<id>.png`` / ``<id>.npy``, else ``"_prob"`` when some has ``<id>_prob.png``."""
    for suffix in ("", PREDICT_SUFFIX):
        if any((pred_dir / f"{i}{suffix}{ext}").is_file() for i in ids for ext in PRED_EXTENSIONS):
            return suffix
    return ""


def read_prediction(path: str | Path, sample_id: str) -> np.ndarray:
    """One saved map as ``H x W`` float64 probabilities in [0, 1] (PNG: value / 255).

    Raises:
        DataError: unreadable file, unsupported PNG mode (16-bit, palette, colour), non-float ``.npy``,
            NaN or values outside [0, 1]; the message names the id and the file.
    """
    path = Path(path)
    where = f"prediction for {sample_id!r} ({path})"
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{where} cannot be read as .npy: {exc}") from exc
        while arr.ndim > 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise DataError(f"{where} has shape {arr.shape}; save one H x W map per image.")
        if arr.dtype == bool:
            return arr.astype(np.float64)
        if not np.issubdtype(arr.dtype, np.floating):
            raise DataError(
                f"{where} has dtype {arr.dtype}; save float probabilities in [0, 1] (8-bit maps belong in PNGs)."
            )
        prob = arr.astype(np.float64)
        bad = ~((prob >= 0.0) & (prob <= 1.0))  # NaN fails both comparisons
        if bad.any():
            nan = int(np.isnan(prob).sum())
            raise DataError(
                f"{where} holds {int(bad.sum())} value(s) outside [0, 1] ({nan} NaN; finite min "
                f"{np.nanmin(prob) if nan < prob.size else float('nan'):.4g}, max "
                f"{np.nanmax(prob) if nan < prob.size else float('nan'):.4g}); save probabilities (apply the "
                "sigmoid to logits)."
            )
        return prob
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = np.asarray(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{where} cannot be read as PNG: {exc}") from exc
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise DataError(
            f"{where} is a {mode} (16/32-bit) PNG; save 8-bit maps (value = round(255 p)) or float .npy files."
        )
    if mode == "1":
        return arr.astype(np.float64)
    if mode in ("LA", "RGBA"):
        if not np.all(arr[..., -1] == 255):
            raise DataError(f"{where} has a transparent alpha channel; save a single-channel 8-bit PNG (mode L).")
        arr = arr[..., :-1]
    if mode in ("RGB", "RGBA"):
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise DataError(f"{where} is a colour PNG with unequal channels; save a single-channel 8-bit PNG.")
        arr = arr[..., 0]
    elif mode == "LA":
        arr = arr[..., 0]
    elif mode != "L":
        raise DataError(f"{where} has PNG mode {mode}; save a single-channel 8-bit PNG (mode L) or a float .npy.")
    return arr.astype(np.float64) / 255.0


def evaluate_maps(
    pred_dir: str | Path,
    data: str | Path,
    split: str | None = "test",
    out: str | Path | None = None,
    threshold: float = 0.5,
    thresholds: str | Sequence[float] | None = None,
    report: bool = False,
    suffix: str | None = None,
    ignore_extra: bool = False,
    empty_niou: float = 0.0,
) -> dict:
    """Score the maps in ``pred_dir`` against the masks of ``data`` (``PATH`` or ``PATH:SPLIT``).

    Args:
        pred_dir: folder of ``<id><suffix>.png`` (8-bit, value / 255) or ``<id><suffix>.npy`` (float) maps.
        empty_niou: nIoU score of an image with empty ground truth and prediction (0 legacy, or 1).
        data: dataset folder or ``PATH:SPLIT``; ``split`` fills in a missing split.
        out: folder for ``metrics.json`` (+ ``curves.csv``, plots, ``report.html``); ``None``: write nothing.
        threshold: probability threshold of the scalar metrics (``p > threshold``; 0.5 means value >= 128).
        thresholds: curve / HSE thresholds, as in :func:`irfoundry.engine.evaluate.evaluate`.
        report: write ``out/report.html``; the maps are read a second time, one at a time, for it.
        suffix: file name ending after the id (``"_prob"`` for ``irfoundry predict`` output); ``None``
            detects ``""`` or ``"_prob"``.
        ignore_extra: score the split's ids and ignore maps of other ids (e.g. a folder predicted for
            every image of the dataset); by default they are an error.

    Returns:
        The dict written to ``out/metrics.json``: the keys of ``irfoundry eval`` (``iou``, ``niou``,
        ``pd``, ``fa``, ``target_precision``, ``target_f1``, ``hse``, ``hse_definition``, ``hse_detail``,
        ``thresholds``, ``threshold``, ``n_images``, ``definition``, ``dataset``, ``split``, ``seconds``) with
        ``pred_dir``, ``pred_suffix`` and ``pred_files`` (count per extension) instead of the checkpoint.

    Raises:
        DataError: missing maps (lists up to 10 ids and the count), maps of ids outside the split, an id
            with both a ``.png`` and a ``.npy``, a size mismatch (names the id and both sizes), or an
            unreadable / out-of-range map (names the id).
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} does not exist; pass the folder holding <id>.png / <id>.npy.")
    spec = resolve_split(data, split)
    if report and out is None:
        raise ConfigError("--report writes OUT/report.html; give an output folder with --out")
    dataset = IRSTDDataset(spec.resolve(), split=spec.split)  # no norm: raw images for the report
    ids = [s.id for s in dataset.samples]
    suffix = _detect_suffix(pred_dir, ids) if suffix is None else suffix
    found, others = _index_predictions(pred_dir, suffix)
    names = f"<id>{suffix}.png / <id>{suffix}.npy"
    both = [i for i in ids if len(found.get(i, [])) > 1]
    if both:
        raise DataError(
            f"{len(both)} id(s) have both a .png and a .npy map in {pred_dir}: {_listing(both)}; keep one per id."
        )
    missing = [i for i in ids if i not in found]
    if missing:
        hint = ""
        if others:
            kinds = sorted({p.suffix.lower() or p.name for p in others})
            hint = f" (only .png / .npy are read; the folder also holds {', '.join(kinds[:5])} files)"
        raise DataError(
            f"{len(missing)} of {len(ids)} image(s) of split {spec.split!r} have no map {names} in {pred_dir}: "
            f"{_listing(missing)}{hint}."
        )
    wanted = set(ids)
    extra = sorted(i for i in found if i not in wanted)
    if extra and not ignore_extra:
        raise DataError(
            f"{len(extra)} map(s) in {pred_dir} belong to no image of split {spec.split!r} of {spec.root}: "
            f"{_listing([found[i][0].name for i in extra])}; check --data / --split, remove them, or pass "
            "--ignore-extra."
        )
    paths = [found[i][0] for i in ids]

    def maps(with_image: bool) -> Iterator[tuple]:
        for index, (sample_id, path) in enumerate(zip(ids, paths)):
            image, gt = dataset.load(index)
            gt = gt > 0.5
            prob = read_prediction(path, sample_id)
            if prob.shape != gt.shape:
                raise DataError(
                    f"prediction for {sample_id!r} ({path}) is {prob.shape[1]}x{prob.shape[0]} (WxH) but its "
                    f"mask is {gt.shape[1]}x{gt.shape[0]}; save maps at the native image size (no resizing)."
                )
            yield (sample_id, prob, gt, image) if with_image else (sample_id, prob, gt)

    t0 = time.perf_counter()
    scores = score_maps(maps(False), threshold=threshold, thresholds=thresholds,
                        settings=MetricSettings(empty_niou=empty_niou))
    counts = {ext: sum(p.suffix.lower() == ext for p in paths) for ext in PRED_EXTENSIONS}
    result = {
        **scores.metrics,
        "dataset": str(spec.root),
        "split": spec.split,
        "pred_dir": str(pred_dir),
        "pred_suffix": suffix,
        "pred_files": {ext.lstrip("."): n for ext, n in counts.items() if n},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if out is not None:
        records = None
        if report:
            from irfoundry.report import ImageRecord

            def records():
                return (ImageRecord(id=i, image=im, gt=g, prob=p) for i, p, g, im in maps(True))

        write_outputs(out, result, scores, report_images=records, title=f"{pred_dir.name} on {spec}")
    return result
