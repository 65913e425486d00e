"""Dataset layouts, recognised by their files, and the ``PATH[:SPLIT]`` dataset specification.

Recognised layouts (``ROOT`` is the dataset folder):

=============  ==========================================================  ===============================
layout         files                                                       split names
=============  ==========================================================  ===============================
``sirst_v1``   ``images/``, ``masks/<id>_pixels0.png``, ``idx_427/*.txt``  ``train``, ``val``, ``test``,
               (also ``idx_320/``, any ``idx_*/``)                         ``trainval`` ... of ``idx_427``;
                                                                           ``idx_320/test`` for another dir
``dnanet``     ``images/``, ``masks/``, ``50_50/{train,test}.txt`` (any    ``train``, ``test`` of ``50_50``;
               ``<a>_<b>/`` ratio dir; DNANet / NUDT-SIRST)                ``70_30/train`` for another dir
``basicirstd`` ``images/``, ``masks/``, ``img_idx/{train,test}_NAME.txt``  ``train``, ``test``
``sirst_v2``   ``images/`` or ``mixed/``, ``masks/`` or                    file stems of ``splits/*.txt``
               ``annotations/masks/``, ``splits/*.txt``
``folder``     ``images/`` and ``masks/`` only                             a split file given by path
=============  ==========================================================  ===============================

Masks are found by id as ``<id>.<ext>`` or ``<id>_pixels0.<ext>``; images as ``<id>.<ext>`` with any
extension of :data:`~irfoundry.data.io.IMAGE_EXTENSIONS`.

Dataset specification strings (:meth:`DatasetSpec.parse`)::

    PATH                     every image of the folder (sorted by id), no split file
    PATH:test                a split by name (see the table)
    PATH:idx_320/test        a split of another split directory
    PATH:/abs/split.txt      a split file by path (any name ending in .txt; a relative path is looked
                             up in PATH first, then in the working directory)

Split files hold one id per line (LF or CRLF, trailing newline optional, ``#`` comments and blank lines
ignored, a file extension on an id is dropped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from irfoundry.data.io import IMAGE_EXTENSIONS
from irfoundry.errors import DataError

_RATIO_DIR = re.compile(r"^\d+_\d+$")
MASK_SUFFIXES = ("", "_pixels0")
"""Mask file stems tried for an id, in order: ``<id>``, ``<id>_pixels0``."""


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    Attributes:
        id: sample id as written in the split file (no extension).
        image: path of the image file.
        mask: path of the mask file, or ``None`` for unlabelled data (``resolve(require_masks=False)``).
        dataset: the dataset it comes from in a run that mixes several (:mod:`irfoundry.data.mix`; its id is
            then ``dataset/id``), else ``None``.
    """

    id: str
    image: Path
    mask: Path | None
    dataset: str | None = None


@dataclass
class Layout:
    """A recognised dataset layout.

    Attributes:
        name: ``sirst_v1``, ``dnanet``, ``basicirstd``, ``sirst_v2`` or ``folder``.
        root: dataset folder.
        images_dir, masks_dir: folders holding images and masks.
        splits: split name -> split file; the default split directory's files appear under their bare
            name (``train``) and, for SIRST v1 / DNANet, every file also as ``<dir>/<name>``.
    """

    name: str
    root: Path
    images_dir: Path
    masks_dir: Path
    splits: dict[str, Path] = field(default_factory=dict)
    _image_index: dict[str, Path] | None = field(default=None, repr=False)
    _mask_index: dict[str, Path] | None = field(default=None, repr=False)

    # ---- file lookup -------------------------------------------------------------------------------
    @staticmethod
    def _index(folder: Path) -> dict[str, Path]:
        index: dict[str, Path] = {}
        if not folder.is_dir():
            return index
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                index.setdefault(p.stem, p)  # first extension in sorted order wins
        return index

    @property
    def image_index(self) -> dict[str, Path]:
        """Image stem -> file (built once)."""
        if self._image_index is None:
            self._image_index = self._index(self.images_dir)
        return self._image_index

    @property
    def mask_index(self) -> dict[str, Path]:
        """Mask stem -> file (built once)."""
        if self._mask_index is None:
            self._mask_index = self._index(self.masks_dir)
        return self._mask_index

    def image_path(self, sample_id: str) -> Path | None:
        """Image file of an id, or ``None``."""
        return self.image_index.get(sample_id)

    def mask_path(self, sample_id: str) -> Path | None:
        """Mask file of an id (``<id>`` or ``<id>_pixels0``), or ``None``."""
        for suffix in MASK_SUFFIXES:
            p = self.mask_index.get(sample_id + suffix)
            if p is not None:
                return p
        return None

    def all_ids(self) -> list[str]:
        """Every image id of the folder, in natural order (``Misc_2`` before ``Misc_10``)."""
        return sorted(self.image_index, key=_natural_key)


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _txt_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.txt") if p.is_file()) if folder.is_dir() else []


def _add_group_splits(splits: dict[str, Path], groups: list[Path], preferred: str) -> None:
    """Split dirs ``groups`` (e.g. idx_427, idx_320): bare names from the preferred/first, all as dir/name."""
    groups = sorted(groups, key=lambda g: (g.name != preferred, g.name))
    for i, g in enumerate(groups):
        for f in _txt_files(g):
            if i == 0:
                splits[f.stem] = f
            splits[f"{g.name}/{f.stem}"] = f


LOOKED_FOR = (
    "images/ + masks/ with idx_*/*.txt (SIRST v1), with <a>_<b>/*.txt such as 50_50/ (DNANet, NUDT-SIRST), "
    "with img_idx/*.txt (BasicIRSTD), with splits/*.txt (SIRST v2), or alone (plain folder, split files by "
    "path); mixed/ + annotations/masks/ + splits/ (SIRST v2); images/ alone (point labels, split dirs of .txt)"
)


def detect_layout(root: str | Path) -> Layout:
    """Recognise the layout of a dataset folder by its files.

    Raises:
        DataError: the folder does not exist or matches no layout (the message lists what was looked for).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; pass the folder holding images/ and masks/.")
    images, masks = root / "images", root / "masks"
    if images.is_dir() and masks.is_dir():
        idx_dirs = [d for d in root.iterdir() if d.is_dir() and d.name.startswith("idx_") and _txt_files(d)]
        ratio_dirs = [d for d in root.iterdir() if d.is_dir() and _RATIO_DIR.match(d.name) and _txt_files(d)]
        if idx_dirs:
            layout = Layout("sirst_v1", root, images, masks)
            _add_group_splits(layout.splits, idx_dirs, "idx_427")
            return layout
        if ratio_dirs:
            layout = Layout("dnanet", root, images, masks)
            _add_group_splits(layout.splits, ratio_dirs, "50_50")
            return layout
        if _txt_files(root / "img_idx"):
            layout = Layout("basicirstd", root, images, masks)
            for f in _txt_files(root / "img_idx"):
                layout.splits[f.stem] = f
                short = f.stem.split("_", 1)[0]
                layout.splits.setdefault(short, f)
            return layout
        if _txt_files(root / "splits"):
            layout = Layout("sirst_v2", root, images, masks)
            layout.splits.update({f.stem: f for f in _txt_files(root / "splits")})
            return layout
        return Layout("folder", root, images, masks)
    mixed, ann = root / "mixed", root / "annotations" / "masks"
    if mixed.is_dir() and ann.is_dir():
        layout = Layout("sirst_v2", root, mixed, ann)
        layout.splits.update({f.stem: f for f in _txt_files(root / "splits")})
        return layout
    if images.is_dir():  # images without masks: trains on point labels (data.labels: points), never evaluates
        layout = Layout("folder", root, images, masks)
        _add_group_splits(layout.splits, [d for d in root.iterdir() if d.is_dir() and _txt_files(d)], "idx_427")
        return layout
    present = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:12]
    raise DataError(
        f"no known dataset layout in {root} (it holds: {', '.join(present) or 'nothing'}). Looked for: "
        f"{LOOKED_FOR}."
    )


def read_split_file(path: str | Path) -> list[str]:
    """Ids of a split file, in file order.

    One id per line; LF or CRLF; trailing newline optional; blank lines and ``# comments`` ignored; an
    image extension on an id is dropped. Duplicates are kept (see :func:`duplicate_ids`).

    Raises:
        DataError: the file is missing or not UTF-8 text.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(f"split file {path} does not exist; check the path after the ':' of the dataset spec.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read split file {path}: {exc}; it must be UTF-8 text, one id per line.") from exc
    ids = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        p = Path(line)
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            line = p.stem
        ids.append(line)
    return ids


def duplicate_ids(ids: list[str]) -> list[str]:
    """Ids appearing more than once, in order of their second appearance."""
    seen: set[str] = set()
    dups: list[str] = []
    for i in ids:
        if i in seen and i not in dups:
            dups.append(i)
        seen.add(i)
    return dups


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset folder plus an optional split (by name or by split-file path).

    Build it from a string with :meth:`parse` (syntax in the module docstring) or directly:
    ``DatasetSpec("/data/sirst", "test")``.

    Attributes:
        root: dataset folder.
        split: split name, split-file path (ends with ``.txt``), or ``None`` for every image.
    """

    root: Path
    split: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.split is not None:
            object.__setattr__(self, "split", str(self.split))

    @classmethod
    def parse(cls, text: str | Path | "DatasetSpec") -> "DatasetSpec":
        """Parse ``PATH``, ``PATH:NAME`` or ``PATH:SPLIT_FILE.txt``.

        The first ``:`` whose left part is an existing folder separates path and split (so a ``:`` in the
        folder name works when the folder exists); otherwise the first ``:``.
        """
        if isinstance(text, DatasetSpec):
            return text
        text = str(text)
        if ":" not in text or Path(text).is_dir():
            return cls(Path(text), None)
        cuts = [i for i, c in enumerate(text) if c == ":"]
        cut = next((i for i in cuts if Path(text[:i]).is_dir()), cuts[0])
        root, split = text[:cut], text[cut + 1 :]
        if not root:
            raise DataError(f"dataset spec {text!r} has no path before ':'; write PATH, PATH:SPLIT or PATH:FILE.txt.")
        return cls(Path(root), split or None)

    def __str__(self) -> str:
        return f"{self.root}:{self.split}" if self.split else str(self.root)

    @property
    def is_split_file(self) -> bool:
        """True when :attr:`split` names a split file rather than a split of the layout."""
        return self.split is not None and self.split.lower().endswith(".txt")

    def layout(self) -> Layout:
        """The detected :class:`Layout` of :attr:`root`."""
        return detect_layout(self.root)

    def split_file(self, layout: Layout | None = None) -> Path | None:
        """Path of the split file this spec selects (``None`` for every image).

        Raises:
            DataError: unknown split name (lists the available ones) or missing split file.
        """
        if self.split is None:
            return None
        layout = layout or self.layout()
        if self.is_split_file:
            p = Path(self.split)
            if not p.is_absolute():
                cand = self.root / p
                p = cand if cand.is_file() else p
            if not p.is_file():
                raise DataError(
                    f"split file {self.split} does not exist (looked in {self.root} and the working directory)."
                )
            return p
        if self.split in layout.splits:
            return layout.splits[self.split]
        available = ", ".join(layout.splits) or "none (give a split file: PATH:/path/to/split.txt)"
        raise DataError(
            f"unknown split {self.split!r} for the {layout.name} dataset at {self.root}; available splits: {available}."
        )

    def ids(self, layout: Layout | None = None) -> list[str]:
        """Ids of the selected split in file order (every image id when no split is given)."""
        layout = layout or self.layout()
        f = self.split_file(layout)
        return layout.all_ids() if f is None else read_split_file(f)

    def resolve(self, *, require_masks: bool = True) -> list[Sample]:
        """Sample records of the selected split.

        Args:
            require_masks: when False, ids without a mask get ``mask=None`` instead of an error.

        Returns:
            One :class:`Sample` per id, in split-file order.

        Raises:
            DataError: unknown layout or split; empty split; duplicate ids; an id without an image (or
                mask) file (names the id and the split file).
        """
        layout = self.layout()
        f = self.split_file(layout)
        ids = layout.all_ids() if f is None else read_split_file(f)
        where = f"split file {f}" if f is not None else f"folder {layout.images_dir}"
        if not ids:
            raise DataError(f"{where} lists no samples; it must hold at least one id (one per line).")
        dups = duplicate_ids(ids)
        if dups:
            raise DataError(f"{where} lists ids more than once: {', '.join(dups[:10])}; remove the duplicates.")
        samples = []
        for sid in ids:
            img = layout.image_path(sid)
            if img is None:
                raise DataError(
                    f"id {sid!r} of {where} has no image file {layout.images_dir}/{sid}.<png|bmp|jpg|tif>; "
                    f"add the image or remove the id."
                )
            mask = layout.mask_path(sid)
            if mask is None and require_masks:
                raise DataError(
                    f"id {sid!r} of {where} has no mask file {layout.masks_dir}/{sid}.png (or {sid}_pixels0.png); "
                    f"add the mask or remove the id."
                )
            samples.append(Sample(sid, img, mask))
        return samples
