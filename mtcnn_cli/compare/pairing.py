"""Pairing the faces of one image one-to-one: the optimal assignment on IoU
(scipy's linear_sum_assignment) over each group of overlapping faces."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boxes a (n, 4) and b (m, 4) as x, y, width, height -> IoU (n, m), in float64.
    Two equal boxes of no area overlap fully (1), so that equal sets always pair."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    w = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h  # (n, m)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    equal = np.all(a[:, None, :] == b[None, :, :], axis=2)  # (n, m)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), equal.astype(np.float64))


def min_cost_assignment(cost: np.ndarray) -> np.ndarray:
    """cost (n, m), finite -> (min(n, m), 2) int pairs of (row, column): every
    row matched when n <= m (else every column), with the least total cost
    (scipy's linear_sum_assignment), in row order."""
    rows, cols = linear_sum_assignment(cost)
    return np.stack([rows, cols], axis=1).reshape(-1, 2)


OVERLAP_BLOCK = 1 << 20  # IoU entries computed at a time (8 MB of float64)


def pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a[k] and b[k] (k, 4) as x, y, width, height, float64, with
    the arithmetic of iou_matrix (equal boxes of no area overlap fully)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    w = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    equal = np.all(a == b, axis=1)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), equal.astype(np.float64))


def overlaps(a: np.ndarray, b: np.ndarray):
    """The pairs of boxes a (n, 4) and b (m, 4) that overlap (IoU > 0): rows
    (E,), columns (E,) and IoUs (E,), in row-major order. Only the pairs whose
    x ranges meet are computed (b sorted by x, a window per box of a), in
    chunks of at most OVERLAP_BLOCK pairs: time and memory follow the pairs
    that can overlap, not n * m."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    order = np.argsort(b64[:, 0], kind="stable")
    bx = b64[order, 0]
    reach = float(b64[:, 2].max()) if len(b64) else 0.0
    lo = np.searchsorted(bx, a64[:, 0] - reach, "left")
    hi = np.searchsorted(bx, a64[:, 0] + a64[:, 2], "right")
    counts = hi - lo
    rows, cols, values = [], [], []
    start, n = 0, len(a64)
    while start < n:
        stop = start + 1 + int(np.searchsorted(np.cumsum(counts[start:]), OVERLAP_BLOCK, "right"))
        stop = min(stop, n)
        chunk = counts[start:stop]
        r = np.repeat(np.arange(start, stop), chunk)
        first = np.cumsum(chunk) - chunk
        c = order[np.arange(len(r)) - np.repeat(first, chunk) + np.repeat(lo[start:stop], chunk)]
        iou = pair_iou(a64[r], b64[c])
        keep = iou > 0
        rows.append(r[keep])
        cols.append(c[keep])
        values.append(iou[keep])
        start = stop
    if not rows:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    rows, cols, values = np.concatenate(rows), np.concatenate(cols), np.concatenate(values)
    at = np.lexsort((cols, rows))
    return rows[at], cols[at], values[at]


def components(n: int, m: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Connected components of the bipartite overlap graph (rows 0..n-1,
    columns n..n+m-1): a label per edge, by vectorised label propagation."""
    label = np.arange(n + m)
    u, v = rows, cols + n
    while True:
        low = np.minimum(label[u], label[v])
        before = label.copy()
        np.minimum.at(label, u, low)
        np.minimum.at(label, v, low)
        label = label[label]  # pointer jumping
        if np.array_equal(label, before):
            return label[u]


def assign_overlaps(n: int, m: int, rows, cols, values) -> np.ndarray:
    """The one-to-one pairs (k, 2) with the largest total IoU among the
    overlapping pairs: each connected group of overlapping faces is solved
    on its own (an optimal assignment on its small matrix), a face that
    overlaps exactly one face, which overlaps only it, is paired at once."""
    if not len(rows):
        return np.zeros((0, 2), int)
    row_degree, col_degree = np.bincount(rows, minlength=n), np.bincount(cols, minlength=m)
    alone = (row_degree[rows] == 1) & (col_degree[cols] == 1)
    found = [np.stack([rows[alone], cols[alone]], axis=1)]
    rest = ~alone
    if rest.any():
        r, c, v = rows[rest], cols[rest], values[rest]
        group = components(n, m, r, c)
        order = np.argsort(group, kind="stable")
        r, c, v, group = r[order], c[order], v[order], group[order]
        bounds = np.flatnonzero(np.diff(group)) + 1
        for gr, gc, gv in zip(np.split(r, bounds), np.split(c, bounds), np.split(v, bounds)):
            row_ids, row_at = np.unique(gr, return_inverse=True)
            col_ids, col_at = np.unique(gc, return_inverse=True)
            cost = np.zeros((len(row_ids), len(col_ids)))
            cost[row_at, col_at] = -gv
            sub = min_cost_assignment(cost)
            sub = sub[cost[sub[:, 0], sub[:, 1]] < 0]  # pairs that overlap
            found.append(np.stack([row_ids[sub[:, 0]], col_ids[sub[:, 1]]], axis=1))
    pairs = np.concatenate(found).reshape(-1, 2)
    return pairs[np.argsort(pairs[:, 0], kind="stable")]


def pair_faces(ref: np.ndarray, ours: np.ndarray):
    """Faces (n, >=4) and (m, >=4) -> pairs (k, 2) of (ref index, our index) with
    the largest total IoU, their IoUs (k,), and the unpaired ref and our indices.
    Faces that overlap nothing of the other side are never paired. Only the
    overlapping pairs are kept and solved, group by group: 5,000 faces a side
    take well under a second."""
    n, m = len(ref), len(ours)
    rows, cols, values = overlaps(ref[:, :4], ours[:, :4]) if n and m else \
        (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    pairs = assign_overlaps(n, m, rows, cols, values)
    if len(pairs):
        key = rows * m + cols  # ascending: overlaps are in row-major order
        ious = values[np.searchsorted(key, pairs[:, 0] * m + pairs[:, 1])]
    else:
        ious = np.zeros(0)
    paired_ref, paired_ours = np.zeros(n, bool), np.zeros(m, bool)
    paired_ref[pairs[:, 0]] = True
    paired_ours[pairs[:, 1]] = True
    return pairs, ious, np.flatnonzero(~paired_ref), np.flatnonzero(~paired_ours)
