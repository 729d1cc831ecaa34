"""The five layer types of OpenFace's CNNs, as small pure functions.

Feature maps are float32 arrays laid out planar, (C, N, H, W): C maps, each
holding a batch of N images. Flattened activations are (N, F).

Every dot product is computed by the compiled kernels (`native`, whose loops
are kernels.py), in the exact order of operations
of the C++ reference build (../shared/docs/openface-mtcnn.md, section 4):
the result depends on the inputs alone, not on the CPU, the batch or any BLAS.
Convolutions are the C++'s sgemm, one FMA chain per output (two for ONet's
577-column layer); fully connected layers follow OpenCV's matrix product,
which uses BLAS (16 lanes) for 100 or more outputs and its own double
precision loop below that.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from . import native

# OpenCV hands a matrix product to BLAS (float32) only when the result has at
# least this many rows; smaller products it computes itself, accumulating in
# double. For our FC layers the result's rows are the layer's outputs.
OPENCV_BLAS_MIN_ROWS = 100
# OpenBLAS's sgemm: products of at most this many multiply-adds (m*n*k) take
# its small-matrix kernel (one chain per output); larger ones its blocked
# driver, which cuts long columns into blocks (see chain_blocks).
SMALL_GEMM_MAX = 1_000_000
GEMM_BLOCK = 448


def conv_weight_matrix(kernels_: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """kernels (C_in, C_out, kh, kw), biases (C_out,) -> (C_in*kw*kh + 1, C_out):
    a row per im2col column in the C++'s order (map, then kernel column, then
    kernel row), the biases as the last row."""
    c_in, c_out, kh, kw = kernels_.shape
    weights = kernels_.transpose(0, 3, 2, 1).reshape(c_in * kw * kh, c_out)
    return np.ascontiguousarray(np.vstack([weights, biases[None, :]]), np.float32)


@functools.lru_cache(maxsize=256)
def chain_blocks(n_out: int, n_pixels: int, n_cols: int) -> np.ndarray:
    """Where the C++'s sgemm starts a new chain over a convolution's K columns,
    for one image (or crop) of n_pixels outputs: [0, K] (one chain) for a
    small product or K <= 448; else blocks of 448 while 896 or more columns
    remain, then one of ((rest / 2 + 15) / 16) * 16, then the rest (ONet's
    577 columns: 288 + 289)."""
    bounds = [0]
    if n_out * n_pixels * n_cols > SMALL_GEMM_MAX:
        rest = n_cols
        while rest > GEMM_BLOCK:
            step = GEMM_BLOCK if rest >= 2 * GEMM_BLOCK else (rest // 2 + 15) // 16 * 16
            bounds.append(bounds[-1] + step)
            rest -= step
    bounds.append(n_cols)
    return np.array(bounds, np.int64)


def window_places(c: int, w: int, kh: int, kw: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each im2col column reads, relative to a window's top-left input, in
    maps of w values per image row: column c*kw*kh + kx*kh + ky reads map c at
    ky*w + kx. Returns (maps, places), int64 (C*kw*kh,) each."""
    ci, kx, ky = np.meshgrid(np.arange(c), np.arange(kw), np.arange(kh), indexing="ij")
    return ci.reshape(-1).astype(np.int64), (ky * w + kx).reshape(-1).astype(np.int64)


@functools.lru_cache(maxsize=256)
def conv_windows(c: int, w: int, kh: int, kw: int, n_out: int, n_pixels: int) -> native.ConvWindows:
    """window_places and chain_blocks, checked and ready for the kernel:
    the same for any number of images and rows (a batch's or a band's)."""
    maps, places = window_places(c, w, kh, kw)
    return native.ConvWindows(places, chain_blocks(n_out, n_pixels, c * kh * kw + 1), maps)


def conv(maps: np.ndarray, weight_matrix: np.ndarray | native.ConvWeights, kh: int, kw: int,
         slopes: np.ndarray | None = None) -> np.ndarray:
    """Valid cross-correlation, stride 1: (C, N, H, W) -> (C_out, N, H-kh+1, W-kw+1)
    (a view of a larger buffer: its rows are strided),
    followed by a PReLU when slopes (C_out,) are given (the same bits as
    prelu(conv(...)): both are exact per element). weight_matrix: from
    conv_weight_matrix, or a native.ConvWeights made of it (and of slopes) once."""
    c, n, h, w = maps.shape
    k, c_out = weight_matrix.shape
    if slopes is not None and np.shape(slopes) != (c_out,):
        raise ValueError(f"conv: {np.shape(slopes)} PReLU slopes for {c_out} output maps")
    if not isinstance(weight_matrix, native.ConvWeights) or slopes is not None:
        matrix = weight_matrix.matrix if isinstance(weight_matrix, native.ConvWeights) else weight_matrix
        weight_matrix = native.ConvWeights(matrix, slopes)
    if k != c * kh * kw + 1:
        raise ValueError(f"conv: weights {weight_matrix.shape} do not fit {c} maps {maps.shape} "
                         f"with {kh}x{kw} kernels")
    if h < kh or w < kw or n < 1:
        raise ValueError(f"conv: maps {maps.shape} smaller than the {kh}x{kw} kernel")
    oh, ow = h - kh + 1, w - kw + 1
    plane = n * h * w
    span = plane - (kh - 1) * w - (kw - 1)  # the last window's flat position + 1
    planes = np.ascontiguousarray(maps, np.float32).reshape(-1)
    out = np.empty((c_out, plane), np.float32)
    native.conv_chains(planes, weight_matrix, conv_windows(c, w, kh, kw, c_out, oh * ow), out[:, :span],
                       (h * w, (oh - 1) * w + ow), plane)  # each image's valid windows
    return out.reshape(c_out, n, h, w)[:, :, :oh, :ow]  # a view: pooling reads it in place


def prelu(maps: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """v if v >= 0 else v * slope, with a slope per map (the first axis of planar
    maps) or per feature (the last axis of flat (N, F) activations)."""
    slopes = np.asarray(slopes, np.float32).reshape(-1)
    channels = maps.shape[0] if maps.ndim == 4 else maps.shape[-1]
    if slopes.size != channels:
        raise ValueError(f"prelu: {slopes.size} slopes for {channels} channels {maps.shape}")
    s = slopes.reshape(-1, 1, 1, 1) if maps.ndim == 4 else slopes
    return np.where(maps >= 0, maps, maps * s).astype(np.float32, copy=False)


def pooled_size(size: int, kernel: int, stride: int) -> int:
    """Caffe-style: C round((size - kernel) / stride) + 1, halves away from zero."""
    q = (size - kernel) / stride  # the C++ divides in float: the same result below 2^23
    return int(math.copysign(math.floor(abs(q) + 0.5), q)) + 1


def max_pool(maps: np.ndarray, kx: int, ky: int, sx: int, sy: int) -> np.ndarray:
    """(C, N, H, W) -> (C, N, oh, ow). Windows start at multiples of the stride and
    are cut at the map's edge, so the last row/column may see a partial window.
    Separable: the max down each column of a window, then along the row.
    The maps may be a strided view (the valid part of conv's output)."""
    c, n, h, w = maps.shape
    oh, ow = pooled_size(h, ky, sy), pooled_size(w, kx, sx)
    if oh < 1 or ow < 1 or (oh - 1) * sy >= h or (ow - 1) * sx >= w:
        raise ValueError(f"max_pool: maps {maps.shape} do not fit a {kx}x{ky} window with stride {sx}x{sy}")
    if maps.dtype != np.float32 or maps.strides[-1] != 4 or min(maps.strides) < 0:
        maps = np.ascontiguousarray(maps, np.float32)
    return native.max_pool(maps, kx, ky, sx, sy, oh, ow)


def flatten(maps: np.ndarray) -> np.ndarray:
    """(C, N, H, W) -> (N, C*W*H): each map column by column (index c*H*W + x*H + y)."""
    return np.ascontiguousarray(maps.transpose(1, 0, 3, 2)).reshape(maps.shape[1], -1)


def fully_connected_weights(weights: np.ndarray) -> np.ndarray:
    """The weights as fully_connected computes with them: float32 for 100 or
    more outputs, else float64."""
    if weights.shape[1] >= OPENCV_BLAS_MIN_ROWS:
        if weights.shape[0] % native.LANES:
            raise ValueError(f"fully connected: {weights.shape[0]} inputs {weights.shape}, "
                             f"not a multiple of {native.LANES}")
        return np.ascontiguousarray(weights, np.float32)
    return np.ascontiguousarray(weights, np.float64)


def fully_connected(x: np.ndarray, weights: np.ndarray, biases: np.ndarray,
                    prepared: np.ndarray | None = None) -> np.ndarray:
    """Flattened input (N, F) -> (N, O): W.v + b for each of the N inputs, as
    OpenCV's matrix product computes it for one column: for O >= 100 through
    BLAS in float32 (16 lanes, bias added last), else accumulated in double
    with the bias added before the single rounding to float32. `prepared`:
    fully_connected_weights(weights), to skip that per call."""
    if x.ndim != 2 or x.shape[1] != weights.shape[0]:
        raise ValueError(f"fully connected: input {x.shape} does not fit weights {weights.shape}")
    prepared = fully_connected_weights(weights) if prepared is None else prepared
    x = np.ascontiguousarray(x, np.float32)
    biases = np.ascontiguousarray(biases, np.float32).reshape(-1)
    if weights.shape[1] >= OPENCV_BLAS_MIN_ROWS:
        return native.gemv_lanes(x, prepared, biases, np.empty((len(x), weights.shape[1]), np.float32))
    sums = native.sums_double(np.ascontiguousarray(x.T), prepared,
                               np.empty((weights.shape[1], len(x)), np.float64))  # (O, N)
    return (sums + biases.astype(np.float64)[:, None]).astype(np.float32).T.copy()


def fully_connected_maps(maps: np.ndarray, weights: np.ndarray, biases: np.ndarray,
                         prepared: np.ndarray | None = None) -> np.ndarray:
    """A fully connected layer whose input count equals the number of maps acts on
    every pixel (PNet's head): (C, N, H, W) -> (O, N, H, W). OpenCV's product
    (double, as O < 100) is rounded to float32, then the bias added in float32."""
    c, n, h, w = maps.shape
    if c != weights.shape[0]:
        raise ValueError(f"fully connected: {c} maps {maps.shape} do not fit weights {weights.shape}")
    if weights.shape[1] >= OPENCV_BLAS_MIN_ROWS:
        raise ValueError(f"fully connected over maps with {weights.shape[1]} outputs is not supported")
    prepared = fully_connected_weights(weights) if prepared is None else prepared
    columns = np.ascontiguousarray(maps, np.float32).reshape(c, -1)
    sums = native.sums_double(columns, prepared, np.empty((weights.shape[1], columns.shape[1]), np.float64))
    out = sums.astype(np.float32) + np.asarray(biases, np.float32).reshape(-1, 1)
    return out.reshape(-1, n, h, w)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-v)); unused by the MTCNN files, kept for format completeness."""
    from .cvexact import exp  # cvexact imports this module: the one function that needs it, late
    return (np.float32(1.0) / (np.float32(1.0) + exp(-x))).astype(np.float32)


def extend_edges(maps: np.ndarray, regions: list[tuple[int, int, int, int]], kx: int, ky: int) -> np.ndarray:
    """Copy each region's (y, x, h, w) last column into the kx - 1 columns to its
    right, then its last row (so widened) into the ky - 1 rows below, in (C, N, H, W)
    maps, in place: a pooling window that starts inside a region but reaches past
    it then sees the region's own edge values, which leaves its max unchanged, as
    if the window were cut at the edge. The regions must lie that far apart."""
    for y, x, h, w in regions:
        maps[:, :, y:y + h, x + w:x + w + kx - 1] = maps[:, :, y:y + h, x + w - 1:x + w]
        maps[:, :, y + h:y + h + ky - 1, x:x + w + kx - 1] = maps[:, :, y + h - 1:y + h, x:x + w + kx - 1]
    return maps
