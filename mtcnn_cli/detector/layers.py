"""The five layer types of OpenFace's CNNs, as small pure numpy functions.

Feature maps are float32 arrays laid out (N, H, W, C): a batch of N images,
channels last. A convolution is one GEMM of im2col (a row per output pixel) by
the weight matrix, exactly the product the C++ hands to BLAS, and its result
is already in that layout. Flattened activations are (N, F).

The arithmetic reproduces the C++ bit for bit: convolutions are float32 GEMMs
whose every output is one FMA chain over the im2col columns in the C++'s
order, bias last (what OpenBLAS's gemm kernels compute); fully connected
layers follow OpenCV's matrix product, which uses BLAS for large results and
its own double-precision loop for small ones.
"""
from __future__ import annotations

import math

import numpy as np

# OpenCV hands a matrix product to BLAS (float32) only when the result has at
# least this many rows; smaller products it computes itself, accumulating in
# double. For our FC layers the result's rows are the layer's outputs.
OPENCV_BLAS_MIN_ROWS = 100

# The C++'s BLAS (OpenBLAS 0.3.21, SkylakeX kernels) computes a matrix times a
# single column as 16 interleaved float32 FMA chains (input k goes to chain
# k mod 16), then adds the chains pairwise: (0+1), (2+3), ..., then those sums
# pairwise again, down to one. Measured against that library.
GEMV_LANES = 16


def sgemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 (..., M, K) @ (..., K, N), every output element one FMA chain
    over k in order, as OpenBLAS's gemm kernels compute it (checked against the
    C++'s OpenBLAS for our shapes, `a` contiguous or transposed). numpy's BLAS
    takes another route for a single row or column, so those are padded to two."""
    if a.shape[-2] == 1:
        return sgemm(np.concatenate([a, np.zeros_like(a)], axis=-2), b)[..., :1, :]
    if b.shape[-1] == 1:
        return sgemm(a, np.concatenate([b, np.zeros_like(b)], axis=-1))[..., :1]
    return a @ b


def im2col(maps: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """(N, H, W, C) -> (C*kw*kh + 1, N*oh*ow), the transpose of the C++'s im2col:
    a column per output pixel (row-major over y, x); rows per input map, the
    window read column by column (row c*kw*kh + kx*kh + ky), then a row of ones
    for the bias. Built transposed, in one copy from a strided view of the maps."""
    n, h, w, c = maps.shape
    oh, ow = h - kh + 1, w - kw + 1
    planes = np.ascontiguousarray(maps.transpose(3, 0, 1, 2))  # (C, N, H, W)
    sc, sn, sy, sx = planes.strides
    # windows[c, kx, ky, i, y, x] = planes[c, i, y + ky, x + kx]
    windows = np.ndarray((c, kw, kh, n, oh, ow), np.float32, planes, 0, (sc, sx, sy, sn, sy, sx))
    cols = np.empty((c * kw * kh + 1, n * oh * ow), np.float32)
    cols[:-1].reshape(c, kw, kh, n, oh, ow)[...] = windows
    cols[-1] = 1.0
    return cols


def conv_weight_matrix(kernels: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """kernels (C_in, C_out, kh, kw), biases (C_out,) -> (C_in*kw*kh + 1, C_out),
    rows in im2col's column order, the biases as the last row."""
    c_in, c_out, kh, kw = kernels.shape
    weights = kernels.transpose(0, 3, 2, 1).reshape(c_in * kw * kh, c_out)
    return np.ascontiguousarray(np.vstack([weights, biases[None, :]]), np.float32)


# Below this many input pixels, a single image is convolved through whole-row windows.
WRAPPED_CONV_MAX_PIXELS = 8192


def wrapped_im2col(maps: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """im2col of one (1, H, W, C) image over whole rows: a column for every pixel
    p = y*W + x up to the last window, valid or not, so that each row of the
    result is one contiguous run of a map (columns with x >= W - kw + 1 wrap
    around the row's end and are thrown away after the product). For small maps
    this beats im2col, whose runs are only W - kw + 1 long.
    Returns (C*kw*kh + 1, (H - kh)*W + W - kw + 1)."""
    _, h, w, c = maps.shape
    span = (h - kh) * w + w - kw + 1
    planes = np.ascontiguousarray(maps[0].transpose(2, 0, 1))  # (C, H, W)
    # windows[c, kx, ky, p] = planes[c].flat[p + ky*W + kx]
    windows = np.ndarray((c, kw, kh, span), np.float32, planes, 0, (planes.strides[0], 4, 4 * w, 4))
    cols = np.empty((c * kw * kh + 1, span), np.float32)
    cols[:-1].reshape(c, kw, kh, span)[...] = windows
    cols[-1] = 1.0
    return cols


def conv(maps: np.ndarray, weight_matrix: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Valid cross-correlation, stride 1: (N, H, W, C) -> (N, H-kh+1, W-kw+1, C_out)."""
    n, h, w, c = maps.shape
    if weight_matrix.shape[0] != c * kh * kw + 1:
        raise ValueError(f"conv: weights {weight_matrix.shape} do not fit {c} maps {maps.shape} "
                         f"with {kh}x{kw} kernels")
    if h < kh or w < kw:
        raise ValueError(f"conv: maps {maps.shape} smaller than the {kh}x{kw} kernel")
    oh, ow = h - kh + 1, w - kw + 1
    if n == 1 and h * w <= WRAPPED_CONV_MAX_PIXELS:
        out = np.ascontiguousarray(sgemm(wrapped_im2col(maps, kh, kw).T, weight_matrix))  # (span, C_out)
        c_out = out.shape[1]
        row = out.strides[0]  # every output (y, x) is row y*W + x
        valid = np.ndarray((1, oh, ow, c_out), np.float32, out, 0, (0, w * row, row, out.strides[1]))
        return np.ascontiguousarray(valid)
    out = sgemm(im2col(maps, kh, kw).T, weight_matrix)  # (N*oh*ow, C_out)
    return out.reshape(n, oh, ow, -1)


class SlopeRows(dict):
    """A PReLU's slopes, and those slopes repeated along a row of maps of each
    width met so far ({row length: repeated slopes}), made once per width."""

    def __init__(self, slopes: np.ndarray):
        super().__init__()
        self.slopes = np.ascontiguousarray(slopes, np.float32).reshape(-1)
        self.steep = tuple(int(k) for k in np.flatnonzero(self.slopes > 1))  # usually none, or one or two

    def __missing__(self, row: int) -> np.ndarray:
        repeated = np.tile(self.slopes, row // self.slopes.size)
        repeated.flags.writeable = False
        self[row] = repeated
        return repeated


def prelu(maps: np.ndarray, slopes) -> np.ndarray:
    """v if v >= 0 else v * slope, per channel (the last axis); slopes an array or
    SlopeRows. Works in place on contiguous maps.

    With t = v * slope (rounded): for a slope <= 1, max(v, t) is exactly that
    (t <= v when v >= 0, t >= v when v < 0, rounding being monotonic), and for
    a slope >= 1 so is min(v, t). Two passes instead of a select. The slopes are
    repeated along each row of maps, so that numpy's loops run over whole rows."""
    table = slopes if isinstance(slopes, SlopeRows) else SlopeRows(slopes)
    c = maps.shape[-1]
    if table.slopes.size != c:
        raise ValueError(f"prelu: {table.slopes.size} slopes for {c} channels {maps.shape}")
    maps = np.ascontiguousarray(maps)
    row = c * (maps.shape[-2] if maps.ndim > 2 else 1)
    rows = maps.reshape(-1, row)  # (N*H, W*C), a view
    scaled = rows * table[row]
    steep_values = [np.minimum(rows[:, k::c], scaled[:, k::c]) for k in table.steep]
    np.maximum(rows, scaled, out=rows)
    for k, values in zip(table.steep, steep_values):
        rows[:, k::c] = values
    return maps


def pooled_size(size: int, kernel: int, stride: int) -> int:
    """Caffe-style: C round((size - kernel) / stride) + 1, halves away from zero."""
    q = (size - kernel) / stride  # the C++ divides in float: the same result below 2^23
    return int(math.copysign(math.floor(abs(q) + 0.5), q)) + 1


def _window_max(maps: np.ndarray, axis: int, kernel: int, stride: int, count: int) -> np.ndarray:
    """Max over windows along one axis: `count` windows starting at multiples of
    the stride, each cut at the map's edge."""
    length = maps.shape[axis]
    lead = (slice(None),) * axis

    def at(offset: int, n: int):
        """Element `offset` of the first n windows (a strided view)."""
        return maps[lead + (slice(offset, offset + (n - 1) * stride + 1, stride),)]

    # how many windows reach each offset before the edge
    reach = [min(count, max(0, (length - 1 - offset) // stride + 1)) for offset in range(kernel)]
    if kernel > 1 and reach[1] == count:  # the usual case: no copy first
        out, start = np.maximum(at(0, count), at(1, count)), 2
    else:
        out, start = at(0, count).copy(), 1
    for offset in range(start, kernel):
        n = reach[offset]
        if n:
            first = out[lead + (slice(0, n),)]
            np.maximum(first, at(offset, n), out=first)
    return out


def max_pool(maps: np.ndarray, kx: int, ky: int, sx: int, sy: int) -> np.ndarray:
    """(N, H, W, C) -> (N, oh, ow, C). Windows start at multiples of the stride and
    are cut at the map's edge, so the last row/column may see a partial window.
    Separable: the max over columns first, then over rows."""
    n, h, w, c = maps.shape
    oh, ow = pooled_size(h, ky, sy), pooled_size(w, kx, sx)
    if oh < 1 or ow < 1 or (oh - 1) * sy >= h or (ow - 1) * sx >= w:
        raise ValueError(f"max_pool: maps {maps.shape} do not fit a {kx}x{ky} window with stride {sx}x{sy}")
    return _window_max(_window_max(maps, 2, kx, sx, ow), 1, ky, sy, oh)  # (N, H, ow, C) -> (N, oh, ow, C)


def flatten(maps: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C*W*H): each map column by column (index c*H*W + x*H + y)."""
    return np.ascontiguousarray(maps.transpose(0, 3, 2, 1)).reshape(len(maps), -1)


def lane_weights(weights: np.ndarray) -> np.ndarray:
    """(F, O) -> (16, F/16, O): the rows of each of the 16 chains of gemv_lanes."""
    f = weights.shape[0]
    if f % GEMV_LANES:
        raise ValueError(f"fully connected: {f} inputs {weights.shape}, not a multiple of {GEMV_LANES}")
    return np.ascontiguousarray(weights.reshape(f // GEMV_LANES, GEMV_LANES, -1).transpose(1, 0, 2))


def gemv_lanes(x: np.ndarray, lanes: np.ndarray) -> np.ndarray:
    """x (N, F) . weights -> float32 (N, O), summed as the C++'s BLAS sums a matrix
    times one column (see GEMV_LANES); `lanes` is lane_weights(weights). Each
    chain is itself a GEMM over every 16th input, so the work stays in BLAS."""
    n, f = x.shape
    if lanes.shape[0] * lanes.shape[1] != f:
        raise ValueError(f"fully connected: input {x.shape} does not fit weights in lanes {lanes.shape}")
    xs = np.ascontiguousarray(x.reshape(n, f // GEMV_LANES, GEMV_LANES).transpose(2, 0, 1))  # (16, N, F/16)
    chains = sgemm(xs, lanes)  # (16, N, O)
    while len(chains) > 1:
        chains = chains[0::2] + chains[1::2]
    return chains[0]


def fully_connected(x: np.ndarray, weights: np.ndarray, biases: np.ndarray,
                    prepared: np.ndarray | None = None) -> np.ndarray:
    """Flattened input (N, F) -> (N, O): W.v + b for each of the N inputs, as
    OpenCV's matrix product computes it for one column: through BLAS in float32
    for O >= 100 (bias added in float32), else accumulated in double with the
    bias added before the single rounding to float32. `prepared`: the weights
    as fully_connected_weights(weights) laid them out, to skip that per call."""
    if x.shape[1] != weights.shape[0]:
        raise ValueError(f"fully connected: input {x.shape} does not fit weights {weights.shape}")
    prepared = fully_connected_weights(weights) if prepared is None else prepared
    if weights.shape[1] >= OPENCV_BLAS_MIN_ROWS:
        return gemv_lanes(x, prepared) + biases.reshape(1, -1)
    sums = x.astype(np.float64) @ prepared
    return (sums + biases.reshape(1, -1)).astype(np.float32)


def fully_connected_weights(weights: np.ndarray) -> np.ndarray:
    """The weights as fully_connected computes with them: in 16 lanes (float32)
    for 100 or more outputs, else as float64."""
    if weights.shape[1] >= OPENCV_BLAS_MIN_ROWS:
        return lane_weights(weights)
    return weights.astype(np.float64)


def fully_connected_maps(maps: np.ndarray, weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """A fully connected layer whose input count equals the number of maps acts on
    every pixel (PNet's head): (N, H, W, C) -> (N, H, W, O). OpenCV's product
    (double, as O < 100) is rounded to float32, then the bias added in float32."""
    n, h, w, c = maps.shape
    if c != weights.shape[0]:
        raise ValueError(f"fully connected: {c} maps {maps.shape} do not fit weights {weights.shape}")
    if weights.shape[1] >= OPENCV_BLAS_MIN_ROWS:
        raise ValueError(f"fully connected over maps with {weights.shape[1]} outputs is not supported")
    sums = maps.reshape(-1, c).astype(np.float64) @ weights.astype(np.float64, copy=False)  # (N*H*W, O)
    out = sums.astype(np.float32) + biases.reshape(1, -1)
    return out.reshape(n, h, w, -1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-v)); unused by the MTCNN files, kept for format completeness."""
    from .cvexact import exp
    return (np.float32(1.0) / (np.float32(1.0) + exp(-x))).astype(np.float32)


def extend_edges(maps: np.ndarray, regions: list[tuple[int, int, int, int]], kx: int, ky: int) -> np.ndarray:
    """Copy each region's (y, x, h, w) last column into the kx - 1 columns to its
    right, then its last row (so widened) into the ky - 1 rows below, in (N, H, W, C)
    maps, in place: a pooling window that starts inside a region but reaches past
    it then sees the region's own edge values, which leaves its max unchanged, as
    if the window were cut at the edge. The regions must lie that far apart."""
    for y, x, h, w in regions:
        maps[:, y:y + h, x + w:x + w + kx - 1] = maps[:, y:y + h, x + w - 1:x + w]
        maps[:, y + h:y + h + ky - 1, x:x + w + kx - 1] = maps[:, y + h - 1:y + h, x:x + w + kx - 1]
    return maps
