"""Reading infrared images and target masks as plain numpy arrays.

``read_image(path) -> float32 H x W in [0, 1]`` turns any PNG / BMP / JPEG / TIFF (8 or 16 bit; grey,
grey+alpha, RGB, RGBA, palette, CMYK) into ONE grey channel:

* RGB(A) and palette images become luminance with the ITU-R 601 weights (``0.299 R + 0.587 G + 0.114 B``),
  exactly as Pillow's ``convert("L")`` does for 8-bit data; alpha is dropped; palette images are expanded
  to RGB first.
* 8-bit data is divided by 255, 16-bit data by 65535; float data (TIFF) must already lie in [0, 1].
* TIFFs are read with ``tifffile`` when it is installed (``pip install irfoundry[tiff]``; keeps 16-bit
  RGB precision), otherwise, or when tifffile cannot decode the file, with Pillow.
* Limitation: Pillow reads 16-bit-per-channel RGB PNGs at 8-bit precision (grey 16-bit PNGs keep 16 bits).

``read_mask(path, image_shape=...) -> bool H x W``: a binary mask (0/255, 0/1, ...) is binarised at
``> 0``; a non-binary one (e.g. anti-aliased or JPEG-compressed) at ``> max / 2``, with one warning per
:class:`WarnOnce` instance (a dataset owns one, so the warning appears once per dataset, not per file).

Mask-size policy (SIRST v1 ``Misc_111`` has a 592x400 mask for a 325x220 image): when the mask's size
differs from the image's but the aspect ratio agrees within 1 %, the mask is rescaled to the image size
with nearest-neighbour sampling and a warning names the file; otherwise :class:`DataError` names both
sizes.

Unreadable or corrupt files raise :class:`~irfoundry.errors.DataError` naming the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from irfoundry.errors import DataError

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
"""File extensions recognised as images (lower case)."""

ASPECT_TOLERANCE = 0.01
"""Relative aspect-ratio difference below which a wrong-size mask is rescaled instead of refused."""

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


class DataWarning(UserWarning):
    """A dataset quirk that the loader repaired (rescaled or non-binary mask)."""


class WarnOnce:
    """Emits each warning *kind* at most once (a dataset owns one instance).

    Example::

        once = WarnOnce()
        once("nonbinary", "mask a.png is not binary")   # warns
        once("nonbinary", "mask b.png is not binary")   # silent
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, kind: str, message: str) -> None:
        if kind not in self.seen:
            self.seen.add(kind)
            warnings.warn(message, DataWarning, stacklevel=3)

    def __getstate__(self) -> dict:  # picklable for DataLoader workers
        return {"seen": set(self.seen)}

    def __setstate__(self, state: dict) -> None:
        self.seen = set(state["seen"])


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image_info` learned about a file without keeping the pixels.

    Attributes:
        mode: Pillow mode (``"RGB"``, ``"L"``, ``"P"``, ``"I;16"`` ...) or ``"tifffile:<dtype>x<channels>"``.
        size: ``(height, width)``.
    """

    mode: str
    size: tuple[int, int]


def _unreadable(path: Path, exc: BaseException) -> DataError:
    return DataError(
        f"cannot read image file {path}: {exc}. Check that it is a valid PNG/BMP/JPEG/TIFF "
        f"(re-export or re-download it), or remove its id from the split file."
    )


def _pil_to_float(img: Image.Image, path: Path) -> np.ndarray:
    """Pillow image of any mode -> float32 H x W in [0, 1]."""
    mode = img.mode
    if mode == "P":
        # expand the palette; RGBA keeps Pillow quiet about byte transparency, alpha is dropped next
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        img = img.convert("RGBA" if mode == "PA" else mode)
        bands = img.split()
        if img.mode in ("LA", "La"):
            img = bands[0]
        else:
            img = Image.merge("RGB", bands[:3])
        mode = img.mode
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
        mode = "RGB"
    if mode in ("RGB", "RGBX"):
        return np.asarray(img.convert("L"), dtype=np.float32) / np.float32(255.0)
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.float32) / np.float32(255.0)
    if mode == "L":
        return np.asarray(img, dtype=np.float32) / np.float32(255.0)
    if mode.startswith("I;16"):
        arr = np.asarray(img)
        return arr.astype(np.float32) / np.float32(65535.0)
    if mode == "I":  # 32-bit int container; Pillow uses it for 16-bit PNG/TIFF grey data
        arr = np.asarray(img, dtype=np.int64)
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise DataError(
                f"image file {path} holds 32-bit integer values outside 0..65535; convert it to 8- or "
                f"16-bit grey."
            )
        return arr.astype(np.float32) / np.float32(65535.0)
    if mode == "F":
        return _float_checked(np.asarray(img, dtype=np.float32), path)
    raise DataError(f"image file {path} has unsupported Pillow mode {mode!r}; convert it to 8- or 16-bit grey or RGB.")


def _float_checked(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all() or arr.min(initial=0) < 0 or arr.max(initial=0) > 1:
        raise DataError(f"float image file {path} has values outside [0, 1] (or NaN); rescale it to [0, 1].")
    return arr


def _array_to_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """Array from tifffile (H x W, H x W x C or C x H x W) -> float32 H x W in [0, 1]."""
    arr = np.squeeze(arr)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar -> interleaved
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    elif arr.dtype == np.bool_:
        scale = 1.0
    elif np.issubdtype(arr.dtype, np.floating):
        scale = None
    else:
        raise DataError(f"image file {path} has unsupported sample type {arr.dtype}; convert it to 8- or 16-bit.")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8:
        # Pillow's integer "L" conversion, so an 8-bit RGB TIFF matches the same pixels saved as PNG
        rgb = arr[..., :3].astype(np.uint32)
        grey = ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.float64)
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
        grey = arr[..., :3].astype(np.float64) @ _LUMA
    elif arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha
        grey = arr[..., 0].astype(np.float64)
    elif arr.ndim == 2:
        grey = arr.astype(np.float64)
    else:
        raise DataError(f"image file {path} has shape {arr.shape}; expected one grey or RGB(A) image.")
    if scale is None:
        return _float_checked(grey, path)
    return (grey / scale).astype(np.float32)


def _read_tiff(path: Path, pil_exc: BaseException) -> np.ndarray:
    try:
        import tifffile
    except ImportError:
        raise DataError(
            f"Pillow cannot read TIFF file {path} ({pil_exc}); install tifffile "
            f"(pip install 'irfoundry[tiff]') or convert the file to PNG."
        ) from pil_exc
    try:
        arr = tifffile.imread(str(path))
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise _unreadable(path, exc) from exc
    return _array_to_float(np.asarray(arr), path)


def _read_tiff_first(path: Path) -> np.ndarray | None:
    """TIFF via tifffile (keeps 16-bit RGB precision Pillow drops); ``None`` to fall back to Pillow."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        arr = tifffile.imread(str(path))
    except Exception:  # compressed variants tifffile cannot decode without imagecodecs: let Pillow try
        return None
    return _array_to_float(np.asarray(arr), path)


def _open_pil(path: Path) -> Image.Image:
    img = Image.open(path)
    img.load()
    return img


def read_image(path: str | Path) -> np.ndarray:
    """Read one image as a grey float array.

    Args:
        path: PNG, BMP, JPEG or TIFF file.

    Returns:
        ``float32`` array ``H x W`` with values in [0, 1].

    Raises:
        DataError: the file is missing, corrupt, truncated or of an unsupported kind (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist; check the dataset path and the split file.")
    if path.suffix.lower() in (".tif", ".tiff"):
        arr = _read_tiff_first(path)
        if arr is not None:
            return arr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = _open_pil(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_tiff(path, exc)
        raise _unreadable(path, exc) from exc
    try:
        return _pil_to_float(img, path)
    except (OSError, ValueError) as exc:
        raise _unreadable(path, exc) from exc
    finally:
        img.close()


def read_image_info(path: str | Path) -> ImageInfo:
    """Mode and ``(height, width)`` of an image file, fully decoding it (so corrupt files raise).

    Raises:
        DataError: the file cannot be read (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist; check the dataset path and the split file.")
    try:
        img = _open_pil(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = _read_tiff(path, exc)
            return ImageInfo(mode="tifffile", size=(int(arr.shape[0]), int(arr.shape[1])))
        raise _unreadable(path, exc) from exc
    with img:
        return ImageInfo(mode=img.mode, size=(img.height, img.width))


def mask_values(path: str | Path) -> np.ndarray:
    """Raw mask as ``float32 H x W`` in [0, 1] (same decoding as :func:`read_image`), not yet binarised."""
    return read_image(path)


def binarise(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Binarise a mask's values.

    Args:
        values: ``H x W`` array of any numeric type.

    Returns:
        ``(mask, is_binary)``: ``bool H x W``; ``is_binary`` is True when the input held at most one
        non-zero value (``mask = values > 0``); otherwise ``mask = values > max / 2``.
    """
    nonzero = values[values != 0]
    if nonzero.size == 0:
        return np.zeros(values.shape, dtype=bool), True
    first = nonzero.flat[0]
    if np.all(nonzero == first):
        return values > 0, True
    return values > (values.max() / 2), False


def aspect_matches(mask_hw: tuple[int, int], image_hw: tuple[int, int], tol: float = ASPECT_TOLERANCE) -> bool:
    """True when two ``(h, w)`` sizes have the same aspect ratio within relative tolerance ``tol``."""
    mh, mw = mask_hw
    ih, iw = image_hw
    if min(mh, mw, ih, iw) <= 0:
        return False
    return abs((mw / mh) / (iw / ih) - 1.0) <= tol


def resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a ``bool H x W`` mask to ``shape = (h, w)``."""
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    out = img.resize((shape[1], shape[0]), resample=Image.Resampling.NEAREST)
    return np.asarray(out) > 0


def read_mask(
    path: str | Path,
    *,
    image_shape: tuple[int, int] | None = None,
    warn: WarnOnce | None = None,
) -> np.ndarray:
    """Read one target mask as a boolean array.

    Args:
        path: mask file (any format :func:`read_image` reads).
        image_shape: ``(h, w)`` of the matching image; when given, the size policy of this module applies.
        warn: warning de-duplicator; the non-binary warning is emitted once per instance. ``None`` warns
            on every call.

    Returns:
        ``bool`` array ``H x W`` (``image_shape`` when given).

    Raises:
        DataError: unreadable file, or a size mismatch with a different aspect ratio (names both sizes).
    """
    path = Path(path)
    warn = warn if warn is not None else WarnOnce()
    values = mask_values(path)
    mask, is_binary = binarise(values)
    if not is_binary:
        warn(
            "nonbinary",
            f"mask {path} is not binary (values {np.unique(values)[:6].tolist()}...); binarised at > half its "
            f"maximum. Further non-binary masks of this dataset are binarised the same way without a warning.",
        )
    if image_shape is not None and tuple(mask.shape) != tuple(image_shape):
        if not aspect_matches(mask.shape, image_shape):
            raise DataError(
                f"mask {path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
                f"{image_shape[1]}x{image_shape[0]} with a different aspect ratio; fix or remove this sample."
            )
        warn(
            f"resize:{path}",
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
            f"{image_shape[1]}x{image_shape[0]}; same aspect ratio, rescaled with nearest neighbour.",
        )
        mask = resize_nearest(mask, image_shape)
    return mask
