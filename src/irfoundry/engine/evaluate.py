"""Evaluate a checkpoint on a dataset split at native resolution; write ``metrics.json`` (+ curves,
plots and an HTML report on request).

Scoring is :func:`irfoundry.engine.scoring.score_maps`, shared with ``irfoundry eval-maps``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from irfoundry.data.layouts import DatasetSpec
from irfoundry.engine.datamodule import eval_loader
from irfoundry.engine.inference import Predictor, crop
from irfoundry.engine.scoring import resolve_split, score_maps, write_outputs
from irfoundry.errors import ConfigError
from irfoundry.metrics import MetricSettings

log = logging.getLogger(__name__)


class _ProbSpool:
    """Probability maps saved one ``.npy`` per image (float32, in scoring order) in a folder, so the report
    pass can read them back without running the model again or holding the split in memory."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.n = 0

    def put(self, prob: np.ndarray) -> None:
        np.save(self.folder / f"{self.n:07d}.npy", prob, allow_pickle=False)
        self.n += 1

    def get(self, index: int) -> np.ndarray:
        return np.load(self.folder / f"{index:07d}.npy", allow_pickle=False)


def _checkpoint_maps(predictor: Predictor, loader, spool: _ProbSpool | None, prefix: str = "") -> Iterator[tuple]:
    """``(prefix + id, prob float32 H x W, gt bool H x W)`` per image, cropped back to its native size; a log
    line about every tenth of the split (images done, time, ETA)."""
    total, done, t0 = len(loader.dataset), 0, time.perf_counter()
    step = max(1, total // 10)
    for batch in loader:
        done += len(batch["id"])
        if done // step != (done - len(batch["id"])) // step or done == total:
            dt = time.perf_counter() - t0
            log.info("eval: %d/%d images, %.1f s (eta %.1f s)", done, total, dt, dt / done * (total - done))
        for i, prob in enumerate(predictor.batch_probabilities(batch)):
            prob = prob.numpy()
            gt = crop(batch["mask"][i, 0], batch["box"][i]).numpy() > 0.5
            if spool is not None:
                spool.put(prob)
            yield prefix + batch["id"][i], prob, gt


def _report_records(dataset, ids: Sequence[str], spool: _ProbSpool) -> Iterator:
    from irfoundry.report import ImageRecord

    for index, sample_id in enumerate(ids):
        image, mask = dataset.load(index)  # raw image in [0, 1], not normalised
        yield ImageRecord(id=sample_id, image=image, gt=mask > 0.5, prob=spool.get(index))


@torch.no_grad()
def set_names(specs: Sequence[DatasetSpec]) -> list[str]:
    """Names of evaluated sets: the folder's name, with the split when two sets share a folder name."""
    names = [spec.root.name for spec in specs]
    if len(set(names)) < len(names):
        names = [f"{spec.root.name}:{spec.split}" for spec in specs]
    if len(set(names)) < len(names):
        raise ConfigError(f"the evaluated sets {[str(x) for x in specs]} repeat; give each once")
    return names


def evaluate(
    checkpoint: str | Path,
    data: str | Path | DatasetSpec | list[str | Path] | tuple[str | Path, ...],
    split: str | None = "test",
    out: str | Path | None = None,
    threshold: float = 0.5,
    device: str = "cpu",
    batch_size: int = 1,
    thresholds: str | Sequence[float] | None = None,
    report: bool = False,
    empty_niou: float = 0.0,
    norm: str | None = None,
    names: Sequence[str] | None = None,
    branch: str | None = None,
) -> dict:
    """Score ``checkpoint`` (file or run folder) on ``data`` (``PATH`` or ``PATH:SPLIT``).

    Images go through the inference path (:mod:`irfoundry.engine.inference`): padded to the model's input
    multiple and cropped back, never resized.

    Args:
        checkpoint: ``.safetensors`` file or run folder (best, else last).
        data: dataset folder or ``PATH:SPLIT``; ``split`` fills in a missing split. Several of them (a mixed
            run's test sets): the metrics are those of their union, and ``sets`` holds each set's own, named
            by ``names`` (default :func:`set_names`); image ids become ``NAME/id``.
        out: folder for ``metrics.json`` (and ``curves.csv``, plots, ``report.html``); ``None``: nothing
            is written.
        threshold: probability threshold of the scalar metrics (foreground iff ``p > threshold``).
        thresholds: curve thresholds (``"START:STOP:STEP"``, ``"a,b,c"`` or numbers): adds ``curves.csv``
            and the plots ``iou_niou_vs_threshold.png``, ``pd_vs_fa.png``, ``roc.png`` to ``out`` and
            computes HSE on them. Without it HSE is computed on the default grid 0.05..0.95 step 0.05.
        norm: normalisation replacing the checkpoint's (``MEAN,STD`` on 0-255 grey or a preset such as
            ``sirst3``); needed for weights that carry none (imported reference checkpoints).
        branch: score another evaluation branch of the run's method at its ``best`` checkpoint (e.g.
            ``teacher``; :mod:`irfoundry.engine.branches`) instead of the deployable network; needs a run folder.
        empty_niou: nIoU score of an image whose ground truth and prediction are both empty (0, the
            field's legacy rule, or 1); recorded as ``niou_empty``.
        report: write ``out/report.html`` (needs ``out``). The probability maps are spooled to a temporary
            folder inside ``out`` (float32 ``.npy``, deleted afterwards) during the single model pass, and
            read back one at a time with the raw images and masks for the report, so memory stays bounded;
            the spool needs about 4 bytes per pixel of the split on disk while it exists.

    Returns:
        The dict written to ``out/metrics.json``: ``iou``, ``niou``, ``pd``, ``fa`` (fractions; ``fa`` x 1e6
        is the usual printed value), ``target_precision``, ``target_f1``, ``hse`` (percent),
        ``hse_definition``, ``hse_detail``, ``thresholds``, ``threshold``, ``n_images``, ``definition``,
        dataset, split, checkpoint, model and seconds.
    """
    several = isinstance(data, (list, tuple))
    specs = [resolve_split(d, split) for d in (data if several else [data])]
    if not specs:
        raise ConfigError("no dataset to evaluate on")
    names = list(names) if names is not None else set_names(specs)
    if several and len(names) != len(specs):
        raise ConfigError(f"{len(names)} names for {len(specs)} evaluated sets")
    if report and out is None:
        raise ConfigError("--report writes OUT/report.html; give an output folder with --out")
    if report and several:
        raise ConfigError("--report shows one set; evaluate the sets one at a time for their reports")
    if branch is not None:
        from irfoundry.engine.branches import branch_predictor

        predictor, meta = branch_predictor(checkpoint, branch, device=device, norm=norm)
    else:
        predictor, meta = Predictor.from_checkpoint(checkpoint, device=device, norm=norm)
    loaders = [eval_loader(spec, meta["norm"], batch_size=batch_size, multiple=predictor.multiple,
                           padding=predictor.padding) for spec in specs]
    t0 = time.perf_counter()
    spool_dir = tempfile.TemporaryDirectory(dir=_mkdir(out), prefix=".prob-spool-") if report else nullcontext()
    with spool_dir as tmp:
        spool = _ProbSpool(Path(tmp)) if report else None
        maps = (item for name, loader in zip(names, loaders)
                for item in _checkpoint_maps(predictor, loader, spool, f"{name}/" if several else ""))
        scores = score_maps(maps, threshold=threshold, thresholds=thresholds,
                            settings=MetricSettings(empty_niou=empty_niou),
                            group_of=(lambda sid: sid.split("/", 1)[0]) if several else None)
        result = {
            **scores.metrics,
            "padding": predictor.padding,
            "dataset": [str(x.root) for x in specs] if several else str(specs[0].root),
            "split": [x.split for x in specs] if several else specs[0].split,
            "checkpoint": meta["file"],
            "model": meta.get("model_name"),
            **({"branch": branch} if branch is not None else {}),
            "torch_threads": torch.get_num_threads(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        if meta.get("norm_source"):
            result["norm_source"] = meta["norm_source"]
        if out is not None:
            records = (lambda: _report_records(loaders[0].dataset, scores.ids, spool)) if report else None
            title = f"{meta.get('model_name') or Path(meta['file']).stem} on {' + '.join(map(str, specs))}"
            write_outputs(out, result, scores, report_images=records, title=title)
    return result


def _mkdir(out: str | Path) -> Path:
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return path
