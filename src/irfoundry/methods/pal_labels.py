"""PAL's label geometry: initial masks from clicks, and the masks of mined hard images (Yu et al., ICCV 2025;
code YuChuang1205/PAL, ``utilts.py``).

Everything here is OpenCV, as in the released code (Canny, external contours, polygon fill and polygon
area have no exact counterpart elsewhere); it needs the ``pointsup`` extra (``opencv-python-headless``).
Images are ``uint8 H x W`` grey (the reference reads them with ``cv2.IMREAD_GRAYSCALE``), click maps are
``H x W`` with 1 (or 255) at the clicked pixels, masks come back as ``float32`` 0 / 1.

* :func:`contour_mask` (``data_inital_make_add_points`` + ``process_image`` + ``center_point_inside_contour``):
  for each click, the window ``[y - 10, y + 10) x [x - 10, x + 10)`` (clipped), Canny(20, 40) of the
  window minus its 3 x 3 Gaussian blur (saturating), closed with a 3 x 3 dilate then erode; the external
  contour whose filled polygon holds the click is the click's mask if its polygon area is <= 50 px. The
  image is *easy* when at least 80 % of its clicks got a contour; its initial label is the union of the
  contours and the clicks.
* :func:`mining_accepts` (``nc_pred_mask``): a hard image joins training when the share of its click
  contours that no predicted blob covers is <= ``lose_ratio`` and (predicted blobs - covered clicks) /
  clicks <= ``alarm_ratio``.
* :func:`mined_mask` (``nc_correct_pred_mask``): the predicted blobs that cover a click, plus the clicks.
"""

from __future__ import annotations

import numpy as np

from irfoundry.errors import ConfigError


def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigError("PAL's label geometry needs OpenCV: pip install 'irfoundry[pointsup]' "
                          "(opencv-python-headless)") from None
    return cv2


def _filled(binary: np.ndarray) -> tuple[list, np.ndarray]:
    """External contours of ``binary`` and a ``uint16`` map of their filled polygons (``j + 1`` = contour j)."""
    cv2 = _cv2()
    contours, _ = cv2.findContours(binary.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) >= 65535:
        raise ValueError(f"{len(contours)} blobs: more than a uint16 map can number")
    ids = np.zeros(binary.shape, dtype=np.uint16)
    for j, c in enumerate(contours):
        cv2.fillPoly(ids, [c], j + 1)
    return list(contours), ids


def _clicks(click_map: np.ndarray) -> np.ndarray:
    """``(N, 2)`` row, column of the clicked pixels (value 1 or 255), in raster order as ``np.where``."""
    m = np.asarray(click_map)
    return np.argwhere((m == 1) | (m == 255))


def contour_mask(image: np.ndarray, click_map: np.ndarray, *, half_window: int = 10, canny_low: float = 20,
                 canny_high: float = 40, max_area: float = 50, easy_share: float = 0.8) -> tuple[np.ndarray, bool]:
    """PAL's initial label of one image (see the module docstring).

    Args:
        image: ``uint8 H x W`` grey image.
        click_map: ``H x W``, 1 (or 255) at the clicks.
        half_window: the window reaches this far from the click (``crop_size=10``: 20 x 20).
        canny_low, canny_high: Canny hysteresis thresholds.
        max_area: largest accepted contour (OpenCV polygon area, px).
        easy_share: share of clicks with a contour that makes the image easy.

    Returns:
        ``(label, easy)``: ``float32 H x W`` 0 / 1 (contours + clicks) and whether the image is easy. An
        image without clicks is easy, its label empty. For a hard image the label is its clicks (PAL keeps
        no mask for it until it is mined).
    """
    cv2 = _cv2()
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"image must be uint8 H x W grey, got {image.dtype} {image.shape}")
    clicks = _clicks(click_map)
    points = np.zeros(image.shape, dtype=np.float32)
    if len(clicks) == 0:
        return points, True
    points[clicks[:, 0], clicks[:, 1]] = 1
    merged = np.zeros(image.shape, dtype=bool)
    found = 0
    kernel = np.ones((3, 3), np.uint8)
    h, w = image.shape
    for cy, cx in clicks:
        y1, y2 = max(cy - half_window, 0), min(cy + half_window, h)
        x1, x2 = max(cx - half_window, 0), min(cx + half_window, w)
        roi = image[y1:y2, x1:x2]
        high_pass = cv2.subtract(roi, cv2.GaussianBlur(roi, (3, 3), 0))
        edges = cv2.erode(cv2.dilate(cv2.Canny(high_pass, canny_low, canny_high), kernel, iterations=1), kernel,
                          iterations=1)
        full = np.zeros(image.shape, dtype=np.uint8)  # the reference finds contours on the full-size canvas
        full[y1:y2, x1:x2] = edges
        contours, ids = _filled(full)
        j = int(ids[cy, cx])
        if j and cv2.contourArea(contours[j - 1]) <= max_area:
            found += 1
            merged[y1:y2, x1:x2] |= (ids == j)[y1:y2, x1:x2]
    easy = found / len(clicks) >= easy_share
    if not easy:
        return points, False
    return np.maximum(merged.astype(np.float32), points), True


def _covered(click_map: np.ndarray, predicted: np.ndarray) -> tuple[int, int, list[bool], np.ndarray]:
    """Click contours, predicted contours, which click contour a predicted blob covers, the predicted ids."""
    click_contours, click_ids = _filled(np.asarray(click_map) > 0)
    pred_contours, pred_ids = _filled(predicted)
    covered = [bool((pred_ids[click_ids == j + 1] > 0).any()) for j in range(len(click_contours))]
    return len(click_contours), len(pred_contours), covered, pred_ids


def mining_accepts(click_map: np.ndarray, predicted: np.ndarray, *, lose_ratio: float, alarm_ratio: float = 5.0) -> bool:
    """Whether a hard image joins training (PAL ``nc_pred_mask``; see the module docstring).

    Args:
        click_map: ``H x W`` clicks (> 0).
        predicted: ``H x W`` bool, the prediction above 0.5.
        lose_ratio: the largest share of clicks left uncovered.
        alarm_ratio: the largest (predicted blobs - covered clicks) per click.

    An image without clicks is accepted, as in the reference.
    """
    n_clicks, n_pred, covered, _ = _covered(click_map, predicted)
    if n_clicks == 0:
        return True
    lost = n_clicks - sum(covered)
    return not (lost / n_clicks > lose_ratio or (n_pred - sum(covered)) / n_clicks > alarm_ratio)


def mined_mask(click_map: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The label of a mined image (PAL ``nc_correct_pred_mask``): the filled predicted blobs that overlap a
    click contour, plus the clicks; ``float32 H x W`` 0 / 1."""
    _, click_ids = _filled(np.asarray(click_map) > 0)
    _, pred_ids = _filled(predicted)
    keep = np.unique(pred_ids[(click_ids > 0) & (pred_ids > 0)])
    out = np.isin(pred_ids, keep[keep > 0]) | (np.asarray(click_map) > 0)
    return out.astype(np.float32)
