"""Label evolution of point supervision: LESPS' update rule (Ying et al., CVPR 2023) and PAL's variant of it
(Yu et al., ICCV 2025), shared by the methods that evolve labels (``lesps``, ``pal``; semantic-prior KD uses
PAL's).

Transcribed from XinyiYing/LESPS ``net.py`` ``Net.update_gt`` (see ``../shared/guides/methods.md`` 2a). For
the current label ``L`` (``H x W`` in [0, 1]) and the model's probability map ``P`` of the full,
un-augmented training image (eval mode), for each 8-connected region of ``L > 0.5``, in turn:

* ``c`` = its centroid truncated to a pixel, the *neighbourhood* = the ``33 x 33`` box at ``c`` and the
  *core* = the ``3 x 3`` box at ``c`` (both clipped at the image border);
* ``M`` = the maximum of ``P`` in the neighbourhood, ``tau = Tb M + k (M - Tb M) |region| / (0.0015 H W)``;
* candidates = neighbourhood pixels with ``P > tau``; when they form more than one 8-connected component,
  the components that do not touch the core are dropped (a single component is kept even off the core:
  the reference's ``if label_image.max() > 1``);
* ``L <- (L + P) / 2`` on the candidates, unchanged elsewhere (regions are those of the input label, but
  each region's average applies to the label as the previous regions left it).

Finally every pixel that was exactly 1 in the input label (the clicks) is 1 again. Arithmetic is float32,
as the reference's tensors.
"""

from __future__ import annotations

import numpy as np
from skimage import measure


def _box(shape: tuple[int, int], cy: int, cx: int, side: int) -> tuple[slice, slice]:
    r = side // 2
    return slice(max(cy - r, 0), min(cy + r + 1, shape[0])), slice(max(cx - r, 0), min(cx + r + 1, shape[1]))


def lesps_update(pred: np.ndarray, label: np.ndarray, *, tb: float = 0.5, k: float = 0.5, neighbourhood: int = 33,
                 core: int = 3, size_fraction: float = 0.0015) -> np.ndarray:
    """One LESPS label update (see the module docstring).

    Args:
        pred: ``H x W`` probabilities of the model on the full image.
        label: ``H x W`` current label in [0, 1] (clicks are 1).
        tb, k: the threshold's base and slope (LESPS ``--LESPS_Tb``, ``--LESPS_k``).
        neighbourhood, core: box sides around each region's centroid (odd).
        size_fraction: the region size at which ``tau`` reaches ``M`` (``k = 1``), as a share of the image.

    Returns:
        the new label, ``float32 H x W``.
    """
    pred, label = _checked(pred, label)
    h, w = pred.shape
    out = label.copy()
    max_area = np.float32(h * w * size_fraction)
    for region in measure.regionprops(measure.label(label > 0.5, connectivity=2)):
        cand = _candidates(pred, region, tb, k, neighbourhood, core, max_area, keep_single=True)
        out = np.where(cand, (out + pred) / np.float32(2), out)
    return np.maximum(out, (label == 1).astype(np.float32))


def pal_update(pred: np.ndarray, label: np.ndarray, *, tb: float = 0.5, k: float = 0.5, neighbourhood: int = 33,
               core: int = 3, size_fraction: float = 0.0015, decay: float = 0.97, quantise: bool = True) -> np.ndarray:
    """One PAL label update (PAL ``utilts.update_gt_update_degen_corr``).

    The candidates of every region of ``label > 0.5`` are found as in :func:`lesps_update`, except that the
    components off the core are always dropped (PAL has no single-component exception), and are united
    into one mask ``C`` computed from the input label. Then ``L <- (L + P) / 2`` on ``C`` and
    ``L <- decay * L`` elsewhere, and every pixel that was exactly 1 in the input label is 1 again (the
    clicks, and in PAL's pipeline also every pixel of an initial contour mask or a mined mask, which are
    binary: they never decay).

    ``quantise=True`` rounds the result to multiples of 1/255, as the released code does by keeping every
    label as an 8-bit PNG between updates (``cv2.imwrite(label * 255)``, read back ``/ 255``); a value that
    rounds to 255 becomes exactly 1, and so permanent.

    Args:
        pred: ``H x W`` probabilities of the model on the full image.
        label: ``H x W`` current label in [0, 1].
        decay: the factor of the label outside the candidates (``degen``, 0.97).
        the others: as :func:`lesps_update`.

    Returns:
        the new label, ``float32 H x W``.
    """
    pred, label = _checked(pred, label)
    h, w = pred.shape
    max_area = np.float32(h * w * size_fraction)
    united = np.zeros((h, w), dtype=bool)
    for region in measure.regionprops(measure.label(label > 0.5, connectivity=2)):
        united |= _candidates(pred, region, tb, k, neighbourhood, core, max_area, keep_single=False)
    out = np.where(united, (label + pred) / np.float32(2), label * np.float32(decay)).astype(np.float32)
    out = np.maximum(out, (label == 1).astype(np.float32))
    if quantise:
        out = (np.rint(np.clip(out, 0, 1) * 255) / 255).astype(np.float32)
    return out


def _checked(pred: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float32)
    label = np.asarray(label, dtype=np.float32)
    if pred.shape != label.shape or pred.ndim != 2:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} must be the same H x W")
    return pred, label


def _candidates(pred: np.ndarray, region, tb: float, k: float, neighbourhood: int, core: int,
                max_area: np.float32, *, keep_single: bool) -> np.ndarray:
    """Candidate pixels of one label region (``H x W`` bool): ``P > tau`` in the neighbourhood, without the
    8-connected components that miss the core (all of them kept when there is one and ``keep_single``)."""
    h, w = pred.shape
    cy, cx = int(region.centroid[0]), int(region.centroid[1])
    near = np.zeros((h, w), dtype=bool)
    near[_box((h, w), cy, cx, neighbourhood)] = True
    centre = np.zeros((h, w), dtype=bool)
    centre[_box((h, w), cy, cx, core)] = True
    local = np.where(near, pred, np.float32(0))
    peak = local.max()
    start = peak * np.float32(tb)
    tau = start + np.float32(k) * (peak - start) * (np.float32(region.area) / max_area)
    cand = local > tau
    parts = measure.label(cand, connectivity=2)
    if parts.max() > 1 or not keep_single:
        for j in range(1, parts.max() + 1):
            part = parts == j
            if not (part & centre).any():
                cand &= ~part
    return cand
