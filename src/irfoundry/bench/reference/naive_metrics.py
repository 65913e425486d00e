"""Deliberately naive reference implementation of the IRSTD metrics (benchmark and tests).

Independent of ``irfoundry.metrics`` (it imports nothing of it): per image and per threshold it binarises the map, labels it with
``skimage.measure.label``, reads centroids and areas from ``skimage.measure.regionprops`` and matches
with plain Python loops written the way DNANet / PyIRSTDMetrics write them. Slow on purpose; the fast
engine must reproduce its integer counts exactly.

Used by ``irfoundry bench metrics`` and the parity tests; needs scikit-image (the ``test`` extra).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from skimage import measure


def _components(binary: np.ndarray, connectivity: int):
    lab = measure.label(binary.astype(np.uint8), connectivity=2 if connectivity == 8 else 1)
    return lab, measure.regionprops(lab)


def naive_match(pred_props, gt_props, pred_lab, gt_lab, *, matching, distance, overlap_threshold):
    """List of (gt index, pred index) pairs; indices follow label order."""
    n_g, n_p = len(gt_props), len(pred_props)
    pairs = []
    if n_g == 0 or n_p == 0:
        return pairs
    dist = np.zeros((n_g, n_p))
    for i, g in enumerate(gt_props):
        for j, p in enumerate(pred_props):
            dist[i, j] = np.linalg.norm(np.array(p.centroid) - np.array(g.centroid))
    if matching == "greedy":
        remaining = list(range(n_p))  # DNANet: delete matched predictions from the list
        for i, g in enumerate(gt_props):
            for pos, j in enumerate(remaining):
                d = np.linalg.norm(np.array(pred_props[j].centroid) - np.array(g.centroid))
                if d < distance:
                    pairs.append((i, j))
                    del remaining[pos]
                    break
        return pairs
    if matching == "hungarian":
        cost = dist.copy()
        cost[dist >= distance] = 1e12
        r, c = optimize.linear_sum_assignment(cost)
        return [(int(a), int(b)) for a, b in zip(r, c) if dist[a, b] < distance]
    # overlap-first, then distance compensation
    iou = np.zeros((n_g, n_p))
    for i, g in enumerate(gt_props):
        gm = gt_lab == g.label
        for j, p in enumerate(pred_props):
            pm = pred_lab == p.label
            inter = np.count_nonzero(gm & pm)
            if inter:
                iou[i, j] = inter / np.count_nonzero(gm | pm)
    matched = np.zeros((n_g, n_p), dtype=bool)
    if (iou >= overlap_threshold).any():
        r, c = optimize.linear_sum_assignment(dist)
        matched[r, c] = True
        matched &= iou >= overlap_threshold
    if (dist < distance).any():
        ur = np.where(matched.sum(axis=1) == 0)[0]
        uc = np.where(matched.sum(axis=0) == 0)[0]
        if len(ur) and len(uc):
            r, c = optimize.linear_sum_assignment(dist[ur][:, uc])
            for a, b in zip(r, c):
                if dist[ur[a], uc[b]] < distance:
                    matched[ur[a], uc[b]] = True
    return [(int(a), int(b)) for a, b in zip(*np.nonzero(matched))]


def naive_image(prob, gt, threshold, *, connectivity=8, distance=3.0, matching="greedy",
                legacy_area_match=False, overlap_threshold=0.5):
    """Counts of one image at one threshold, as a dict of Python numbers."""
    pred = np.asarray(prob, dtype=np.float64) > threshold
    gt = np.asarray(gt) > 0
    tp = int(np.sum(pred & gt))
    fp = int(np.sum(pred & ~gt))
    fn = int(np.sum(~pred & gt))
    tn = int(np.sum(~pred & ~gt))
    pred_lab, pred_props = _components(pred, connectivity)
    gt_lab, gt_props = _components(gt, connectivity)
    pairs = naive_match(pred_props, gt_props, pred_lab, gt_lab, matching=matching,
                        distance=distance, overlap_threshold=overlap_threshold)
    matched_pred = [j for _, j in pairs]
    areas = [p.area for p in pred_props]
    if legacy_area_match:
        matched_areas = [areas[j] for j in matched_pred]
        fa = int(sum(a for a in areas if a not in matched_areas))
    else:
        fa = int(sum(a for j, a in enumerate(areas) if j not in matched_pred))
    pair_iou = 0.0
    for i, j in pairs:
        gm = gt_lab == gt_props[i].label
        pm = pred_lab == pred_props[j].label
        pair_iou += np.count_nonzero(gm & pm) / np.count_nonzero(gm | pm)
    return dict(tp=tp, fp=fp, fn=fn, tn=tn, hits=len(pairs), n_pred=len(pred_props),
                n_gt=len(gt_props), fa_pixels=fa, pair_iou=pair_iou, n_pixels=int(pred.size))


def naive_evaluate(probs, gts, thresholds, *, empty_niou=0.0, **kw):
    """Per-threshold loop over images. Returns a dict of ``(T,)`` arrays (counts and metrics)."""
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    keys = ("tp", "fp", "fn", "tn", "hits", "n_pred", "fa_pixels")
    out = {k: np.zeros(len(thresholds), dtype=np.int64) for k in keys}
    out["pair_iou"] = np.zeros(len(thresholds))
    out["niou_sum"] = np.zeros(len(thresholds))
    n_gt = np.zeros(len(thresholds), dtype=np.int64)
    n_pixels = 0
    for prob, gt in zip(probs, gts):
        n_pixels += int(np.asarray(gt).size)
        for k, t in enumerate(thresholds):
            r = naive_image(prob, gt, t, **kw)
            for key in keys:
                out[key][k] += r[key]
            out["pair_iou"][k] += r["pair_iou"]
            n_gt[k] += r["n_gt"]
            union = r["tp"] + r["fp"] + r["fn"]
            out["niou_sum"][k] += r["tp"] / union if union else empty_niou
    n = len(probs)
    out["n_gt"] = int(n_gt[0]) if len(thresholds) else 0
    out["n_pixels"] = n_pixels
    out["iou"] = out["tp"] / (out["tp"] + out["fp"] + out["fn"])
    out["niou"] = out["niou_sum"] / n
    out["pd"] = out["hits"] / out["n_gt"]
    out["fa"] = out["fa_pixels"] / n_pixels
    return out


def naive_hse(out, thresholds, fa_ref=1e-4):
    """HSE from naive curves, trapezoids written out by hand."""
    t = np.asarray(thresholds, dtype=np.float64)
    pix = (out["iou"] + out["niou"]) / 2
    tgt = out["pd"] * (1 - np.minimum(out["fa"] / fa_ref, 1))
    area_pix = sum((t[i + 1] - t[i]) * (pix[i] + pix[i + 1]) / 2 for i in range(len(t) - 1))
    area_tgt = sum((t[i + 1] - t[i]) * (tgt[i] + tgt[i + 1]) / 2 for i in range(len(t) - 1))
    span = t[-1] - t[0]
    return 100 * (area_pix / span + area_tgt / span) / 2
