"""The detector's arithmetic kernels: every dot product of the three networks,
in the exact order of operations of the C++ reference build.

Each kernel is a plain loop, compiled once (see below), whose
summation order is stated in its docstring and does not depend on the CPU, on
the size of a batch or on which images share it: every output is computed on
its own, from +0, by IEEE float32 fused multiply-adds (`fma`, one rounding) or
float64 additions, in a fixed order. Vector instructions only ever run several
such chains side by side. See ../shared/docs/openface-mtcnn.md, section 4.

The kernels are compiled to machine code once per install and machine, then
loaded without numba (detector/native.py); this module is imported only to
compile them. Every kernel takes its scratch space as arguments and nothing in
it raises in use (no allocation, no bounds checks, numpy's error model; the
one raise path numba adds, a zero range step, the callers rule out), so the
compiled code needs nothing from numba at run time.

Feature maps here are planar: a float32 (C, L) array, one row per map, each
map the N images of a batch laid end to end, each image row by row.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.core.datamodel import models
from numba.extending import intrinsic, register_model

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


# --- eight float32 lanes side by side -------------------------------------------------
# The convolution's inner block keeps 16 positions x 4 outputs of chains in
# registers. Numba has no vector type, so here is one: float32x8 is LLVM's
# <8 x float>, and a few intrinsics load, store and fma it. Lane i of each
# operation is exactly the scalar operation on lane i.

_V8 = ir.VectorType(ir.FloatType(), 8)


class Float32x8(types.Type):
    def __init__(self):
        super().__init__(name="float32x8")


float32x8 = Float32x8()


@register_model(Float32x8)
class _Float32x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V8)


def _element(context, builder, array_type, array, index):
    """A pointer to array.flat[index] (C-contiguous arrays only, unchecked)."""
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [index])


def _broadcast(builder, value):
    one = builder.insert_element(ir.Constant(_V8, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(_V8, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))


@intrinsic
def zeros8(typingctx):
    """Eight +0."""
    def codegen(context, builder, signature, args):
        return ir.Constant(_V8, [0.0] * 8)
    return float32x8(), codegen


@intrinsic
def load8(typingctx, array, index):
    """array.flat[index:index + 8], unchecked."""
    def codegen(context, builder, signature, args):
        where = _element(context, builder, signature.args[0], *args)
        return builder.load(builder.bitcast(where, _V8.as_pointer()), align=4)
    return float32x8(array, index), codegen


@intrinsic
def store8(typingctx, array, index, value):
    """array.flat[index:index + 8] = value, unchecked."""
    def codegen(context, builder, signature, args):
        where = _element(context, builder, signature.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(where, _V8.as_pointer()), align=4)
        return context.get_dummy_value()
    return types.none(array, index, value), codegen


@intrinsic
def fill8(typingctx, array, index):
    """Eight copies of array.flat[index], unchecked."""
    def codegen(context, builder, signature, args):
        return _broadcast(builder, builder.load(_element(context, builder, signature.args[0], *args)))
    return float32x8(array, index), codegen


@intrinsic
def item(typingctx, array, index):
    """array.flat[index], unchecked."""
    def codegen(context, builder, signature, args):
        return builder.load(_element(context, builder, signature.args[0], *args))
    return array.dtype(array, index), codegen


@intrinsic
def fma8(typingctx, a, b, c):
    """a * b + c lane by lane, each rounded once."""
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8, [_V8] * 3), "llvm.fma.v8f32")
        return builder.call(fn, list(args))
    return float32x8(float32x8, float32x8, float32x8), codegen


# --- the kernels ------------------------------------------------------------------------

@njit(nogil=True, error_model="numpy")
def chains16x4(planes, offsets, k0, end, base, weights, w, acc):
    """16 positions x 4 outputs, each one chain from +0 over the columns k0 .. end - 1
    in order: acc = fma(x_k, w_k, acc). Column k's inputs are
    planes[offsets[k] + base:][:16], its weights for the 4 outputs
    weights[w + 4(k - k0):][:4]; output j's chains go to acc[16j:][:16]."""
    a0 = a1 = b0 = b1 = c0 = c1 = d0 = d1 = zeros8()
    for k in range(k0, end):
        x = item(offsets, k) + base
        lo, hi = load8(planes, x), load8(planes, x + 8)
        f = fill8(weights, w)
        a0, a1 = fma8(lo, f, a0), fma8(hi, f, a1)
        f = fill8(weights, w + 1)
        b0, b1 = fma8(lo, f, b0), fma8(hi, f, b1)
        f = fill8(weights, w + 2)
        c0, c1 = fma8(lo, f, c0), fma8(hi, f, c1)
        f = fill8(weights, w + 3)
        d0, d1 = fma8(lo, f, d0), fma8(hi, f, d1)
        w += 4
    store8(acc, 0, a0)
    store8(acc, 8, a1)
    store8(acc, 16, b0)
    store8(acc, 24, b1)
    store8(acc, 32, c0)
    store8(acc, 40, c1)
    store8(acc, 48, d0)
    store8(acc, 56, d1)


@njit(nogil=True, error_model="numpy")
def conv_chains(planes, weights, n_out, offsets, blocks, slopes, out, run_step, run_length, acc):
    """A convolution as the C++'s sgemm computes it, one chain per output.

    planes (C*L,): the input maps, flattened (map c at c*L). weights (G, K, 4):
    the im2col columns' weights in the C++'s order, the biases as the last
    column, outputs in groups of four (group g holds outputs 4g .. 4g+3, the
    last group padded with copies of output n_out - 1). offsets (K - 1,): where
    column k reads, relative to a window's top-left input: c*L + ky*W + kx.
    blocks: the column indices where chains start and end, [0, ..., K].
    slopes (O,) or (0,): a PReLU applied to each result, v if v >= 0 else
    v * slope (exact per element), or none. out (O, span), span >= 16:
    out[o, p] for the window at flat position p. Only the positions of runs
    [n * run_step, n * run_step + run_length) are asked for (the valid windows
    of each image of a batch, 1 <= run_length <= run_step); others may be
    computed too (those whose window wraps past a row), and are ignored by the
    caller. Scratch: acc (64,).

    Order, for every output: for each block [k0, k1) of columns, in turn, one
    chain from +0: acc = fma(x_k, w_k, acc) for k = k0 .. k1 - 1, the bias
    column (input 1.0) as acc + b; the blocks' chains are added in order,
    ((c_0 + c_1) + c_2) ..., each sum rounded once.

    The work goes run by run, 16 positions at a time (a run's last 16 end
    at its end, or start at 0, so they may repeat positions: recomputed, the
    same bits), each group of outputs in turn, reading the inputs where they
    lie. The sum of the chains so far is kept in out itself."""
    n_groups, n_cols = weights.shape[0], weights.shape[1]
    span = out.shape[1]
    last = len(blocks) - 2
    for first in range(0, span, run_step):
        end = min(first + run_length, span)
        for s0 in range(first, end, 16):
            s = max(0, min(s0, end - 16))
            for g in range(n_groups):
                for b in range(last + 1):
                    k0 = blocks[b]
                    chains16x4(planes, offsets, k0, min(blocks[b + 1], n_cols - 1), s, weights,
                               (g * n_cols + k0) * 4, acc)
                    for j in range(min(4, n_out - 4 * g)):
                        o, chain, dest = 4 * g + j, acc[16 * j:16 * j + 16], out[4 * g + j, s:s + 16]
                        if b == last:  # the last block ends with the bias: add it, then the blocks before
                            bias = weights[g, n_cols - 1, j]
                            slope = slopes[o] if len(slopes) else np.float32(1)
                            for p in range(16):
                                v = chain[p] + bias
                                if last > 0:
                                    v = dest[p] + v
                                dest[p] = v if v >= 0 else v * slope
                        elif b == 0:
                            for p in range(16):
                                dest[p] = chain[p]
                        else:
                            for p in range(16):
                                dest[p] = dest[p] + chain[p]
    return out


@njit(nogil=True, error_model="numpy")
def gemv_lanes(x, weights, biases, out, lanes):
    """A fully connected layer as OpenBLAS's matrix-times-vector kernel sums it,
    for each row of x. x (N, F), weights (F, O), F a multiple of 16; out (N, O);
    lanes (16, O) scratch.

    Order, for every output: 16 chains from +0, chain l over the inputs
    k = l, l + 16, l + 32, ... in order (acc = fma(x_k, w_k, acc)); then
    g_q = (c_4q + c_4q+1) + (c_4q+2 + c_4q+3) for q = 0..3,
    s = (g_0 + g_1) + (g_2 + g_3), and out = s + bias, each sum rounded once."""
    n_rows, n_in = x.shape
    n_out = weights.shape[1]
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


@njit(nogil=True, error_model="numpy")
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


@njit(inline="always")
def _max(a, b):
    """numpy's maximum: a if a >= b or a is NaN, else b (a NaN spreads)."""
    return a if (a >= b or a != a) else b


@njit(nogil=True, error_model="numpy")
def max_pool(maps, map_step, image_step, row_step, height, width, kx, ky, sx, sy, out, line):
    """Max pooling, windows cut at the maps' edge. maps (flat): map c of image n,
    row y (< height) starts at c*map_step + n*image_step + y*row_step and holds
    `width` values; out (C, N, oh, ow), its shape giving the counts (the caller
    checks that every window starts inside the maps); line (width,) scratch.

    Order, for every output: down each column of the window, m = x_0, then
    m = max(m, x_dy) for the window's rows in turn; then along the row of those
    column maxima, left to right, the same way. max is numpy's maximum (_max).
    The order cannot change a value, only which of +0 and -0 survives a tie,
    and the detector's chains cannot tell them apart (each starts from +0)."""
    n_maps, n_images, oh, ow = out.shape
    full = min(ow, (width - kx) // sx + 1) if width >= kx else 0  # windows whole in a row
    for c in range(n_maps):
        for n in range(n_images):
            first = c * map_step + n * image_step
            for oy in range(oh):
                y0 = oy * sy
                top = maps[first + y0 * row_step:]
                rows = min(ky, height - y0)  # the window's rows inside the maps
                if rows == 3:  # the networks' windows: the rows in one pass
                    second, third = maps[first + (y0 + 1) * row_step:], maps[first + (y0 + 2) * row_step:]
                    for x in range(width):
                        line[x] = _max(_max(top[x], second[x]), third[x])
                elif rows == 2:
                    second = maps[first + (y0 + 1) * row_step:]
                    for x in range(width):
                        line[x] = _max(top[x], second[x])
                else:
                    for x in range(width):
                        line[x] = top[x]
                    for y in range(y0 + 1, y0 + rows):
                        row = maps[first + y * row_step:]
                        for x in range(width):
                            line[x] = _max(line[x], row[x])
                dest = out[c, n, oy]
                if sx == 2 and kx == 3:  # the networks' pools: constant strides vectorise
                    for ox in range(full):
                        dest[ox] = _max(_max(line[2 * ox], line[2 * ox + 1]), line[2 * ox + 2])
                elif sx == 2 and kx == 2:
                    for ox in range(full):
                        dest[ox] = _max(line[2 * ox], line[2 * ox + 1])
                else:
                    for ox in range(full):
                        m = line[ox * sx]
                        for dx in range(1, kx):
                            m = _max(m, line[ox * sx + dx])
                        dest[ox] = m
                for ox in range(full, ow):  # windows cut at the right edge
                    m = line[ox * sx]
                    for x in range(ox * sx + 1, min(ox * sx + kx, width)):
                        m = _max(m, line[x])
                    dest[ox] = m
    return out


@njit(nogil=True, error_model="numpy")
def crop_linear(pixels, height, width, boxes, rows0, rows1, wrow0, wrow1, cols0, cols1, wcol0, wcol1, out):
    """Crops resized by OpenCV's two-pass bilinear resize. pixels (H*W*3,): the
    image, row by row, three values a pixel; boxes (N, 4): x, y, w, h, the
    patch whose pixel (r, c) is image pixel (y - 1 + r, x - 1 + c), zero where
    that lies outside the image; each box's taps (N, size): rows r0, r1 with
    weights b0, b1 and columns c0, c1 with weights a0, a1, in the patch;
    out (N, size, size, 3).

    Order, for every output value (float32, each operation rounded once):
    t = v(r0, c0) * a0 + v(r0, c1) * a1, then t * b0; u the same on row r1,
    times b1; out = t + u."""
    n_boxes, size = rows0.shape
    for b in range(n_boxes):
        top, left = boxes[b, 1] - 1, boxes[b, 0] - 1
        for i in range(size):
            y0, y1 = top + rows0[b, i], top + rows1[b, i]
            in0, in1 = 0 <= y0 < height, 0 <= y1 < height
            b0, b1 = wrow0[b, i], wrow1[b, i]
            for j in range(size):
                x0, x1 = left + cols0[b, j], left + cols1[b, j]
                a0, a1 = wcol0[b, j], wcol1[b, j]
                ok0, ok1 = 0 <= x0 < width, 0 <= x1 < width
                for ch in range(3):
                    p00 = pixels[(y0 * width + x0) * 3 + ch] if in0 and ok0 else np.float32(0)
                    p01 = pixels[(y0 * width + x1) * 3 + ch] if in0 and ok1 else np.float32(0)
                    p10 = pixels[(y1 * width + x0) * 3 + ch] if in1 and ok0 else np.float32(0)
                    p11 = pixels[(y1 * width + x1) * 3 + ch] if in1 and ok1 else np.float32(0)
                    t = (p00 * a0 + p01 * a1) * b0
                    u = (p10 * a0 + p11 * a1) * b1
                    out[b, i, j, ch] = t + u
    return out


@njit(nogil=True, error_model="numpy")
def resize_linear(src, src_row, cols0, cols1, wcol0, wcol1, copy, rows0, rows1, wrow0, wrow1,
                  out, out_row, line0, line1):
    """OpenCV's two-pass bilinear resize of float32 rows (channels interleaved:
    a row is one list of values). src (flat): source row r starts at
    r * src_row. Output value j of a row reads values cols0[j] and cols1[j]
    of a source row, weighted wcol0[j] and wcol1[j], or takes value cols0[j]
    as it is where copy[j]; output row i reads source rows rows0[i] and
    rows1[i], weighted wrow0[i] and wrow1[i]. out (flat): output row i starts
    at i * out_row. line0, line1: scratch (len(cols0),).

    Order, for every output value (float32, each operation rounded once):
    h0 = s(r0, c0) * a0 + s(r0, c1) * a1 (or s(r0, c0) where copy), h1 the
    same on row r1, out = h0 * b0 + h1 * b1."""
    n_cols = len(cols0)
    have0 = have1 = -1  # the source rows whose horizontal pass line0, line1 hold
    for i in range(len(rows0)):
        r0, r1 = rows0[i], rows1[i]
        if r0 != have0 and r0 == have1:  # going down: the last row's second is this one's first
            line0, line1 = line1, line0
            have0, have1 = have1, -1
        for line, row, have in ((line0, r0, have0), (line1, r1, have1)):
            if row != have:
                first = row * src_row
                for j in range(n_cols):
                    if copy[j]:
                        line[j] = src[first + cols0[j]]
                    else:
                        line[j] = src[first + cols0[j]] * wcol0[j] + src[first + cols1[j]] * wcol1[j]
        have0, have1 = r0, r1
        b0, b1 = wrow0[i], wrow1[i]
        dest = out[i * out_row:]
        for j in range(n_cols):
            dest[j] = line0[j] * b0 + line1[j] * b1
    return out


@njit(nogil=True, error_model="numpy")
def nms(rects, order, threshold, minimum, dropped, kept):
    """Non-maximum suppression over integer rects (N, 4) of x, y, w, h: walk
    `order` (N,), keep each rect not yet dropped and drop every later one
    whose overlap with it is above `threshold` (float32). Writes the kept
    indices to kept (N,) and returns how many; dropped (N,) scratch.

    The overlap of a kept rect a with a rect b, as the C++ computes it: the
    integer intersection i (0 unless both sides are positive), as a float;
    over float(min(area a, area b)) when `minimum`, else over
    float(area a + area b) - i; each float operation rounded to float32
    (a division by 0 gives an infinity or a NaN, which is not above)."""
    n = len(order)
    for i in range(n):
        dropped[i] = 0
    count = 0
    for first in range(n):
        a = order[first]
        if dropped[a]:
            continue
        kept[count] = a
        count += 1
        x, y, w, h = rects[a, 0], rects[a, 1], rects[a, 2], rects[a, 3]
        for later in range(first + 1, n):
            b = order[later]
            if dropped[b]:
                continue
            bx, by, bw, bh = rects[b, 0], rects[b, 1], rects[b, 2], rects[b, 3]
            iw = min(x + w, bx + bw) - max(x, bx)
            ih = min(y + h, by + bh) - max(y, by)
            inter = np.float32(iw * ih) if iw > 0 and ih > 0 else np.float32(0)
            if minimum:
                denom = np.float32(min(w * h, bw * bh))
            else:
                denom = np.float32(np.float32(w * h + bw * bh) - inter)
            if np.float32(inter / denom) > threshold:
                dropped[b] = 1
    return count


@njit(nogil=True, error_model="numpy")
def fma_many(a, b, c, out):
    """out[i] = fma(a[i], b[i], c[i]): the self-check's loop (vectorised, as the
    convolutions are)."""
    for i in range(len(a)):
        out[i] = fma(a[i], b[i], c[i])
    return out


@intrinsic
def _as_int64(typingctx, pointer, index):
    """The float32 pointer + index, as a pointer to int64 (scratch space shared
    by values of both kinds; index keeps it 8-byte aligned when even)."""
    def codegen(context, builder, signature, args):
        moved = builder.gep(args[0], [args[1]])
        return builder.bitcast(moved, ir.IntType(64).as_pointer())
    return types.CPointer(types.int64)(pointer, index), codegen


# --- entry points for the compiled library ------------------------------------------------
# C functions over raw pointers and sizes, called through ctypes (detector/native.py,
# which checks every shape first). Their argument lists are ENTRY_POINTS below.

_f32 = types.CPointer(types.float32)
_f64 = types.CPointer(types.float64)
_i64 = types.CPointer(types.int64)
_n = types.int64

ENTRY_POINTS = {
    # planes, n_planes, weights, n_groups, n_cols, n_out, offsets, blocks, n_blocks, slopes,
    # n_slopes, out, out_row_stride, span, run_step, run_length, maps, plane, scratch
    # (64 float32 then K - 1 int64)
    "conv_chains": types.void(_f32, _n, _f32, _n, _n, _n, _i64, _i64, _n, _f32, _n,
                              _f32, _n, _n, _n, _n, _i64, _n, _f32),
    # x, n_rows, n_in, weights, n_out, biases, out, lanes
    "gemv_lanes": types.void(_f32, _n, _n, _f32, _n, _f32, _f32, _f32),
    # columns, n_in, n_items, weights, n_out, out
    "sums_double": types.void(_f32, _n, _n, _f64, _n, _f64),
    # maps, n_values, map_step, image_step, row_step, height, width, kx, ky, sx, sy,
    # out, n_maps, n_images, oh, ow, line
    "max_pool": types.void(_f32, _n, _n, _n, _n, _n, _n, _n, _n, _n, _n, _f32, _n, _n, _n, _n, _f32),
    # pixels, height, width, boxes, n_boxes, size, rows0, rows1, wrow0, wrow1, cols0, cols1,
    # wcol0, wcol1, out
    "crop_linear": types.void(_f32, _n, _n, _i64, _n, _n, _i64, _i64, _f32, _f32, _i64, _i64,
                              _f32, _f32, _f32),
    # src, n_src, src_row, cols0, cols1, wcol0, wcol1, copy, n_cols, rows0, rows1, wrow0, wrow1,
    # n_rows, out, n_out, out_row, line0, line1
    "resize_linear": types.void(_f32, _n, _n, _i64, _i64, _f32, _f32, _i64, _n, _i64, _i64, _f32, _f32,
                                _n, _f32, _n, _n, _f32, _f32),
    # a, b, c, out, n
    "fma_many": types.void(_f32, _f32, _f32, _f32, _n),
    # rects, n, order, threshold (one float32), minimum, dropped, kept, n_kept
    "nms": types.void(_i64, _n, _i64, _f32, _n, _i64, _i64, _i64),
}


def _conv_chains_entry(planes, n_planes, weights, n_groups, n_cols, n_out, offsets, blocks, n_blocks,
                       slopes, n_slopes, out, out_row_stride, span, run_step, run_length, maps, plane, scratch):
    places = carray(offsets, (n_cols - 1,))
    absolute = carray(_as_int64(scratch, 64), (n_cols - 1,))  # each column's place in the planes
    of_map = carray(maps, (n_cols - 1,))
    for k in range(n_cols - 1):
        absolute[k] = of_map[k] * plane + places[k]
    conv_chains(carray(planes, (n_planes,)), carray(weights, (n_groups, n_cols, 4)), n_out,
                absolute, carray(blocks, (n_blocks,)),
                carray(slopes, (n_slopes,)), carray(out, (n_out, out_row_stride))[:, :span],
                run_step, run_length, carray(scratch, (64,)))


def _gemv_lanes_entry(x, n_rows, n_in, weights, n_out, biases, out, lanes):
    gemv_lanes(carray(x, (n_rows, n_in)), carray(weights, (n_in, n_out)), carray(biases, (n_out,)),
               carray(out, (n_rows, n_out)), carray(lanes, (LANES, n_out)))


def _sums_double_entry(columns, n_in, n_items, weights, n_out, out):
    sums_double(carray(columns, (n_in, n_items)), carray(weights, (n_in, n_out)),
                carray(out, (n_out, n_items)))


def _max_pool_entry(maps, n_values, map_step, image_step, row_step, height, width, kx, ky, sx, sy,
                    out, n_maps, n_images, oh, ow, line):
    max_pool(carray(maps, (n_values,)), map_step, image_step, row_step, height, width, kx, ky, sx, sy,
             carray(out, (n_maps, n_images, oh, ow)), carray(line, (width,)))


def _crop_linear_entry(pixels, height, width, boxes, n_boxes, size, rows0, rows1, wrow0, wrow1,
                       cols0, cols1, wcol0, wcol1, out):
    taps = (n_boxes, size)
    crop_linear(carray(pixels, (height * width * 3,)), height, width, carray(boxes, (n_boxes, 4)),
                carray(rows0, taps), carray(rows1, taps), carray(wrow0, taps), carray(wrow1, taps),
                carray(cols0, taps), carray(cols1, taps), carray(wcol0, taps), carray(wcol1, taps),
                carray(out, (n_boxes, size, size, 3)))


def _resize_linear_entry(src, n_src, src_row, cols0, cols1, wcol0, wcol1, copy, n_cols, rows0, rows1,
                         wrow0, wrow1, n_rows, out, n_out, out_row, line0, line1):
    resize_linear(carray(src, (n_src,)), src_row, carray(cols0, (n_cols,)), carray(cols1, (n_cols,)),
                  carray(wcol0, (n_cols,)), carray(wcol1, (n_cols,)), carray(copy, (n_cols,)),
                  carray(rows0, (n_rows,)), carray(rows1, (n_rows,)), carray(wrow0, (n_rows,)),
                  carray(wrow1, (n_rows,)), carray(out, (n_out,)), out_row, carray(line0, (n_cols,)),
                  carray(line1, (n_cols,)))


def _nms_entry(rects, n, order, threshold, minimum, dropped, kept, n_kept):
    carray(n_kept, (1,))[0] = nms(carray(rects, (n, 4)), carray(order, (n,)), carray(threshold, (1,))[0], minimum,
                                  carray(dropped, (n,)), carray(kept, (n,)))


def _fma_many_entry(a, b, c, out, n):
    fma_many(carray(a, (n,)), carray(b, (n,)), carray(c, (n,)), carray(out, (n,)))


def compile_entry_points() -> dict:
    """{name: numba cfunc} for ENTRY_POINTS: compiled now, for this machine (seconds)."""
    bodies = {"conv_chains": _conv_chains_entry, "gemv_lanes": _gemv_lanes_entry,
              "sums_double": _sums_double_entry, "max_pool": _max_pool_entry,
              "crop_linear": _crop_linear_entry, "resize_linear": _resize_linear_entry,
              "fma_many": _fma_many_entry, "nms": _nms_entry}
    return {name: cfunc(signature, nopython=True, error_model="numpy")(bodies[name])
            for name, signature in ENTRY_POINTS.items()}
