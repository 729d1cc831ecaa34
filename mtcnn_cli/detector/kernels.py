"""The detector's arithmetic kernels: every dot product of the three networks,
in the exact order of operations of the C++ reference build.

Each kernel is a plain loop compiled once (numba, cached on disk), whose
summation order is stated in its docstring and does not depend on the CPU, on
the size of a batch or on which images share it: every output is computed on
its own, from +0, by IEEE float32 fused multiply-adds (`fma`, one rounding) or
float64 additions, in a fixed order. Vector instructions only ever run several
such chains side by side. See ../shared/docs/openface-mtcnn.md, section 4.

Feature maps here are planar: a float32 (C, L) array, one row per map, each
map the N images of a batch laid end to end, each image row by row.
"""
from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Outputs computed together in one tile: the partial sums of a tile stay in the
# first-level cache (float32, all output maps).
TILE_BYTES = 32 << 10
# The 16 interleaved chains of OpenBLAS's matrix-times-vector kernel.
LANES = 16


@intrinsic
def fma(typingctx, a, b, c):
    """float32 a * b + c, rounded once (LLVM's fma; a libm call where the CPU has none)."""
    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32, f32, f32]),
                                            "llvm.fma.f32")
        return builder.call(fn, args)
    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(cache=True, nogil=True)
def conv_chains(planes, weights, offsets, blocks, slopes, out):
    """A convolution as the C++'s sgemm computes it, one chain per output.

    planes (C*L,): the input maps, flattened (map c at c*L). weights (K, O): the
    im2col columns' weights in the C++'s order, the biases as the last row.
    offsets (K - 1,): where column k reads, relative to a window's top-left
    input: c*L + ky*W + kx. blocks: the column indices where chains start and
    end, [0, ..., K]. slopes (O,) or (0,): a PReLU applied to each result,
    v if v >= 0 else v * slope (exact per element), or none. out (O, span):
    out[o, p] for the window at flat position p (positions whose window wraps
    past a row or an image are computed too, and ignored by the caller).

    Order, for every output: for each block [k0, k1) of columns, in turn, one
    chain from +0: acc = fma(x_k, w_k, acc) for k = k0 .. k1 - 1, the bias
    column (input 1.0) as acc + b; the blocks' chains are added in order,
    ((c_0 + c_1) + c_2) ..., each sum rounded once.

    The work goes tile by tile of positions, a few columns per pass over a
    tile (each output's chain still takes its columns one by one, in order)."""
    n_cols, n_out = weights.shape
    span = out.shape[1]
    last = len(blocks) - 2
    tile = max(16, TILE_BYTES // 4 // n_out // 8 * 8)
    acc = np.empty((n_out, tile), np.float32)
    total = np.empty((n_out, tile), np.float32)
    for p0 in range(0, span, tile):
        n = min(tile, span - p0)
        for b in range(last + 1):
            acc[:, :n] = 0
            k, end = blocks[b], min(blocks[b + 1], n_cols - 1)
            while k + 4 <= end:
                x0 = planes[offsets[k] + p0:]
                x1 = planes[offsets[k + 1] + p0:]
                x2 = planes[offsets[k + 2] + p0:]
                x3 = planes[offsets[k + 3] + p0:]
                for o in range(n_out):
                    w0, w1, w2, w3 = weights[k, o], weights[k + 1, o], weights[k + 2, o], weights[k + 3, o]
                    row = acc[o]
                    for p in range(n):
                        row[p] = fma(x3[p], w3, fma(x2[p], w2, fma(x1[p], w1, fma(x0[p], w0, row[p]))))
                k += 4
            if k + 2 <= end:
                x0 = planes[offsets[k] + p0:]
                x1 = planes[offsets[k + 1] + p0:]
                for o in range(n_out):
                    w0, w1 = weights[k, o], weights[k + 1, o]
                    row = acc[o]
                    for p in range(n):
                        row[p] = fma(x1[p], w1, fma(x0[p], w0, row[p]))
                k += 2
            if k < end:
                x0 = planes[offsets[k] + p0:]
                for o in range(n_out):
                    w0 = weights[k, o]
                    row = acc[o]
                    for p in range(n):
                        row[p] = fma(x0[p], w0, row[p])
            if b < last:
                for o in range(n_out):
                    for p in range(n):
                        total[o, p] = acc[o, p] if b == 0 else total[o, p] + acc[o, p]
                continue
            for o in range(n_out):  # the last block ends with the bias: add it, then the blocks before
                bias = weights[n_cols - 1, o]
                slope = slopes[o] if len(slopes) else np.float32(1)
                row, before, dest = acc[o], total[o], out[o, p0:]
                for p in range(n):
                    v = row[p] + bias
                    if last > 0:
                        v = before[p] + v
                    dest[p] = v if v >= 0 else v * slope
    return out


@njit(cache=True, nogil=True)
def gemv_lanes(x, weights, biases, out):
    """A fully connected layer as OpenBLAS's matrix-times-vector kernel sums it,
    for each row of x. x (N, F), weights (F, O), F a multiple of 16; out (N, O).

    Order, for every output: 16 chains from +0, chain l over the inputs
    k = l, l + 16, l + 32, ... in order (acc = fma(x_k, w_k, acc)); then
    g_q = (c_4q + c_4q+1) + (c_4q+2 + c_4q+3) for q = 0..3,
    s = (g_0 + g_1) + (g_2 + g_3), and out = s + bias, each sum rounded once."""
    n_rows, n_in = x.shape
    n_out = weights.shape[1]
    lanes = np.empty((LANES, n_out), np.float32)
    for i in range(n_rows):
        lanes[:, :] = 0
        for k in range(n_in):
            a = x[i, k]
            w = weights[k]
            lane = lanes[k % LANES]
            for o in range(n_out):
                lane[o] = fma(a, w[o], lane[o])
        for o in range(n_out):
            g0 = (lanes[0, o] + lanes[1, o]) + (lanes[2, o] + lanes[3, o])
            g1 = (lanes[4, o] + lanes[5, o]) + (lanes[6, o] + lanes[7, o])
            g2 = (lanes[8, o] + lanes[9, o]) + (lanes[10, o] + lanes[11, o])
            g3 = (lanes[12, o] + lanes[13, o]) + (lanes[14, o] + lanes[15, o])
            out[i, o] = ((g0 + g1) + (g2 + g3)) + biases[o]
    return out


@njit(cache=True, nogil=True)
def sums_double(columns, weights, out):
    """OpenCV's own small matrix product, in double. columns (F, P) float32
    (input k of item p), weights (F, O) float64; out (O, P) float64.

    Order, for every output: s = 0.0, then s = s + x_k * w_k for k = 0 .. F-1
    (each product of two floats is exact in double; each sum rounded once)."""
    n_in, n_items = columns.shape
    n_out = weights.shape[1]
    for o in range(n_out):
        row = out[o]
        row[:] = 0.0
        for k in range(n_in):
            w = weights[k, o]
            x = columns[k]
            for p in range(n_items):
                row[p] = row[p] + np.float64(x[p]) * w
    return out


@njit(cache=True)
def _fma_many(a, b, c):
    out = np.empty_like(a)
    for i in range(len(a)):
        out[i] = fma(a[i], b[i], c[i])
    return out


@functools.cache
def check_fma() -> None:
    """Raise RuntimeError unless the compiled fma rounds once, in scalar and
    vector code alike: (1 + 2^-12)^2 - (1 + 2^-11) is 2^-24 fused, 0 unfused.
    Once per process (the first call also loads the compiled code)."""
    a = np.full(37, 1 + 2.0 ** -12, np.float32)
    got = _fma_many(a, a, np.full(37, -(1 + 2.0 ** -11), np.float32))
    if not (got == np.float32(2.0 ** -24)).all():
        raise RuntimeError("this machine's compiled fused multiply-add does not round once: "
                           "the detector cannot reproduce OpenFace's arithmetic here")
