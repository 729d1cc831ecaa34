"""Box arithmetic of the cascade, exactly as OpenFace's C++ performs it.

Boxes are float32 arrays (n, 4) of (x, y, width, height), as `cv::Rect_<float>`.
Where the C++ turns a box into an integer `cv::Rect`, each field is rounded to
nearest, halves to even (`cvRound`); plain C casts truncate toward zero. Values
the C++ keeps in a float are rounded to float32 at that point; expressions
with a double constant are evaluated in double first.
"""
from __future__ import annotations

import numpy as np

from . import native

F32, F64 = np.float32, np.float64

# PNet sees 12x12 windows; its maps are at half resolution (one 2x2 pooling).
FACE_SUPPORT = 12
PNET_STRIDE = 2

# OpenFace's final tightening of ONet's box around the facial landmarks.
TIGHTEN_X, TIGHTEN_Y, TIGHTEN_W, TIGHTEN_H = -0.0075, 0.2459, 1.0323, 0.7751


def empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), F32)


def to_int_rect(boxes: np.ndarray) -> np.ndarray:
    """cv::Rect_<float> -> cv::Rect: every field cvRound-ed. (n, 4) int64."""
    return np.rint(boxes).astype(np.int64)


def proposals(prob: np.ndarray, corrections: np.ndarray, scale: float, threshold: float):
    """PNet map -> candidate boxes, scanning columns (x) outside and rows (y) inside.

    prob (h, w) float32; corrections (4, h, w); scale the pyramid scale (double,
    used as a float32). Returns boxes (n, 4), scores (n,), corrections (n, 4)."""
    xs, ys = np.nonzero(prob.T >= F32(threshold))  # x-major scan order
    s = F32(scale)
    # int((2x + 1) / scale): an int divided by a float, truncated
    min_x = np.trunc((PNET_STRIDE * xs + 1).astype(F32) / s)
    max_x = np.trunc((PNET_STRIDE * xs + FACE_SUPPORT).astype(F32) / s)
    min_y = np.trunc((PNET_STRIDE * ys + 1).astype(F32) / s)
    max_y = np.trunc((PNET_STRIDE * ys + FACE_SUPPORT).astype(F32) / s)
    boxes = np.stack([min_x, min_y, max_x - min_x, max_y - min_y], axis=1).astype(F32)
    return boxes, prob[ys, xs], corrections[:, ys, xs].T.astype(F32)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, minimum: bool = False) -> np.ndarray:
    """Indices kept by non-maximum suppression, in the order they are selected.

    Candidates are ordered by score, equal scores in input order; the last one
    (highest score, latest among ties) is taken, and every remaining box whose
    overlap with it is strictly above the threshold is dropped; repeat. Overlap
    uses the boxes as integer rects: the integer intersection area (empty
    unless both sides are positive) over the union (a1 + a2 - inter, in float)
    or, with `minimum`, over the smaller area (native.nms, compiled).

    Equivalently: walk the candidates from the highest score down, keep each one
    not yet dropped, and drop every later one it overlaps."""
    order = np.ascontiguousarray(np.argsort(scores, kind="stable")[::-1], np.int64)  # selection order
    return native.nms(np.ascontiguousarray(to_int_rect(boxes)), order, F32(threshold), minimum)


def apply_correction(boxes: np.ndarray, corrections: np.ndarray, add1: bool) -> np.ndarray:
    """Shift each box's edges by its regression output, relative to its size.

    The box is first rounded to an integer rect (and grown by one pixel with
    add1); the new corners are computed in float32."""
    r = to_int_rect(boxes)
    x, y, w, h = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
    if add1:
        w, h = w + 1, h + 1
    wf, hf = w.astype(F32), h.astype(F32)
    cx, cy, cw, ch = (corrections[:, k].astype(F32) for k in range(4))
    x1 = x.astype(F32) + cx * wf
    y1 = y.astype(F32) + cy * hf
    x2 = (x + w).astype(F32) + wf * cw
    y2 = (y + h).astype(F32) + hf * ch
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).astype(F32)


def rectify(boxes: np.ndarray) -> np.ndarray:
    """Make each box a square of side max(w, h) around the same centre, with
    every field truncated to an integer (still stored as float32)."""
    x, y, w, h = (boxes[:, k].astype(F32) for k in range(4))
    side = np.maximum(w, h)
    # x + 0.5 * (w - side): the difference in float, the rest in double, stored as float
    new_x = (x.astype(F64) + 0.5 * (w - side).astype(F64)).astype(F32)
    new_y = (y.astype(F64) + 0.5 * (h - side).astype(F64)).astype(F32)
    return np.stack([np.trunc(new_x), np.trunc(new_y), np.trunc(side), np.trunc(side)], axis=1).astype(F32)


def tighten(boxes: np.ndarray) -> np.ndarray:
    """OpenFace's final adjustment of ONet's boxes (double constants, float results)."""
    x, y, w, h = (boxes[:, k].astype(F64) for k in range(4))
    return np.stack([
        (w * TIGHTEN_X + x).astype(F32),
        (h * TIGHTEN_Y + y).astype(F32),
        (TIGHTEN_W * w).astype(F32),
        (TIGHTEN_H * h).astype(F32),
    ], axis=1)

