"""Dataset validation: every problem with its file name, plus a summary.

``check_dataset("PATH[:SPLIT]")`` returns a :class:`CheckReport`. Without a split every split of the
layout is checked (or every image of a plain folder). Errors (``report.ok`` is False, the CLI exits 1):

* unreadable / corrupt image or mask file;
* missing image or mask for an id;
* mask size different from the image size with a different aspect ratio;
* non-binary mask (more than one non-zero value; the loader would binarise it at half the maximum);
* ids in a split file without files, empty split, duplicate ids in a split, unreadable split file.

Warnings (reported, exit code still 0): a wrong-size mask with the image's aspect ratio (the loader
rescales it with nearest neighbour, e.g. SIRST ``Misc_111``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from irfoundry.data.io import aspect_matches, binarise, mask_values, read_image_info, resize_nearest
from irfoundry.data.layouts import DatasetSpec, Layout, duplicate_ids, read_split_file
from irfoundry.data.points import label_components
from irfoundry.errors import DataError


@dataclass(frozen=True)
class Problem:
    """One finding: ``level`` is ``"error"`` or ``"warning"``; ``file`` the file it concerns."""

    level: str
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper()}: {self.file}: {self.message}"


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`.

    Attributes:
        root: dataset folder; ``layout``: detected layout name (``None`` if none).
        splits: split name -> number of ids (as listed, duplicates included).
        problems: every error and warning, in discovery order.
        summary: statistics (images, sizes, modes, targets, areas) of the checked samples.
    """

    root: Path
    layout: str | None = None
    splits: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not self.errors

    def error(self, file, message: str) -> None:
        self.problems.append(Problem("error", str(file), message))

    def warning(self, file, message: str) -> None:
        self.problems.append(Problem("warning", str(file), message))

    def format(self) -> str:
        """Human-readable multi-line report."""
        lines = [f"dataset: {self.root}", f"layout: {self.layout or 'unknown'}"]
        if self.splits:
            lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in self.splits.items()))
        s = self.summary
        if s:
            lines.append(f"images checked: {s['images']}")
            if s.get("sizes"):
                z = s["sizes"]
                lines.append(
                    f"image sizes (HxW): {z['distinct']} distinct, height {z['h_min']}-{z['h_max']}, "
                    f"width {z['w_min']}-{z['w_max']}, most common {z['most_common']}"
                )
            if s.get("modes"):
                lines.append("image modes: " + ", ".join(f"{k} {v}" for k, v in s["modes"].items()))
            if s.get("mask_modes"):
                lines.append("mask modes: " + ", ".join(f"{k} {v}" for k, v in s["mask_modes"].items()))
            t = s.get("targets")
            if t:
                lines.append(
                    f"targets: {t['count']} in {t['images_with_targets']} images "
                    f"({t['images_without_targets']} background-only), per image mean {t['per_image_mean']:.2f} "
                    f"max {t['per_image_max']}"
                )
                if t["count"]:
                    lines.append(
                        f"target area (px): min {t['area_min']}, median {t['area_median']:g}, "
                        f"mean {t['area_mean']:.1f}, max {t['area_max']}"
                    )
        for p in self.problems:
            lines.append(str(p))
        lines.append(f"result: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


def _split_entries(spec: DatasetSpec, layout: Layout) -> list[tuple[str, Path]]:
    """``(name, file)`` of the splits to check, each file once."""
    if spec.split is not None:
        return [(spec.split, spec.split_file(layout))]
    seen: set[Path] = set()
    entries = []
    for name, f in layout.splits.items():
        if f in seen:
            continue
        seen.add(f)
        entries.append((name, f))
    return entries


def check_dataset(spec: DatasetSpec | str, split: str | None = None, *, count_targets: bool = True) -> CheckReport:
    """Validate a dataset and collect every problem.

    Args:
        spec: ``DatasetSpec`` or ``"PATH[:SPLIT]"`` string.
        split: overrides the spec's split (name or ``.txt`` path).
        count_targets: label masks to report target statistics (8-connected components).

    Returns:
        A :class:`CheckReport`; layout-level failures (missing folder, unknown layout or split) are
        reported as errors rather than raised.
    """
    spec = DatasetSpec.parse(spec)
    if split is not None:
        spec = DatasetSpec(spec.root, split)
    report = CheckReport(root=spec.root)
    try:
        layout = spec.layout()
    except DataError as exc:
        report.error(spec.root, str(exc))
        return report
    report.layout = layout.name
    try:
        entries = _split_entries(spec, layout)
    except DataError as exc:
        report.error(spec.split, str(exc))
        return report

    ids: list[str] = []
    if not entries:
        ids = layout.all_ids()
        report.splits["(all images)"] = len(ids)
        if not ids:
            report.error(layout.images_dir, "no image files (png/bmp/jpg/tif) in the images folder.")
    for name, f in entries:
        try:
            listed = read_split_file(f)
        except DataError as exc:
            report.error(f, str(exc))
            continue
        report.splits[name] = len(listed)
        if not listed:
            report.error(f, f"split {name!r} is empty; list at least one id per line.")
        for d in duplicate_ids(listed):
            report.error(f, f"id {d!r} appears more than once in split {name!r}.")
        for sid in listed:
            if layout.image_path(sid) is None:
                report.error(f, f"id {sid!r} of split {name!r} has no image file in {layout.images_dir}.")
            elif sid not in ids:
                ids.append(sid)
    if entries:  # keep images outside every split out of the check, but in a stable natural order
        order = {sid: i for i, sid in enumerate(layout.all_ids())}
        ids.sort(key=lambda s: order.get(s, len(order)))

    sizes: Counter = Counter()
    modes: Counter = Counter()
    mask_modes: Counter = Counter()
    areas: list[int] = []
    per_image: list[int] = []
    for sid in ids:
        img_path = layout.image_path(sid)
        try:
            info = read_image_info(img_path)
        except DataError as exc:
            report.error(img_path, str(exc))
            continue
        modes[info.mode] += 1
        sizes[info.size] += 1
        mask_path = layout.mask_path(sid)
        if mask_path is None:
            report.error(img_path, f"no mask for id {sid!r} in {layout.masks_dir} ({sid}.png or {sid}_pixels0.png).")
            continue
        try:
            minfo = read_image_info(mask_path)
            values = mask_values(mask_path)
        except DataError as exc:
            report.error(mask_path, str(exc))
            continue
        mask_modes[minfo.mode] += 1
        mask, is_binary = binarise(values)
        if not is_binary:
            shown = np.unique(np.round(values * 255).astype(int))
            report.error(
                mask_path,
                f"mask is not binary ({shown.size} distinct values, e.g. {shown[:5].tolist()} on a 0-255 scale); "
                f"save it as 0/255.",
            )
        if mask.shape != info.size:
            msg = (
                f"mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but image {img_path.name} is "
                f"{info.size[1]}x{info.size[0]}"
            )
            if aspect_matches(mask.shape, info.size):
                report.warning(mask_path, msg + "; same aspect ratio, the loader rescales it (nearest neighbour).")
                mask = resize_nearest(mask, info.size)
            else:
                report.error(mask_path, msg + " with a different aspect ratio; fix or remove this sample.")
                continue
        if count_targets:
            labels, n = label_components(mask)
            per_image.append(n)
            if n:
                areas.extend(np.bincount(labels.ravel())[1:].tolist())

    summary: dict = {"images": sum(modes.values())}
    if sizes:
        hs = [s[0] for s in sizes.elements()]
        ws = [s[1] for s in sizes.elements()]
        common = sizes.most_common(1)[0]
        summary["sizes"] = {
            "distinct": len(sizes),
            "h_min": min(hs),
            "h_max": max(hs),
            "w_min": min(ws),
            "w_max": max(ws),
            "most_common": f"{common[0][0]}x{common[0][1]} ({common[1]})",
        }
    summary["modes"] = dict(modes.most_common())
    summary["mask_modes"] = dict(mask_modes.most_common())
    if count_targets and per_image:
        summary["targets"] = {
            "count": int(sum(per_image)),
            "images_with_targets": int(sum(1 for n in per_image if n)),
            "images_without_targets": int(sum(1 for n in per_image if not n)),
            "per_image_mean": float(np.mean(per_image)),
            "per_image_max": int(max(per_image)),
            "area_min": int(min(areas)) if areas else 0,
            "area_median": float(np.median(areas)) if areas else 0.0,
            "area_mean": float(np.mean(areas)) if areas else 0.0,
            "area_max": int(max(areas)) if areas else 0,
        }
    report.summary = summary
    return report
