"""Per-image engine: pixel counts and target matching at T thresholds from one pass.

Used by :func:`irfoundry.metrics.functional.image_counts`; not part of the public API.

Pixel counts
    Each pixel gets a *level* ``lev = #{k : p > t_k}`` (``np.searchsorted(t, p, side="left")``,
    thresholds ascending). The pixel is foreground at threshold ``t_k`` iff ``lev > k``, which is
    exactly ``p > t_k`` evaluated in float64. Histograms of ``lev`` over all pixels and over GT pixels,
    summed from the top (a cumulative histogram), give TP/FP/FN/TN at every threshold.

Components (the sweep)
    Superlevel sets are nested: a component at ``t_k`` is a union of components at ``t_{k+1}`` plus the
    pixels whose level is exactly ``k + 1``. The sweep walks the thresholds from the highest to the
    lowest and keeps a union-find forest of components. At each level it takes the new pixels and the new
    neighbour edges (an edge joins two 4- or 8-neighbours and appears at the lower of their two levels),
    builds a small graph whose nodes are the new pixels and the existing components those edges touch,
    and merges it with ``scipy.sparse.csgraph.connected_components`` (C speed). A merged component's
    statistics are sums of its parts: pixel count, sum of rows, sum of columns, overlap counts with each
    GT component, and the *minimum raster index* of its pixels.

Order of predicted components
    ``scipy.ndimage.label`` and ``skimage.measure.label`` number components in raster order of their
    first pixel. The first pixel in raster order of a component is its minimum raster index, so sorting
    the live components by the tracked minimum reproduces their label order at every threshold; the
    DNANet greedy rule ("for each GT component in label order, the first still-unmatched predicted
    component in label order whose centroid lies at distance < r") is then applied to that order.
    Centroids are ``sum / count`` in float64 (the same correctly rounded value as the mean of the
    integer coordinates) and distances are ``sqrt(dy * dy + dx * dx)``.

Matching is evaluated only at levels where pixels were added; other thresholds copy the result of the
next higher threshold, whose component set is identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize, sparse
from scipy.sparse import csgraph

__all__ = ["ImageCounts", "sweep_image"]

_BIG = 1.0e12


@dataclass
class ImageCounts:
    """Counters of one image at ``T`` thresholds (all arrays have shape ``(T,)``).

    Pixel counters: ``tp``, ``fp``, ``fn``, ``tn`` (int64). Target counters: ``hits`` (matched GT/pred
    pairs), ``n_pred`` (predicted components), ``fa_pixels`` (pixels of unmatched predicted components,
    int64), ``pair_iou_sum`` (sum over matched pairs of the pair's pixel IoU, float64). Scalars:
    ``n_gt`` (GT components), ``n_pixels`` (H * W). Target counters are zero when targets were skipped.
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    hits: np.ndarray
    n_pred: np.ndarray
    fa_pixels: np.ndarray
    pair_iou_sum: np.ndarray
    n_gt: int
    n_pixels: int


def _structure(connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Roots of component ids ``x`` (vectorised pointer jumping, with path compression)."""
    r = parent[x]
    while True:
        rr = parent[r]
        if np.array_equal(rr, r):
            break
        r = rr
    parent[x] = r
    return r


_SMALL_GRAPH = 64


def _connected(n_nodes: int, u: np.ndarray, v: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of an undirected graph given as edge arrays; labels ``(n_nodes,)``.

    Small graphs use a plain union-find (cheaper than building a sparse matrix); larger ones
    ``scipy.sparse.csgraph.connected_components``. Group numbering is irrelevant to the callers.
    """
    if u.size == 0:
        return n_nodes, np.arange(n_nodes)
    if u.size <= _SMALL_GRAPH:
        par = list(range(n_nodes))
        for a, b in zip(u.tolist(), v.tolist()):
            while par[a] != a:
                a = par[a]
            while par[b] != b:
                b = par[b]
            if a != b:
                par[max(a, b)] = min(a, b)
        roots = np.empty(n_nodes, dtype=np.int64)
        for i in range(n_nodes):
            r = i
            while par[r] != r:
                r = par[r]
            roots[i] = r
        uniq, grp = np.unique(roots, return_inverse=True)
        return int(uniq.size), grp
    graph = sparse.coo_matrix((np.ones(u.size, dtype=np.int8), (u, v)), shape=(n_nodes, n_nodes)).tocsr()
    n_grp, grp = csgraph.connected_components(graph, directed=False)
    return int(n_grp), grp


def _match(
    dist: np.ndarray,
    pair_iou: np.ndarray,
    *,
    matching: str,
    distance: float,
    overlap_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Match GT rows to predicted columns (columns in label order). Returns (gt_idx, pred_idx)."""
    n_gt, n_pred = dist.shape
    valid = dist < distance
    if matching == "greedy":
        used = np.zeros(n_pred, dtype=bool)
        rows, cols = [], []
        for g in range(n_gt):
            cand = np.flatnonzero(valid[g] & ~used)
            if cand.size:
                used[cand[0]] = True
                rows.append(g)
                cols.append(int(cand[0]))
        return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if matching == "hungarian":
        if not valid.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        cost = np.where(valid, dist, _BIG)
        r, c = optimize.linear_sum_assignment(cost)
        keep = valid[r, c]
        return r[keep].astype(np.int64), c[keep].astype(np.int64)
    # "overlap": overlap-first then distance compensation (OPDC, PyIRSTDMetrics).
    matched = np.zeros((n_gt, n_pred), dtype=bool)
    valid_iou = pair_iou >= overlap_threshold
    if valid_iou.any():
        r, c = optimize.linear_sum_assignment(dist)
        matched[r, c] = True
        matched &= valid_iou
    if valid.any():
        ur = np.flatnonzero(~matched.any(axis=1))
        uc = np.flatnonzero(~matched.any(axis=0))
        if ur.size and uc.size:
            r, c = optimize.linear_sum_assignment(dist[np.ix_(ur, uc)])
            ok = valid[ur[r], uc[c]]
            matched[ur[r[ok]], uc[c[ok]]] = True
    r, c = np.nonzero(matched)
    return r.astype(np.int64), c.astype(np.int64)


def _evaluate(
    cnt: np.ndarray,
    sy: np.ndarray,
    sx: np.ndarray,
    inter: np.ndarray,
    fg_total: int,
    gstats: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    *,
    matching: str,
    distance: float,
    overlap_threshold: float,
    legacy_area_match: bool,
) -> tuple[int, int, float]:
    """(hits, false-alarm pixels, sum of matched pairs' IoU) for predicted components in label order.

    ``cnt, sy, sx``: ``(P,)`` pixel count, sum of rows, sum of columns; ``inter``: ``(P, G)`` overlap
    with each GT component; ``fg_total``: foreground pixels; ``gstats``: GT (count, row centroid,
    column centroid) or ``None`` when the image has no GT component.
    """
    if gstats is None or cnt.size == 0:
        return 0, int(fg_total), 0.0
    g_cnt, g_cy, g_cx = gstats
    pc = cnt.astype(np.float64)
    dy = g_cy[:, None] - (sy / pc)[None, :]
    dx = g_cx[:, None] - (sx / pc)[None, :]
    dist = np.sqrt(dy * dy + dx * dx)
    inter_gp = inter.T.astype(np.float64)  # (G, P)
    pair_iou = inter_gp / (g_cnt[:, None] + pc[None, :] - inter_gp)
    gi, pj = _match(dist, pair_iou, matching=matching, distance=distance, overlap_threshold=overlap_threshold)
    piou = float(pair_iou[gi, pj].sum()) if gi.size else 0.0
    if legacy_area_match:
        fa = int(cnt[~np.isin(cnt, cnt[pj])].sum())
    else:
        fa = int(fg_total) - int(cnt[pj].sum())
    return int(gi.size), fa, piou


def _label_crop(rows: np.ndarray, cols: np.ndarray, struct: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """Label the pixel set ``(rows, cols)`` inside its bounding box (cheaper than the full image).

    Returns ``(labels_crop, row0, col0, n)``. Raster order inside the box is raster order in the image,
    so label numbers follow the first pixel in image raster order, as a full-image labelling would.
    """
    if rows.size == 0:
        return np.zeros((1, 1), dtype=np.int32), 0, 0, 0
    r0, c0 = int(rows.min()), int(cols.min())
    crop = np.zeros((int(rows.max()) - r0 + 1, int(cols.max()) - c0 + 1), dtype=bool)
    crop[rows - r0, cols - c0] = True
    lab, n = ndimage.label(crop, structure=struct)
    return lab, r0, c0, int(n)


def _lookup(lab: np.ndarray, r0: int, c0: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Labels of a cropped labelling at image coordinates (0 outside the crop)."""
    r, c = rows - r0, cols - c0
    inside = (r >= 0) & (c >= 0) & (r < lab.shape[0]) & (c < lab.shape[1])
    out = np.zeros(rows.size, dtype=np.int64)
    out[inside] = lab[r[inside], c[inside]]
    return out


def sweep_image(
    prob: np.ndarray,
    gt: np.ndarray,
    thresholds: np.ndarray,
    *,
    connectivity: int,
    distance: float,
    matching: str,
    legacy_area_match: bool,
    overlap_threshold: float,
    targets: bool,
) -> ImageCounts:
    """Counters of one image. ``prob``: HxW float64 in [0, 1]; ``gt``: HxW bool; ``thresholds``:
    ``(T,)`` float64 strictly increasing. Arguments are validated by the caller."""
    h, w = prob.shape
    n_t = thresholds.shape[0]
    if n_t == 1:
        lev = (prob.ravel() > thresholds[0]).view(np.uint8)  # same as searchsorted for one threshold
    else:
        lev = np.searchsorted(thresholds, prob.ravel(), side="left")
    g_flat = gt.ravel()

    # ---- pixel counters from cumulative histograms
    hist_all = np.bincount(lev, minlength=n_t + 1)
    hist_pos = np.bincount(lev[g_flat], minlength=n_t + 1)
    above_all = np.cumsum(hist_all[::-1])[::-1]  # above_all[j] = #{lev >= j}
    above_pos = np.cumsum(hist_pos[::-1])[::-1]
    pred_fg = above_all[1:].astype(np.int64)  # pred_fg[k] = #{lev > k} = #{p > t_k}
    tp = above_pos[1:].astype(np.int64)
    n_pos = int(g_flat.sum())
    fp = pred_fg - tp
    fn = n_pos - tp
    tn = h * w - tp - fp - fn

    zeros_i = np.zeros(n_t, dtype=np.int64)
    hits = zeros_i.copy()
    n_pred = zeros_i.copy()
    fa = zeros_i.copy()
    piou = np.zeros(n_t, dtype=np.float64)
    n_gt = 0
    if not targets:
        return ImageCounts(tp, fp, fn, tn, hits, n_pred, fa, piou, 0, h * w)

    struct = _structure(connectivity)
    g_idx = np.flatnonzero(g_flat)
    rr, cc = np.divmod(g_idx, w)
    gcrop, gr0, gc0, n_gt = _label_crop(rr, cc, struct)
    gstats = None
    if n_gt:
        gl = gcrop[rr - gr0, cc - gc0]
        g_cnt = np.bincount(gl, minlength=n_gt + 1)[1:].astype(np.float64)
        g_cy = np.bincount(gl, weights=rr, minlength=n_gt + 1)[1:] / g_cnt
        g_cx = np.bincount(gl, weights=cc, minlength=n_gt + 1)[1:] / g_cnt
        gstats = (g_cnt, g_cy, g_cx)
    match_kw = dict(
        matching=matching,
        distance=distance,
        overlap_threshold=overlap_threshold,
        legacy_area_match=legacy_area_match,
    )

    act = np.flatnonzero(lev > 0)  # raster order
    n_act = act.size
    if n_act == 0:
        return ImageCounts(tp, fp, fn, tn, hits, n_pred, fa, piou, int(n_gt), h * w)

    if n_t == 1:
        # one threshold: a single C labelling (labels already in raster order of first pixel)
        a_row, a_col = np.divmod(act, w)
        pcrop, pr0, pc0, n_p = _label_crop(a_row, a_col, struct)
        pl = pcrop[a_row - pr0, a_col - pc0]
        cnt1 = np.bincount(pl, minlength=n_p + 1)[1:]
        sy1 = np.bincount(pl, weights=a_row, minlength=n_p + 1)[1:].astype(np.int64)
        sx1 = np.bincount(pl, weights=a_col, minlength=n_p + 1)[1:].astype(np.int64)
        a_gt = _lookup(gcrop, gr0, gc0, a_row, a_col)
        ng1 = max(n_gt, 1)
        inter1 = np.bincount(
            (pl - 1) * ng1 + np.maximum(a_gt - 1, 0), weights=(a_gt > 0), minlength=n_p * ng1
        ).reshape(n_p, ng1).astype(np.int64)
        n_pred[0] = n_p
        hits[0], fa[0], piou[0] = _evaluate(cnt1, sy1, sx1, inter1, int(n_act), gstats, **match_kw)
        return ImageCounts(tp, fp, fn, tn, hits, n_pred, fa, piou, int(n_gt), h * w)

    lev_a = lev[act]
    a_row, a_col = np.divmod(act, w)
    a_gt = _lookup(gcrop, gr0, gc0, a_row, a_col)  # 0 = background, else GT component label

    # neighbour edges between active pixels (forward offsets only)
    pos = np.full(h * w, -1, dtype=np.int64)
    pos[act] = np.arange(n_act)
    # only the bounding box of the active pixels can hold edges
    pos2 = pos.reshape(h, w)[a_row.min() : a_row.max() + 1, a_col.min() : a_col.max() + 1]
    pairs = [(pos2[:, :-1], pos2[:, 1:]), (pos2[:-1, :], pos2[1:, :])]
    if connectivity == 8:
        pairs += [(pos2[:-1, :-1], pos2[1:, 1:]), (pos2[:-1, 1:], pos2[1:, :-1])]
    eu_l, ev_l = [], []
    for a, b in pairs:
        m = (a >= 0) & (b >= 0)
        eu_l.append(a[m])
        ev_l.append(b[m])
    eu = np.concatenate(eu_l)
    ev = np.concatenate(ev_l)
    ew = np.minimum(lev_a[eu], lev_a[ev])

    # bucket pixels and edges by level (levels 1..T)
    p_order = np.argsort(lev_a, kind="stable")
    p_bounds = np.searchsorted(lev_a[p_order], np.arange(n_t + 2), side="left")
    e_order = np.argsort(ew, kind="stable")
    e_bounds = np.searchsorted(ew[e_order], np.arange(n_t + 2), side="left")

    # component arrays (at most one new component per active pixel)
    cnt = np.zeros(n_act, dtype=np.int64)
    sy = np.zeros(n_act, dtype=np.int64)
    sx = np.zeros(n_act, dtype=np.int64)
    mn = np.zeros(n_act, dtype=np.int64)
    parent = np.arange(n_act, dtype=np.int64)
    alive = np.zeros(n_act, dtype=bool)
    inter = np.zeros((n_act, max(n_gt, 1)), dtype=np.int64)
    pix_comp = np.full(n_act, -1, dtype=np.int64)
    local = np.zeros(n_act, dtype=np.int64)
    n_ids = 0
    fg_total = 0
    have_state = False
    big = np.iinfo(np.int64).max

    for k in range(n_t - 1, -1, -1):
        v = k + 1
        new_pix = p_order[p_bounds[v] : p_bounds[v + 1]]
        m_new = new_pix.size
        if m_new == 0:
            if have_state:
                hits[k], n_pred[k], fa[k], piou[k] = hits[k + 1], n_pred[k + 1], fa[k + 1], piou[k + 1]
            continue
        have_state = True
        edges = e_order[e_bounds[v] : e_bounds[v + 1]]
        u, x = eu[edges], ev[edges]
        local[new_pix] = np.arange(m_new)
        # endpoints: new pixels map to their local node; old pixels map to their component's root
        nodes_u = np.empty(u.size, dtype=np.int64)
        nodes_x = np.empty(x.size, dtype=np.int64)
        new_u = lev_a[u] == v
        new_x = lev_a[x] == v
        nodes_u[new_u] = local[u[new_u]]
        nodes_x[new_x] = local[x[new_x]]
        old_pix = np.concatenate([u[~new_u], x[~new_x]])
        if old_pix.size:
            roots = _find(parent, pix_comp[old_pix])
            old_roots, inv = np.unique(roots, return_inverse=True)
            n_old_u = int((~new_u).sum())
            nodes_u[~new_u] = m_new + inv[:n_old_u]
            nodes_x[~new_x] = m_new + inv[n_old_u:]
        else:
            old_roots = np.zeros(0, dtype=np.int64)
        n_nodes = m_new + old_roots.size
        n_grp, grp = _connected(n_nodes, nodes_u, nodes_x)
        grp_new, grp_old = grp[:m_new], grp[m_new:]
        ids = n_ids + np.arange(n_grp)

        c = np.bincount(grp_new, minlength=n_grp).astype(np.int64)
        y = np.bincount(grp_new, weights=a_row[new_pix], minlength=n_grp)
        xx = np.bincount(grp_new, weights=a_col[new_pix], minlength=n_grp)
        mnv = np.full(n_grp, big, dtype=np.int64)
        np.minimum.at(mnv, grp_new, act[new_pix])
        it = np.zeros((n_grp, inter.shape[1]), dtype=np.int64)
        on_gt = a_gt[new_pix] > 0
        if on_gt.any():
            np.add.at(it, (grp_new[on_gt], a_gt[new_pix][on_gt] - 1), 1)
        if old_roots.size:
            c += np.bincount(grp_old, weights=cnt[old_roots], minlength=n_grp).astype(np.int64)
            y += np.bincount(grp_old, weights=sy[old_roots], minlength=n_grp)
            xx += np.bincount(grp_old, weights=sx[old_roots], minlength=n_grp)
            np.minimum.at(mnv, grp_old, mn[old_roots])
            np.add.at(it, grp_old, inter[old_roots])
            parent[old_roots] = ids[grp_old]
            alive[old_roots] = False
        cnt[ids] = c
        sy[ids] = y.astype(np.int64)
        sx[ids] = xx.astype(np.int64)
        mn[ids] = mnv
        inter[ids] = it
        alive[ids] = True
        pix_comp[new_pix] = ids[grp_new]
        n_ids += n_grp
        fg_total += m_new

        # ---- evaluate the matching at threshold k
        live = np.flatnonzero(alive[:n_ids])
        live = live[np.argsort(mn[live], kind="stable")]  # label order
        n_pred[k] = live.size
        hits[k], fa[k], piou[k] = _evaluate(
            cnt[live], sy[live], sx[live], inter[live], fg_total, gstats, **match_kw
        )

    return ImageCounts(tp, fp, fn, tn, hits, n_pred, fa, piou, int(n_gt), h * w)
