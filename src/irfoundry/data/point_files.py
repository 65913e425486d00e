"""Point-label files: one click per target, as users bring them or as derived from masks.

Two formats, chosen by the file's suffix:

* CSV (``.csv``): a header line ``id,x,y`` then one row per click: the image id (the file stem, as in the
  split files), the column ``x`` and the row ``y`` of the clicked pixel (integers, 0-based, origin at the
  top-left corner). An image with several targets has several rows. Blank lines and lines starting with
  ``#`` are skipped. Extra columns are an error (a typo in the header must not drop a coordinate).
* JSON (``.json``): ``{"format": "irfoundry-points-1", "points": {"ID": [[x, y], ...], ...}}``; an image
  listed with ``[]`` has no target (background-only images, which CSV cannot express).

Points are returned and stored as ``(y, x)`` pairs (row, column), the order of
:func:`irfoundry.data.points.centroid_points` and :func:`irfoundry.data.points.points_to_mask`. Every error
names the file and, for CSV, the line.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

from irfoundry.errors import DataError

__all__ = ["POINTS_FORMAT", "PointTable", "derive_point_table", "read_points", "write_points"]

POINTS_FORMAT = "irfoundry-points-1"

PointTable = dict[str, list[tuple[int, int]]]
"""image id -> ``[(y, x), ...]``."""


def _integer(text: str, path: Path, line: int, column: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path} line {line}: {column} = {text!r} is not a number") from None
    if not value.is_integer() or value < 0:
        raise DataError(f"{path} line {line}: {column} = {text!r} must be a non-negative integer pixel index")
    return int(value)


def _read_csv(path: Path) -> PointTable:
    table: PointTable = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(f)) if r and any(c.strip() for c in r)
                and not r[0].lstrip().startswith("#")]
    if not rows:
        raise DataError(f"{path} is empty; write a header 'id,x,y' and one row per click")
    line, header = rows[0]
    header = [h.strip().lower() for h in header]
    if header != ["id", "x", "y"]:
        raise DataError(f"{path} line {line}: the header must be 'id,x,y' (image id, column, row), got {','.join(header)!r}")
    for line, row in rows[1:]:
        if len(row) != 3:
            raise DataError(f"{path} line {line}: expected 3 values 'id,x,y', got {len(row)}: {','.join(row)!r}")
        sid = row[0].strip()
        if not sid:
            raise DataError(f"{path} line {line}: empty image id")
        x, y = _integer(row[1].strip(), path, line, "x"), _integer(row[2].strip(), path, line, "y")
        table.setdefault(sid, []).append((y, x))
    return table


def _read_json(path: Path) -> PointTable:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("points"), dict):
        raise DataError(f'{path} must hold {{"format": "{POINTS_FORMAT}", "points": {{"ID": [[x, y], ...]}}}}')
    if doc.get("format", POINTS_FORMAT) != POINTS_FORMAT:
        raise DataError(f"{path} has format {doc.get('format')!r}; this version reads {POINTS_FORMAT!r}")
    table: PointTable = {}
    for sid, pts in doc["points"].items():
        if not isinstance(pts, list):
            raise DataError(f"{path}: points of {sid!r} must be a list of [x, y] pairs, got {pts!r}")
        out = []
        for k, p in enumerate(pts):
            if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                          and v >= 0 for v in p)):
                raise DataError(f"{path}: point {k} of {sid!r} must be [x, y] with non-negative integers, got {p!r}")
            out.append((int(p[1]), int(p[0])))
        table[str(sid)] = out
    return table


def read_points(path: str | os.PathLike) -> PointTable:
    """Read a point-label file (CSV or JSON, see the module docstring) -> ``{id: [(y, x), ...]}``.

    Raises:
        DataError: a missing file, an unknown suffix, or a malformed row (named by file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"point-label file {path} does not exist; make one with 'irfoundry data points' or write "
                        "a CSV with the header id,x,y")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".json":
        return _read_json(path)
    raise DataError(f"point-label file {path} must end in .csv or .json")


def write_points(points: Mapping[str, Sequence[tuple[int, int]]], path: str | os.PathLike) -> Path:
    """Write ``{id: [(y, x), ...]}`` as CSV or JSON (by suffix), ids in the given order. Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".csv":
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["id", "x", "y"])
            for sid, pts in points.items():
                w.writerows([sid, int(x), int(y)] for y, x in pts)
    elif suffix == ".json":
        doc = {"format": POINTS_FORMAT, "points": {sid: [[int(x), int(y)] for y, x in pts] for sid, pts in points.items()}}
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    else:
        raise DataError(f"point-label file {path} must end in .csv or .json")
    os.replace(tmp, path)
    return path


def derive_point_table(samples: Sequence, kind: str, seed: int = 0) -> tuple[PointTable, dict[str, int]]:
    """Point labels of ``samples`` (with masks) by :func:`irfoundry.data.points.derive_points`.

    The coarse draws of an image come from ``default_rng([seed, crc32(id)])``: an image gets the same clicks
    whatever the split or order it is derived in. Masks are read with the loader's size policy.

    Returns:
        ``({id: [(y, x), ...]}, {"images", "targets", "off_target"})``; ``off_target`` counts centroid points
        that LESPS' rule puts beside a non-convex target.
    """
    import zlib

    import numpy as np

    from irfoundry.data.io import WarnOnce, read_image_info, read_mask
    from irfoundry.data.points import derive_points, points_outside

    table: PointTable = {}
    counts = {"images": 0, "targets": 0, "off_target": 0}
    warn = WarnOnce()
    for sample in samples:
        if sample.mask is None:
            raise DataError(f"image {sample.id!r} ({sample.image}) has no mask to derive points from")
        mask = read_mask(sample.mask, image_shape=read_image_info(sample.image).size, warn=warn)
        rng = np.random.default_rng([int(seed), zlib.crc32(sample.id.encode("utf-8"))])
        pts = derive_points(mask, kind, rng)
        table[sample.id] = pts
        counts["images"] += 1
        counts["targets"] += len(pts)
        counts["off_target"] += points_outside(mask, pts)
    return table, counts

