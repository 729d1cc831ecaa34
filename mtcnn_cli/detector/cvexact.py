"""OpenCV 4.6 arithmetic, bit for bit, in numpy.

One cohesive thing over 500 lines: the few OpenCV and glibc operations the
detector relies on (resize, crop, exp), each beside the facts that pin its
float32 steps.

The C++ reference detector ran against OpenCV 4.6.0 (x86-64, AVX2 dispatch). Newer
OpenCV releases compute bilinear resize of float32 images and the float32 array exp
with different rounding, so the few routines the detector relies on are re-implemented
here, rounding step for rounding step, and checked bit for bit against OpenCV 4.6 and
glibc themselves (tests/test_cvexact.py, fixtures/cvexact/README.md).

Public functions:
- resize_bilinear(src, width, height): cv::resize(src, Size(width, height)), float32.
- resize_bilinear_mosaic(src, places, shape): several sizes, each at its place in one image.
- crop_and_resize(image, boxes, size): the detector's zero-padded crops, resized.
- exp(x): cv::exp on a float32 array.
- expf(x): the C library's float exp (glibc 2.28+), element-wise.
- normalise(x): the C++'s (mat - 127.5) * 0.0078125 on a 3-channel float Mat.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from . import native

F32 = np.float32
_QUARTER = F32(0.25)

# ----------------------------------------------------------------------------------------
# Bilinear resize
#
# For a float32 image OpenCV 4.6 resizes in two separable passes, each output value a
# two-tap sum rounded at every step (no fused multiply-add in this code path):
#   horizontal: h = a0 * s[x0] + a1 * s[x1]      per source row
#   vertical:   d = b0 * h[y0] + b1 * h[y1]      per output row
# The taps come from the centre-aligned mapping f = float((d + 0.5) * scale - 0.5)
# (double arithmetic, then rounded to float32), with i = floor(f), weights (1 - frac,
# frac) in float32. Horizontally, output columns left of the image clamp to column 0
# with weights (1, 0), and columns whose left tap is at or past the last column copy
# that last column. Vertically the weights are never clamped: the two row indices are
# clipped into the image and both weights still apply.
#
# Two shortcuts precede this: equal sizes copy, and an exact 2x reduction on both axes
# averages 2x2 blocks instead (OpenCV's fast "area" path), whose summation order
# depends on the channel count (see _halve).
# ----------------------------------------------------------------------------------------


def _between(a: np.ndarray, low, high) -> np.ndarray:
    """np.clip without its call overhead (it is on every pyramid level's path)."""
    return np.minimum(np.maximum(a, low), high)


def _axis_taps(src_len: int, dst_lens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unclamped taps of one axis resized to each of dst_lens, concatenated:
    (i0 int64, w0 float32, w1 float32), each (sum(dst_lens),)."""
    d = np.concatenate([np.arange(n, dtype=np.float64) for n in dst_lens])
    scale = np.repeat([1.0 / (n / src_len) for n in dst_lens], dst_lens)  # double, as OpenCV: 1 / inv_scale
    pos = ((d + 0.5) * scale - 0.5).astype(F32)
    i0 = np.floor(pos)
    frac = (pos - i0).astype(F32)  # exact: the fractional part of a float32
    return i0.astype(np.int64), (F32(1) - frac).astype(F32), frac


def _column_taps(src_w: int, dst_ws):
    """Horizontal taps: (x0, x1, w0, w1, copy) with copy marking columns taken as is."""
    x0, w0, w1 = _axis_taps(src_w, dst_ws)
    left = x0 < 0
    w0 = np.where(left, F32(1), w0).astype(F32)
    w1 = np.where(left, F32(0), w1).astype(F32)
    x0 = np.where(left, 0, x0)
    copy = x0 >= src_w - 1  # OpenCV's xmax: from the first such column on, a plain copy
    x0 = np.where(copy, src_w - 1, x0)
    x1 = np.minimum(x0 + 1, src_w - 1)
    return x0, x1, w0, w1, copy


def _row_taps(src_h: int, dst_hs):
    """Vertical taps: (y0, y1, w0, w1), row indices clipped into the image."""
    y0, w0, w1 = _axis_taps(src_h, dst_hs)
    return _between(y0, 0, src_h - 1), _between(y0 + 1, 0, src_h - 1), w0, w1


_DBL_EPSILON = 2.0 ** -52


def _is_halving(src_w: int, src_h: int, width: int, height: int) -> bool:
    """OpenCV's switch to its 2x2 averaging: both scales exactly 2 (to DBL_EPSILON)."""
    sx, sy = 1.0 / (width / src_w), 1.0 / (height / src_h)
    return abs(sx - 2.0) < _DBL_EPSILON and abs(sy - 2.0) < _DBL_EPSILON


def _halve(src: np.ndarray) -> np.ndarray:
    """2x2 block mean of an (H, W, C) float32 image with even H and W, as OpenCV 4.6.

    Its vector code sums (a + b) + (c + d) (a, b the top pair, c, d the bottom pair);
    its scalar code ((0 + a + b) + c) + d. One channel: vector code for the leading
    multiple of 4 output columns; four channels: vector code everywhere; other channel
    counts: scalar code only.
    """
    a, b = src[0::2, 0::2], src[0::2, 1::2]
    c, d = src[1::2, 0::2], src[1::2, 1::2]
    cn = src.shape[2]
    n_vec = {1: (a.shape[1] // 4) * 4, 4: a.shape[1]}.get(cn, 0)  # output columns
    out = a + b
    if n_vec:
        out[:, :n_vec] += c[:, :n_vec] + d[:, :n_vec]
    if n_vec < a.shape[1]:
        tail = out[:, n_vec:]
        tail += c[:, n_vec:]
        tail += d[:, n_vec:]
        tail += F32(0)  # the scalar sum starts from +0: turns -0 into +0
    out *= _QUARTER
    return out


def _channel_taps(taps, channels: int):
    """Column taps spread over interleaved channels: (i0, i1, w0, w1, copy), one
    entry per output value of a row."""
    x0, x1, w0, w1, copy = taps
    lanes = np.arange(channels)
    return ((x0[:, None] * channels + lanes).ravel(), (x1[:, None] * channels + lanes).ravel(),
            np.repeat(w0, channels), np.repeat(w1, channels), np.repeat(copy, channels).astype(np.int64))


@functools.lru_cache(maxsize=16)
def _linear_taps(src_h: int, src_w: int, channels: int, sizes: tuple) -> tuple:
    """The taps of (src_w x src_h) -> (width x height) two-pass resizes, one
    native.ResizeTaps per (width, height) of sizes, computed together and kept
    for the next image of the same size."""
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    columns = _channel_taps(_column_taps(src_w, widths), channels)
    rows = _row_taps(src_h, heights)
    col_ends, row_ends = (np.cumsum(widths) * channels).tolist(), np.cumsum(heights).tolist()
    return tuple(native.ResizeTaps.many(columns, rows, col_ends, row_ends))


def _resize_linear_into(img: np.ndarray, taps: native.ResizeTaps, out: np.ndarray) -> None:
    """The separable two-pass resize of an (H, W, C) float32 image into out,
    (height, width*C) rows (a view: a place in a mosaic)."""
    src_h, src_w, channels = img.shape
    native.resize_linear(img.reshape(src_h, src_w * channels), taps, out)


def _resize_linear(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """The separable two-pass resize of an (H, W, C) float32 image -> (height, width, C)."""
    src_h, src_w, channels = img.shape
    out = np.empty((height, width * channels), dtype=F32)
    _resize_linear_into(img, _linear_taps(src_h, src_w, channels, ((width, height),))[0], out)
    return out.reshape(height, width, channels)


def _checked_image(src) -> np.ndarray:
    """A float32 (H, W) or (H, W, C) image as contiguous (H, W, C)."""
    src = np.asarray(src)
    if src.dtype != F32:
        raise TypeError(f"resize_bilinear needs float32, got {src.dtype}")
    if src.ndim not in (2, 3) or min(src.shape[:2]) < 1:
        raise ValueError(f"resize_bilinear needs an (H, W[, C]) image, got shape {src.shape}")
    return np.ascontiguousarray(src[:, :, None] if src.ndim == 2 else src)


def _checked_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"resize_bilinear target size must be positive, got {width}x{height}")


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, C) -> (height, width, C): OpenCV's choice of copy, 2x2 mean or two passes."""
    src_h, src_w = img.shape[:2]
    if (src_w, src_h) == (width, height):
        return img.copy()
    if _is_halving(src_w, src_h, width, height):
        return _halve(img)
    return _resize_linear(img, width, height)


def resize_bilinear(src: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv::resize(src, Size(width, height)) with INTER_LINEAR, as OpenCV 4.6, float32.

    src: (H, W) or (H, W, C) float32, C in 1..4. Returns (height, width[, C]) float32.
    """
    img = _checked_image(src)
    _checked_size(width, height)
    out = _resize(img, width, height)
    return out[:, :, 0] if np.ndim(src) == 2 else out


def resize_bilinear_mosaic(src: np.ndarray, places, shape) -> np.ndarray:
    """Several resizes of one image, each written at its place in one output image:
    places [(y, x, width, height)] (not overlapping), shape (H, W) of the output.
    Each place holds exactly resize_bilinear(src, width, height); the rest is 0.
    src (H, W[, C]) float32 -> (H, W[, C]) float32."""
    img = _checked_image(src)
    src_h, src_w, channels = img.shape
    places = tuple((int(y), int(x), int(w), int(h)) for y, x, w, h in places)
    for y, x, w, h in places:
        _checked_size(w, h)
        if y < 0 or x < 0 or y + h > shape[0] or x + w > shape[1]:
            raise ValueError(f"resize_bilinear_mosaic: {w}x{h} at ({x}, {y}) outside {shape[1]}x{shape[0]}")
    out = np.zeros((shape[0], shape[1], channels), F32)
    rows = out.reshape(shape[0], shape[1] * channels)  # a view: each place's rows are slices of it
    special = [(w, h) == (src_w, src_h) or _is_halving(src_w, src_h, w, h) for _, _, w, h in places]
    plain = [p for p, s in zip(places, special) if not s]
    taps = iter(_linear_taps(src_h, src_w, channels, tuple((w, h) for _, _, w, h in plain)) if plain else ())
    for (y, x, w, h), copy_or_halve in zip(places, special):
        if copy_or_halve:
            out[y:y + h, x:x + w] = _resize(img, w, h)
        else:
            _resize_linear_into(img, next(taps), rows[y:y + h, x * channels:(x + w) * channels])
    return out[:, :, 0] if np.ndim(src) == 2 else out


def clear_resize_caches() -> None:
    """Forget the taps the resizes keep per source and target size."""
    _linear_taps.cache_clear()


# ----------------------------------------------------------------------------------------
# Crops
#
# For each box (x, y, w, h) the C++ builds a zero (h+1) x (w+1) x 3 image holding the
# pixels image[y-1+r, x-1+c] that fall inside the image, and resizes it to size x size.
# Here all boxes go at once: per box, row and column taps of the (w+1) x (h+1) -> size
# resize (the same arithmetic as resize_bilinear), turned into indices of image pixels,
# with one extra zero pixel standing for everything outside the image.
# ----------------------------------------------------------------------------------------

_CROP_CHUNK = 256  # boxes per batch, to bound the temporaries


def _batch_axis_taps(src_len: np.ndarray, dst_len: int):
    """_axis_taps for many source lengths at once: each of (N, dst_len)."""
    scale = 1.0 / (dst_len / src_len.astype(np.float64))  # (N,)
    pos = ((np.arange(dst_len, dtype=np.float64) + 0.5) * scale[:, None] - 0.5).astype(F32)
    i0 = np.floor(pos)
    frac = (pos - i0).astype(F32)
    return i0.astype(np.int64), (F32(1) - frac).astype(F32), frac


def _batch_taps(src_len: np.ndarray, size: int, horizontal: bool):
    """Taps of many (src_len -> size) resizes along one axis: (i0, i1, w0, w1), (N, size).

    Horizontally, columns at or past the last source column become (last, last, 1, 0),
    a copy for finite values; rows are clipped with unclamped weights, as in
    resize_bilinear.
    """
    last = (src_len - 1)[:, None]
    i0, w0, w1 = _batch_axis_taps(src_len, size)
    if horizontal:
        left = i0 < 0
        w0, w1 = np.where(left, F32(1), w0), np.where(left, F32(0), w1)
        i0 = np.maximum(i0, 0)
        copy = i0 >= last
        w0, w1 = np.where(copy, F32(1), w0), np.where(copy, F32(0), w1)
        i0 = np.minimum(i0, last)
        return i0, np.minimum(i0 + 1, last), w0.astype(F32), w1.astype(F32)
    return _between(i0, 0, last), _between(i0 + 1, 0, last), w0, w1


def _sample(pixels: np.ndarray, shape: tuple[int, int], boxes: np.ndarray,
            rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Patch pixels (rows[n, i], cols[n, j]) of each box: (N, size, size*3), zero outside.

    pixels is the image as (H*W, 3); rows and cols are (N, size) coordinates inside the
    (h+1) x (w+1) patch, whose origin is image pixel (y-1, x-1).
    """
    height, width = shape
    ir = (boxes[:, 1] - 1)[:, None] + rows
    ic = (boxes[:, 0] - 1)[:, None] + cols
    row_in = (ir >= 0) & (ir < height)
    col_in = (ic >= 0) & (ic < width)
    index = (np.where(row_in, ir, 0) * width)[:, :, None] + np.where(col_in, ic, 0)[:, None, :]
    values = np.take(pixels, index, axis=0)  # (N, size, size, 3)
    edge = ~(row_in.all(axis=1) & col_in.all(axis=1))  # boxes reaching outside the image
    if edge.any():
        inside = row_in[edge][:, :, None, None] & col_in[edge][:, None, :, None]
        values[edge] = np.where(inside, values[edge], F32(0))
    return values.reshape(len(boxes), rows.shape[1], -1)


def _crop_linear(pixels: np.ndarray, shape: tuple[int, int], boxes: np.ndarray, size: int):
    """Crops by the two-pass bilinear resize: (N, size, size*3), computed by the
    compiled kernel (native.crop_linear) from the taps of each box's resize."""
    c0, c1, a0, a1 = _batch_taps(boxes[:, 2] + 1, size, horizontal=True)  # (N, size)
    r0, r1, b0, b1 = _batch_taps(boxes[:, 3] + 1, size, horizontal=False)
    indices = [np.ascontiguousarray(v, np.int64) for v in (r0, r1, c0, c1)]
    weights = [np.ascontiguousarray(v, F32) for v in (b0, b1, a0, a1)]
    out = native.crop_linear(pixels.reshape(shape[0], shape[1], 3), np.ascontiguousarray(boxes, np.int64),
                             indices[0], indices[1], weights[0], weights[1],
                             indices[2], indices[3], weights[2], weights[3])
    return out.reshape(len(boxes), size, size * 3)


def _crop_halved(pixels: np.ndarray, shape: tuple[int, int], boxes: np.ndarray, size: int):
    """Crops of exactly twice the size: OpenCV's 2x2 mean, three-channel (scalar) order."""
    even = np.broadcast_to(2 * np.arange(size), (len(boxes), size))
    total = _sample(pixels, shape, boxes, even, even)
    total += _sample(pixels, shape, boxes, even, even + 1)
    total += _sample(pixels, shape, boxes, even + 1, even)
    total += _sample(pixels, shape, boxes, even + 1, even + 1)
    total += F32(0)  # the scalar sum starts from +0
    total *= _QUARTER
    return total


def _crop_batch(pixels: np.ndarray, shape: tuple[int, int], boxes: np.ndarray, size: int):
    """crop_and_resize for one batch of boxes: (N, size, size, 3)."""
    w1, h1 = boxes[:, 2] + 1, boxes[:, 3] + 1
    halving = (w1 == 2 * size) & (h1 == 2 * size)
    same = (w1 == size) & (h1 == size)
    linear = ~(halving | same)
    if linear.all():  # the usual case
        return _crop_linear(pixels, shape, boxes, size).reshape(len(boxes), size, size, 3)
    out = np.empty((len(boxes), size, size * 3), dtype=F32)
    if linear.any():
        out[linear] = _crop_linear(pixels, shape, boxes[linear], size)
    if halving.any():
        out[halving] = _crop_halved(pixels, shape, boxes[halving], size)
    if same.any():  # equal sizes: a plain copy
        steps = np.broadcast_to(np.arange(size), (int(same.sum()), size))
        out[same] = _sample(pixels, shape, boxes[same], steps, steps)
    return out.reshape(len(boxes), size, size, 3)


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """The detector's crops: image (H, W, 3) float32, boxes (N, 4) int (x, y, w, h).

    Box n is the (h+1) x (w+1) patch whose top-left pixel is image[y-1, x-1], zero
    outside the image, resized to size x size as OpenCV 4.6 (finite pixel values).
    Returns (N, size, size, 3) float32.
    """
    image = np.asarray(image)
    boxes = np.asarray(boxes)
    if image.dtype != F32 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"crop_and_resize needs an (H, W, 3) float32 image, got "
                         f"{image.dtype} {image.shape}")
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.issubdtype(boxes.dtype, np.integer):
        raise ValueError(f"crop_and_resize needs (N, 4) integer boxes, got {boxes.dtype} {boxes.shape}")
    if len(boxes) and (boxes[:, 2:] < 0).any():
        raise ValueError("crop_and_resize: box width and height must be >= 0")
    if size < 1:
        raise ValueError(f"crop_and_resize: size must be positive, got {size}")
    boxes = boxes.astype(np.int64)
    height, width = image.shape[:2]
    pixels = np.ascontiguousarray(image).reshape(-1, 3)  # (H*W, 3)
    out = np.empty((len(boxes), size, size, 3), dtype=F32)
    order = np.lexsort((boxes[:, 0], boxes[:, 1]))  # top to bottom: kinder to the caches
    for start in range(0, len(boxes), _CROP_CHUNK):
        batch = order[start:start + _CROP_CHUNK]
        out[batch] = _crop_batch(pixels, (height, width), boxes[batch], size)
    return out


# ----------------------------------------------------------------------------------------
# Array exp (cv::exp on float32)
#
# OpenCV 4.6 splits x * 64/ln2 into an integer k and a remainder r in [-1/128, 1/128]
# (after scaling back by 1/64): e^x = 2^(k >> 6) * T[k & 63] * P(r), where T holds
# 2^(j/64) pre-multiplied by a constant c0 and P is a degree-4 polynomial whose
# coefficients are divided by that same c0. P is evaluated by Horner's rule with fused
# multiply-adds (its AVX2 code path); the power of two is built from the exponent bits,
# clamped to the float range (0 -> result 0, 255 -> infinity). Inputs are first clamped
# to +-2079.44 (so +-inf give inf and 0), and NaN becomes 0 in the vector code, which
# handles every array of 16 or more elements; shorter arrays run scalar code that gives
# the same numbers except that NaN stays NaN.
# ----------------------------------------------------------------------------------------

_EXP_C0 = 0.9670371139572337719125840413672004409288e-2  # c0, as a double
_EXP_PRESCALE = 1.4426950408889634073599246810019 * 64  # 64 / ln 2, as a double
_EXP_LIMIT = 3000.0 * 64 / _EXP_PRESCALE  # |x| clamp, as a double
_EXP_A1 = F32(0.5550339366753125211915322047004666939128e-1 / _EXP_C0)
_EXP_A2 = F32(0.2402265109513301490103372422686535526573 / _EXP_C0)
_EXP_A3 = F32(0.6931471805521448196800669615864773144641 / _EXP_C0)
_EXP_A4 = F32(1.000000000000002438532970795181890933776 / _EXP_C0)
_EXP_VECTOR_MIN = 16  # arrays shorter than this take OpenCV's scalar code


def _powers_of_two(n: int) -> list[float]:
    """double(2^(j/n)), correctly rounded, j = 0..n-1, n a power of two, in
    integers alone (so the same on every machine, whatever its libm):
    2^(1/n) to 128 bits is the n-th root of 2^(1 + 128 n), taken as log2(n)
    integer square roots (isqrt of isqrt of m is floor(m^(1/4)), exactly),
    then its powers by integer products, each floored. Each product can lose
    one unit of 2^-128, so a value is off by less than n units; int -> float
    rounds the rest correctly. Checked against 40-digit decimals (test)."""
    bits = 128
    root = 1 << (1 + bits * n)
    for _ in range(n.bit_length() - 1):
        root = math.isqrt(root)
    powers, x = [], 1 << bits
    for _ in range(n):
        powers.append(math.ldexp(float(x), -bits))
        x = (x * root) >> bits
    return powers


def _exp_table() -> np.ndarray:
    """T[j] = float32(double(2^(j/64)) * c0), j = 0..63."""
    return (np.array(_powers_of_two(64), dtype=np.float64) * _EXP_C0).astype(F32)


_EXP_TABLE = _exp_table()


def _fma32(a: np.ndarray, b: np.ndarray, c) -> np.ndarray:
    """a * b + c for float32 values as one fused operation, for exp's polynomial.

    a * b is exact in float64; the float64 sum then rounds twice (to float64, then to
    float32), which in general can differ from a single rounding, but never does for
    the values exp feeds it: exp matches OpenCV 4.6 on all 2^32 float32 inputs.
    """
    return (a.astype(np.float64) * b + np.float64(c)).astype(F32)


def exp(x: np.ndarray) -> np.ndarray:
    """cv::exp of a float32 array, as OpenCV 4.6 (AVX2 build); same shape, float32."""
    x = np.asarray(x)
    if x.dtype != F32:
        raise TypeError(f"exp needs float32, got {x.dtype}")
    limit = F32(_EXP_LIMIT)
    # the vector code's max() returns the bound for NaN; short arrays get NaN back below
    v = np.where(np.isnan(x), -limit, _between(x, -limit, limit))
    v = v * F32(_EXP_PRESCALE)
    k = np.rint(v).astype(np.int32)  # round half to even
    r = (v - k.astype(F32)) * F32(1.0 / 64)
    biased = _between((k >> 6) + 127, 0, 255).astype(np.int32)
    scale = _EXP_TABLE[k & 63] * (biased << 23).view(F32)
    poly = r + _EXP_A1
    poly = _fma32(poly, r, _EXP_A2)
    poly = _fma32(poly, r, _EXP_A3)
    poly = _fma32(poly, r, _EXP_A4)
    out = (poly * scale).astype(F32)
    if x.size < _EXP_VECTOR_MIN:
        out = np.where(np.isnan(x), x, out)
    return out


# ----------------------------------------------------------------------------------------
# C library expf (glibc 2.28 and later, x86-64 FMA variant)
#
# glibc computes expf in double: with N = 32, z = x * N/ln2 is split as k + r (k the
# nearest integer, found by adding and removing 1.5 * 2^52), 2^(k/N) comes from a
# 32-entry table of 2^(j/N) whose exponent field gets k >> 5 added, and 2^(r/N) from a
# cubic. On x86-64 with FMA, the build fuses: k = fma(N/ln2, x, shift), r = fma(N/ln2,
# x, -k), and the three Horner steps. |x| >= 88 goes through explicit overflow and
# underflow checks first. A numpy port rather than a call into the C library: it is
# vectorised, and it gives glibc's bits on every platform (other C libraries differ).
# The exact port (_expf_fused) emulates each fused multiply-add; expf itself runs the
# same steps unfused, seven times faster, and hands the few inputs where that could
# change the float32 result to the exact port.
# ----------------------------------------------------------------------------------------

_EXPF_N = 32
_EXPF_SHIFT = float.fromhex("0x1.8p+52")
_EXPF_INV_LN2_N = float.fromhex("0x1.71547652b82fep+0") * _EXPF_N
_EXPF_C0 = float.fromhex("0x1.c6af84b912394p-5") / _EXPF_N**3
_EXPF_C1 = float.fromhex("0x1.ebfce50fac4f3p-3") / _EXPF_N**2
_EXPF_C2 = float.fromhex("0x1.62e42ff0c52d6p-1") / _EXPF_N
_EXPF_OVERFLOW = F32(float.fromhex("0x1.62e42ep6"))  # above: +inf
_EXPF_UNDERFLOW = F32(float.fromhex("-0x1.9fe368p6"))  # below: 0
_EXPF_TINY = F32(float.fromhex("-0x1.9d1d9ep6"))  # below: the smallest subnormal
_EXPF_SMALLEST = np.array(1, dtype=np.uint32).view(F32)[()]


def _expf_table() -> np.ndarray:
    """Bits of double(2^(j/32)) minus j << 47, j = 0..31 (uint64)."""
    bits = np.array(_powers_of_two(_EXPF_N), dtype=np.float64).view(np.uint64)
    return bits - (np.arange(_EXPF_N, dtype=np.uint64) << np.uint64(47))


_EXPF_TABLE = _expf_table()


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp split of float64 values into 26-bit halves: a == hi + lo exactly."""
    t = a * 134217729.0  # 2^27 + 1
    hi = t - (t - a)
    return hi, a - hi


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker: p = fl(a * b) and the exact error e, a * b == p + e."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth: s = fl(a + b) and the exact error e, a + b == s + e."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _add_round_to_odd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b in float64 rounded to odd: inexact sums get an odd last mantissa bit."""
    s, e = _two_sum(a, b)
    bits = s.view(np.int64)
    step = np.where((e > 0) == (s > 0), 1, -1)
    return np.where((e != 0) & ((bits & 1) == 0), bits + step, bits).view(np.float64)


def _fma64(a, b, c) -> np.ndarray:
    """Correctly rounded a * b + c in float64 (Boldo and Melquiond's odd-rounding method)."""
    a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c)))
    ph, pl = _two_product(a, b)
    sh, sl = _two_sum(c, ph)
    return sh + _add_round_to_odd(sl, pl)


def _expf_fused(x: np.ndarray) -> np.ndarray:
    """glibc's expf step for step, every fused multiply-add exact: any float32 array."""
    with np.errstate(invalid="ignore", over="ignore"):
        xd = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float64)
        kd = _fma64(_EXPF_INV_LN2_N, xd, _EXPF_SHIFT)
        ki = kd.view(np.uint64)
        kd = kd - _EXPF_SHIFT
        r = _fma64(_EXPF_INV_LN2_N, xd, -kd)
        s = (_EXPF_TABLE[ki % np.uint64(_EXPF_N)] + (ki << np.uint64(47))).view(np.float64)
        cubic = _fma64(_fma64(_EXPF_C0, r, _EXPF_C1), r * r, _fma64(_EXPF_C2, r, 1.0))
        out = (cubic * s).astype(F32)
    out = np.where(x < _EXPF_TINY, _EXPF_SMALLEST, out)
    out = np.where(x < _EXPF_UNDERFLOW, F32(0), out)
    out = np.where(x > _EXPF_OVERFLOW, F32(np.inf), out)
    quiet_nan = (x.view(np.uint32) | np.uint32(0x400000)).view(F32)  # x + x quiets NaN
    return np.where(np.isnan(x), quiet_nan, out).astype(F32)


# Inputs whose result is a normal float32 and which glibc computes on its main path.
_EXPF_FAST_LOW, _EXPF_FAST_HIGH = F32(-87.0), F32(88.0)
# N/ln2 split so that both halves times a float32 are exact in double (29 + 24 bits).
_EXPF_INV_LN2_N_HIGH = float((np.array([_EXPF_INV_LN2_N]).view(np.uint64) >> np.uint64(24)
                              << np.uint64(24)).view(np.float64)[0])
_EXPF_INV_LN2_N_LOW = _EXPF_INV_LN2_N - _EXPF_INV_LN2_N_HIGH
_DROPPED_BITS = 29  # a double's mantissa bits below a float32's
_MIDPOINT = 1 << (_DROPPED_BITS - 1)  # those bits at a float32 rounding midpoint
_NEAR = 64  # units of the double's last place: far more than the fast path can be off


def expf(x: np.ndarray) -> np.ndarray:
    """The C library's expf (glibc, x86-64), element-wise on float32; same shape, float32.

    A fast path computes glibc's steps without fused multiply-adds: its double
    result is then within a few units of the last place of glibc's, so it rounds
    to the same float32 unless it lies within _NEAR units of a rounding midpoint,
    or the nearest integer to x*N/ln2 was nearly a tie. Those inputs, and inputs
    outside glibc's main path or with subnormal results, take the exact port
    (_expf_fused). Checked against it on all 2^32 float32 values."""
    x = np.asarray(x)
    if x.dtype != F32:
        raise TypeError(f"expf needs float32, got {x.dtype}")
    if x.ndim == 0:
        return expf(x.reshape(1)).reshape(())
    hard = ~((x > _EXPF_FAST_LOW) & (x < _EXPF_FAST_HIGH))  # NaN compares false: hard
    xd = np.where(hard, F32(0), x).astype(np.float64)
    high = _EXPF_INV_LN2_N_HIGH * xd  # exact
    low = _EXPF_INV_LN2_N_LOW * xd  # exact
    z = high + low
    kd = np.rint(z)  # k, ties to even, as glibc's add-and-remove of 1.5 * 2^52
    r = (high - kd) + low
    ki = kd.astype(np.int64).view(np.uint64)
    s = (_EXPF_TABLE[ki & np.uint64(_EXPF_N - 1)] + (ki << np.uint64(47))).view(np.float64)
    y = (_EXPF_C0 * r + _EXPF_C1) * (r * r) + (_EXPF_C2 * r + 1.0)
    y *= s
    dropped = (y.view(np.uint64) & np.uint64((1 << _DROPPED_BITS) - 1)).astype(np.int64)
    hard |= np.abs(dropped - _MIDPOINT) <= _NEAR
    hard |= np.abs(np.abs(z - kd) - 0.5) < 1e-9  # a near tie for k: z's rounding could decide it
    out = y.astype(F32)
    if hard.any():
        out[hard] = _expf_fused(x[hard])
    return out


# ----------------------------------------------------------------------------------------
# Normalisation
#
# The C++ writes (mat - 127.5) * 0.0078125 on a 3-channel float Mat. 127.5 becomes the
# Scalar (127.5, 0, 0, 0), yet the reference dump (stages_mf60.pnet_input_s0) shows all
# three channels shifted: OpenCV folds the expression into one convertTo(alpha=2^-7,
# beta=-127.5 * 2^-7) call, and convertTo applies beta to every channel. Scaling by a
# power of two is exact, so this equals (v - 127.5) * 2^-7 in float32.
# ----------------------------------------------------------------------------------------


def normalise(x: np.ndarray) -> np.ndarray:
    """(x - 127.5) * 0.0078125 on every channel, in float32, as the C++ does."""
    x = np.asarray(x)
    if x.dtype != F32:
        raise TypeError(f"normalise needs float32, got {x.dtype}")
    return (x - F32(127.5)) * F32(0.0078125)
