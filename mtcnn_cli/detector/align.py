"""Aligned face crops: what to do with a face once it is found.

OpenFace's FeatureExtraction also writes aligned faces (a similarity
transform from its 68 tracked landmarks onto a fixed template); here the
five points ONet gives are enough for the two crops face-recognition models
take:

  - "arcface": the similarity (rotation, uniform scale, translation; no
    reflection) that best maps the five landmarks onto ArcFace's 112 x 112
    template (insightface's five points), found by least squares (Umeyama,
    1991);
  - "box": the detector's box squared about its centre, optionally grown by a
    margin, scaled onto the crop.

A matrix is a (2, 3) float64 affine map from image coordinates (x right, y
down, the landmarks' and boxes' own coordinates) to crop coordinates:
[u, v] = M @ [x, y, 1]. `crop` samples the image through it with OpenCV's
warpAffine (bilinear, zeros outside the image).
"""
from __future__ import annotations

import cv2
import numpy as np

ARCFACE_SIZE = 112
# The five points of ArcFace's 112 x 112 crop, in the landmarks' order: the eye
# on the image's left, the eye on the image's right, the nose tip, the mouth
# corner on the image's left, the mouth corner on the image's right.
ARCFACE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
], dtype=np.float64)
ARCFACE_112.setflags(write=False)

STYLES = ("arcface", "box")


def _points(points, name: str) -> np.ndarray:
    """Any (n, 2) sequence of finite numbers -> float64 (n, 2)."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or len(array) < 2:
        raise ValueError(f"{name} must be n >= 2 (x, y) points, shape (n, 2); got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has a non-finite coordinate")
    return array


def _matrix(matrix) -> np.ndarray:
    array = np.asarray(matrix, dtype=np.float64)
    if array.shape != (2, 3) or not np.all(np.isfinite(array)):
        raise ValueError(f"matrix must be a finite (2, 3) affine matrix, got shape {array.shape}")
    return array


def similarity(src, dst) -> np.ndarray:
    """src (n, 2), dst (n, 2), n >= 2 -> (2, 3) float64 [s R | t]: the rotation
    R (no reflection), scale s > 0 and translation t minimising
    sum_i |s R src_i + t - dst_i|^2 (Umeyama 1991). In two dimensions his SVD
    solution has a closed form: with both point sets centred on their means
    (p_i, q_i), s R = [[a, -b], [b, a]] where a = sum p_i . q_i / sum |p_i|^2
    and b = sum p_i x q_i / sum |p_i|^2 (x: the 2-D cross product); then t
    maps src's mean onto dst's. Raises ValueError when src's points all
    coincide."""
    src, dst = _points(src, "src"), _points(dst, "dst")
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have as many points, got {len(src)} and {len(dst)}")
    n = len(src)
    src, dst = src.tolist(), dst.tolist()  # a few points: plain floats are faster than numpy's calls
    sx, sy = sum(p[0] for p in src) / n, sum(p[1] for p in src) / n
    dx, dy = sum(q[0] for q in dst) / n, sum(q[1] for q in dst) / n
    spread = dot = cross = 0.0
    for (px, py), (qx, qy) in zip(src, dst):
        px, py, qx, qy = px - sx, py - sy, qx - dx, qy - dy
        spread += px * px + py * py
        dot += px * qx + py * qy
        cross += px * qy - py * qx
    if not spread > 0:
        raise ValueError("src's points all coincide: no similarity is defined")
    a, b = dot / spread, cross / spread
    return np.array([[a, -b, dx - (a * sx - b * sy)], [b, a, dy - (b * sx + a * sy)]])


def transform(matrix, points) -> np.ndarray:
    """matrix (2, 3), points (n, 2) -> (n, 2): each point mapped as M @ [x, y, 1]."""
    m, p = _matrix(matrix), np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return p @ m[:, :2].T + m[:, 2]


def residual(matrix, src, dst) -> float:
    """matrix (2, 3), src (n, 2), dst (n, 2) -> the RMS distance, in dst's
    units, between the mapped src points and dst."""
    src, dst = _points(src, "src"), _points(dst, "dst")
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have as many points, got {len(src)} and {len(dst)}")
    gaps = transform(matrix, src) - dst
    return float(np.sqrt(np.mean(np.sum(gaps * gaps, axis=1))))


def check_crop(size, style: str = "arcface", margin=0.0) -> None:
    """Raises ValueError, one line, unless size is an integer >= 1, style one
    of STYLES and margin a finite number >= 0."""
    if style not in STYLES:
        raise ValueError(f"style must be 'arcface' or 'box', got {style!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be an integer >= 1 (pixels), got {size!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) \
            or not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a number >= 0 (a fraction of the crop's side), got {margin!r}")


def arcface_matrix(landmarks, size: int = ARCFACE_SIZE, margin: float = 0.0) -> np.ndarray:
    """landmarks (5, 2) in the detector's order -> (2, 3): the least-squares
    similarity onto ARCFACE_112 scaled by size / 112. margin > 0 shows more
    around the same alignment: the template shrunk by 1 / (1 + margin) about
    the crop's centre (margin 0: ArcFace's own crop)."""
    check_crop(size, "arcface", margin)
    landmarks = _points(landmarks, "landmarks")
    if landmarks.shape != (5, 2):
        raise ValueError(f"landmarks must be the five points, shape (5, 2); got shape {landmarks.shape}")
    centre = size / 2.0
    template = (ARCFACE_112 * (size / ARCFACE_SIZE) - centre) / (1.0 + margin) + centre
    return similarity(landmarks, template)


def box_matrix(face, size: int, margin: float = 0.0) -> np.ndarray:
    """face: anything with box = (x, y, width, height) -> (2, 3): the box squared
    about its centre (side = max(width, height)), grown by margin * side,
    its top-left corner mapped to (0, 0) and its side onto size."""
    check_crop(size, "box", margin)
    x, y, width, height = (float(v) for v in face.box)
    side = max(width, height) * (1.0 + margin)
    if not (np.isfinite(side) and side > 0 and np.isfinite(x) and np.isfinite(y)):
        raise ValueError(f"the box {face.box} has no extent to crop")
    k = size / side
    left, top = x + width / 2.0 - side / 2.0, y + height / 2.0 - side / 2.0
    return np.array([[k, 0.0, -k * left], [0.0, k, -k * top]])


def face_matrix(face, size: int = ARCFACE_SIZE, style: str = "arcface", margin: float = 0.0) -> np.ndarray:
    """The (2, 3) matrix of a Face's crop in the given style (see the module)."""
    check_crop(size, style, margin)
    if style == "box":
        return box_matrix(face, size, margin)
    if not face.landmarks:
        raise ValueError("this face has no landmarks (detected without them): style='arcface' needs "
                         "the five points; use style='box'")
    return arcface_matrix(face.landmarks, size, margin)


def crop(image: np.ndarray, matrix, size: int) -> np.ndarray:
    """image (H, W) or (H, W, C), any channel count and a dtype OpenCV warps ->
    (size, size) or (size, size, C), same dtype and channel order: the
    image sampled through matrix (image -> crop coordinates) by
    cv2.warpAffine, bilinear, zeros where the crop falls outside the image."""
    check_crop(size)
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"image must be H x W or H x W x C and not empty; got shape {image.shape}")
    matrix = _matrix(matrix)
    channels = image.shape[2] if image.ndim == 3 else 1
    if channels in WARPED_TOGETHER:
        return _warp(image, matrix, size).reshape((size, size) + image.shape[2:])
    return np.dstack([_warp(image[:, :, c], matrix, size) for c in range(channels)])


# OpenCV 4.x warps 1, 3 and 4 channels as exact bilinear interpolation (to
# float32 rounding), but 2 and more than 4 channels through another path that
# is off by up to 2.4 levels (in 0..255) from it: those are warped a channel at
# a time, so that a channel's crop does not depend on the others beside it.
WARPED_TOGETHER = (1, 3, 4)


def _warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (int(size), int(size)),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
