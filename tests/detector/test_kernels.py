"""The numba kernels (mtcnn_cli/detector/kernels.py) against a scalar reference.

The reference below shares no code with the kernels: it follows the order of
operations stated in ../shared/docs/openface-mtcnn.md, section 4, one output at
a time, and does every float32 operation exactly with fractions.Fraction, then
rounds the exact rational to the nearest float32 (ties to even) with its own
integer arithmetic. Nothing goes through float64 on the way to float32, so
there is no double rounding. The float64 kernel (sums_double) is checked
against plain Python floats, which are IEEE doubles.

Data are standard normal (full mantissas), so the order of summation changes
the last bits. A few tests check this directly: another order really does give
different results on some outputs, so a kernel with the wrong order would fail.
Comparisons are bit for bit, signed zeros included.
"""
import math
from fractions import Fraction

import numpy as np
import pytest

from mtcnn_cli.detector import layers, native

F32_MANTISSA = 24  # significand bits, the leading one included
F32_MIN_EXP = -126  # exponent of the smallest normal number
F32_OVERFLOW = 2 ** 128  # anything that rounds to this or beyond is infinite


# --- the reference: exact arithmetic, one rounding to float32 ---------------

def round_f32(q: Fraction, negative_zero: bool = False) -> float:
    """The float32 nearest to the exact rational q, ties to even, as a Python
    float (which holds it exactly). An exact zero gets the sign given."""
    if q == 0:
        return -0.0 if negative_zero else 0.0
    sign = -1 if q < 0 else 1
    num, den = abs(q.numerator), q.denominator
    # e = floor(log2(num / den)): bit lengths give it to within one
    e = num.bit_length() - den.bit_length()
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    # the spacing of float32 values around q: 2^(e - 23), never below 2^-149
    quantum = max(e, F32_MIN_EXP) - (F32_MANTISSA - 1)
    if quantum >= 0:
        whole, rest = divmod(num, den << quantum)
        half_twice, twice_rest = den << quantum, 2 * rest
    else:
        whole, rest = divmod(num << -quantum, den)
        half_twice, twice_rest = den, 2 * rest
    if twice_rest > half_twice or (twice_rest == half_twice and whole & 1):
        whole += 1
    if quantum > 0 and whole << quantum >= F32_OVERFLOW:
        return sign * math.inf
    # whole < 2^25 and quantum >= -149: the value is exact in a double
    return sign * math.ldexp(whole, quantum)


def _negative(x: float) -> bool:
    return math.copysign(1.0, x) < 0


def fma_ref(a: float, b: float, c: float) -> float:
    """float32 a * b + c, rounded once."""
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    # an exact zero is -0 only when both the product and c are negative zeros
    return round_f32(exact, negative_zero=(a * b == 0 and c == 0
                                           and _negative(a) != _negative(b) and _negative(c)))


def add_ref(a: float, b: float) -> float:
    """float32 a + b, rounded once."""
    return round_f32(Fraction(a) + Fraction(b), negative_zero=_negative(a) and _negative(b))


def mul_ref(a: float, b: float) -> float:
    """float32 a * b, rounded once."""
    return round_f32(Fraction(a) * Fraction(b), negative_zero=_negative(a) != _negative(b))


def ref_chains(xs, ws, bias, blocks, slope=None):
    """One convolution output: the columns xs[k] * ws[k], k < K - 1, then the
    bias (column K - 1, input 1.0); one chain from +0 per block, the blocks'
    chains added in order; then a PReLU if a slope is given."""
    last = len(xs)
    total = None
    for k0, k1 in zip(blocks[:-1], blocks[1:]):
        acc = 0.0
        for k in range(k0, k1):
            acc = add_ref(acc, bias) if k == last else fma_ref(xs[k], ws[k], acc)
        total = acc if total is None else add_ref(total, acc)
    if slope is not None and not total >= 0:
        total = mul_ref(total, slope)
    return total


def ref_lanes(xs, ws, bias):
    """One output of a fully connected layer as 16 lanes, reduced pairwise."""
    lanes = [0.0] * 16
    for k, (x, w) in enumerate(zip(xs, ws)):
        lanes[k % 16] = fma_ref(x, w, lanes[k % 16])
    g = [add_ref(add_ref(lanes[4 * q], lanes[4 * q + 1]), add_ref(lanes[4 * q + 2], lanes[4 * q + 3]))
         for q in range(4)]
    return add_ref(add_ref(add_ref(g[0], g[1]), add_ref(g[2], g[3])), bias)


def ref_double(xs, ws):
    """A sum of products in IEEE double, in order from 0.0."""
    s = 0.0
    for x, w in zip(xs, ws):
        s = s + x * w
    return s


def ref_conv_output(maps, kernels_, biases, blocks, slopes, o, n, y, x):
    """Output map o at (y, x) of image n of a valid cross-correlation over planar
    maps (C, N, H, W), kernels (C, O, kh, kw): the im2col columns in the C++'s
    order, map, then kernel column, then kernel row."""
    c_in, _, kh, kw = kernels_.shape
    xs, ws = [], []
    for c in range(c_in):
        for kx in range(kw):
            for ky in range(kh):
                xs.append(float(maps[c, n, y + ky, x + kx]))
                ws.append(float(kernels_[c, o, ky, kx]))
    slope = None if slopes is None else float(slopes[o])
    return ref_chains(xs, ws, float(biases[o]), blocks, slope)


# --- helpers -----------------------------------------------------------------

def normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def f32_from_bits(bits):
    return np.asarray(bits, np.uint32).view(np.float32)


def assert_same_bits(got, want):
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    assert got.shape == want.shape
    differ = got.view(np.uint32) != want.view(np.uint32)
    if differ.any():
        first = tuple(int(i) for i in np.argwhere(differ)[0])
        raise AssertionError(f"{int(differ.sum())} of {differ.size} results differ, "
                             f"first at {first}: {got[first]!r} != {want[first]!r}")


def run_conv_chains(planes, weights, offsets, blocks, slopes, span):
    out = np.full((weights.shape[1], span), np.nan, np.float32)
    native.conv_chains(planes, native.ConvWeights(weights, slopes),
                       native.ConvWindows(np.asarray(offsets, np.int64), np.asarray(blocks, np.int64)), out)
    return out


def ref_conv_chains(planes, weights, offsets, blocks, slopes, outputs, positions):
    """The reference for conv_chains at the given outputs x positions."""
    n_cols = weights.shape[0]
    result = np.empty((len(outputs), len(positions)), np.float32)
    for i, o in enumerate(outputs):
        ws = weights[:n_cols - 1, o].tolist()
        slope = None if slopes is None else float(slopes[o])
        for j, p in enumerate(positions):
            xs = [float(planes[offsets[k] + p]) for k in range(n_cols - 1)]
            result[i, j] = ref_chains(xs, ws, float(weights[n_cols - 1, o]), list(blocks), slope)
    return result


def random_conv_problem(rng, n_cols, n_out, span, length=None):
    """Planes of normal values, weights (K, O), offsets anywhere a window fits."""
    length = length or span + 50
    planes = normal(rng, length)
    weights = normal(rng, n_cols, n_out)
    offsets = rng.integers(0, length - span + 1, max(n_cols - 1, 0))
    return planes, weights, offsets


# --- the reference's own rounding ----------------------------------------------

def test_round_f32_fused_multiply_add_rounds_once():
    a = 1 + 2.0 ** -12
    assert fma_ref(a, a, -(1 + 2.0 ** -11)) == 2.0 ** -24
    # unfused: a * a rounds to 1 + 2^-11 first, and the difference is 0
    assert add_ref(mul_ref(a, a), -(1 + 2.0 ** -11)) == 0.0


def test_round_f32_ties_go_to_even():
    assert add_ref(1.0, 2.0 ** -24) == 1.0  # halfway, 1 is even
    assert add_ref(1 + 2.0 ** -23, 2.0 ** -24) == 1 + 2.0 ** -22  # halfway, 1 + 2^-23 is odd
    assert add_ref(1.0, 2.0 ** -24 + 2.0 ** -40) == 1 + 2.0 ** -23  # past halfway
    assert add_ref(-1.0, -(2.0 ** -24)) == -1.0
    assert round_f32(Fraction(3, 2)) == 1.5
    assert round_f32(Fraction(1, 3)) == float(np.float32(1 / 3))


def test_round_f32_subnormals_and_zeros():
    tiny = float(f32_from_bits(1))  # 2^-149
    assert tiny == 2.0 ** -149
    assert round_f32(Fraction(1, 2 ** 149)) == tiny
    assert round_f32(Fraction(1, 2 ** 150)) == 0.0  # a tie with 0: even
    assert round_f32(Fraction(3, 2 ** 151)) == tiny  # 0.75 * 2^-149
    assert round_f32(Fraction(3, 2 ** 150)) == 2 * tiny  # 1.5 * 2^-149: a tie, to even 2
    assert round_f32(-Fraction(5, 2 ** 151)) == -tiny
    assert _negative(round_f32(-Fraction(1, 2 ** 151)))  # underflow keeps the sign
    # the largest subnormal plus half a step: a tie, to the even smallest normal
    assert round_f32(Fraction(2 ** 24 - 1, 2 ** 150)) == 2.0 ** -126
    assert mul_ref(2.0 ** -70, 2.0 ** -70) == tiny * 2 ** 9
    assert not _negative(add_ref(1.0, -1.0)) and not _negative(add_ref(-0.0, 0.0))
    assert _negative(add_ref(-0.0, -0.0))
    assert _negative(mul_ref(-3.0, 0.0)) and not _negative(mul_ref(-3.0, -0.0))
    assert _negative(fma_ref(-2.0, 0.0, -0.0)) and not _negative(fma_ref(2.0, 0.0, -0.0))
    assert not _negative(fma_ref(2.0, 3.0, -6.0))
    assert round_f32(Fraction(2 ** 128)) == math.inf
    assert round_f32(-Fraction(2 ** 104 * (2 ** 24 - 1))) == -float(np.finfo(np.float32).max)


def random_float32_pairs(rng, n):
    """Finite float32 pairs of all magnitudes, signs and subnormals, half of them
    close in magnitude so that their sum cancels."""
    def finite(bits):
        x = f32_from_bits(bits)
        return np.where(np.isfinite(x), x, np.float32(1.5))
    a = finite(rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32))
    b = finite(rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32))
    near = (a.view(np.uint32) ^ np.uint32(0x80000000)) + rng.integers(-300, 300, n).astype(np.uint32)
    b[: n // 2] = finite(near[: n // 2])
    return a, b


def test_round_f32_addition_matches_numpy():
    """numpy's float32 addition is IEEE, so correctly rounded."""
    rng = np.random.default_rng(11)
    a, b = random_float32_pairs(rng, 3000)
    small = normal(rng, 2000) * np.float32(2.0 ** -135)  # in and around the subnormals
    a, b = np.concatenate([a, small[:1000]]), np.concatenate([b, small[1000:]])
    with np.errstate(over="ignore"):
        want = a + b
    keep = np.isfinite(want)
    got = [add_ref(x, y) for x, y in zip(a[keep].tolist(), b[keep].tolist())]
    assert_same_bits(got, want[keep])


def test_round_f32_multiplication_matches_numpy():
    rng = np.random.default_rng(12)
    a, b = random_float32_pairs(rng, 3000)
    with np.errstate(over="ignore", under="ignore"):
        want = a * b
    keep = np.isfinite(want)
    got = [mul_ref(x, y) for x, y in zip(a[keep].tolist(), b[keep].tolist())]
    assert_same_bits(got, want[keep])


# --- check_fma and the kernels' fma -------------------------------------------------

def test_check_fma_passes():
    native.check_fma()


def test_conv_chains_computes_a_single_fused_multiply_add():
    """Columns [1.0 times c, a times b] and a zero bias: out = fma(a, b, c) + 0.
    The triples are built so that rounding the product first would show: c is
    minus the rounded product, so the result is the product's rounding error;
    for the first ten, products near 2^-110 make that error subnormal."""
    rng = np.random.default_rng(21)
    n = 60
    a, b = normal(rng, n), normal(rng, n)
    a[:10] *= np.float32(2.0 ** -55)
    b[:10] *= np.float32(2.0 ** -55)
    c = -(a * b)
    c[40:] = normal(rng, n - 40)
    planes = np.concatenate([np.ones(n, np.float32), a])
    weights = np.stack([c, b, np.zeros(n, np.float32)])  # (K=3, O=n)
    out = run_conv_chains(planes, weights, [0, n], [0, 3], None, n)
    want = np.array([[add_ref(fma_ref(x, w, cc), 0.0) for x in a.tolist()]
                     for w, cc in zip(b.tolist(), c.tolist())], np.float32)
    assert_same_bits(out, want)
    diagonal = out[np.arange(n), np.arange(n)]
    assert (diagonal[:40] != 0).sum() > 30  # the fused results: rounding errors, mostly nonzero
    assert (diagonal[:10] != 0).any() and (np.abs(diagonal[:10]) < np.finfo(np.float32).tiny).all()


# --- chain_blocks: the doc's rule, worked by hand -----------------------------------

@pytest.mark.parametrize("n_out, n_pixels, n_cols, want", [
    (64, 64, 577, [0, 288, 577]),  # ONet's third convolution: (577 // 2 + 15) // 16 * 16 = 288
    (64, 27, 577, [0, 577]),  # 64 * 27 * 577 = 997,056: the small kernel, one chain
    (64, 28, 577, [0, 288, 577]),  # 1,033,984
    (100, 100, 448, [0, 448]),  # K <= 448: one chain however big the product
    (100, 100, 449, [0, 224, 449]),  # (224 + 15) // 16 * 16 = 224
    (100, 100, 895, [0, 448, 895]),  # (447 + 15) // 16 * 16 = 448
    (100, 100, 896, [0, 448, 896]),  # 896 remain: 448, then the rest (448)
    (100, 100, 900, [0, 448, 688, 900]),  # 448; 452 left: (226 + 15) // 16 * 16 = 240; 212
    (100, 100, 1000, [0, 448, 736, 1000]),  # 448; 552 left: 288; 264
    (100, 100, 2000, [0, 448, 896, 1344, 1680, 2000]),  # 3 x 448; 656 left: 336; 320
    (1, 1, 2000, [0, 2000]),  # a small product
    (1000, 1, 1000, [0, 1000]),  # exactly 1,000,000: still small
    (1000, 1, 1001, [0, 448, 736, 1001]),  # 448; 553 left: (276 + 15) // 16 * 16 = 288
    (10, 1, 28, [0, 28]),
])
def test_chain_blocks_follow_the_rule(n_out, n_pixels, n_cols, want):
    assert list(layers.chain_blocks(n_out, n_pixels, n_cols)) == want


# --- conv_chains, directly ---------------------------------------------------------

@pytest.mark.parametrize("n_cols", [1, 2, 3, 4, 5, 6, 7, 8, 9, 14])
@pytest.mark.parametrize("split", ["one chain", "two chains", "three chains", "bias alone"])
def test_conv_chains_every_remainder_of_four(n_cols, split):
    """(K - 1) mod 4 = 0, 1, 2, 3, and blocks of every length mod 4."""
    blocks = {"one chain": [0, n_cols], "two chains": [0, n_cols // 2, n_cols],
              "three chains": [0, 1, (n_cols + 1) // 2, n_cols], "bias alone": [0, n_cols - 1, n_cols]}[split]
    blocks = sorted(set(blocks))
    rng = np.random.default_rng(100 + n_cols)
    planes, weights, offsets = random_conv_problem(rng, n_cols, 3, 37)
    slopes = np.array([0.25, -0.5, 1.75], np.float32)
    for s in (None, slopes):
        out = run_conv_chains(planes, weights, offsets, blocks, s, 37)
        assert_same_bits(out, ref_conv_chains(planes, weights, offsets, blocks, s, range(3), range(37)))


@pytest.mark.parametrize("n_out", [1, 10, 64, 200])
def test_conv_chains_across_position_blocks(n_out):
    """Positions go 16 at a time, the last 16 ending at the span (300 = 18 x 16
    + 12: the last block repeats 4 positions): check those either side of
    every multiple of 16, 40 and 128 up to the end."""
    rng = np.random.default_rng(200 + n_out)
    span = 300
    planes, weights, offsets = random_conv_problem(rng, 10, n_out, span)
    slopes = normal(rng, n_out)
    out = run_conv_chains(planes, weights, offsets, [0, 10], slopes, span)
    positions = sorted({p for m in (16, 40, 128) for t in range(m, span, m) for p in (t - 1, t)} | {0, span - 1})
    outputs = sorted({0, n_out - 1} | set(rng.integers(0, n_out, 6).tolist()))
    want = ref_conv_chains(planes, weights, offsets, [0, 10], slopes, outputs, positions)
    assert_same_bits(out[np.ix_(outputs, positions)], want)


@pytest.mark.parametrize("n_out", range(1, 10))
@pytest.mark.parametrize("span", [1, 15, 16, 17, 31, 33])
def test_conv_chains_every_remainder_of_the_register_block(n_out, span):
    """The inner block is 16 positions x 4 outputs: outputs beyond a multiple
    of 4, positions beyond a multiple of 16 (the last block moved back to end
    at the span) and spans under 16 (the inputs padded) too."""
    rng = np.random.default_rng(1000 * n_out + span)
    planes, weights, offsets = random_conv_problem(rng, 7, n_out, span, length=span + 20)
    slopes = normal(rng, n_out)
    out = run_conv_chains(planes, weights, offsets, [0, 3, 7], slopes, span)
    assert_same_bits(out, ref_conv_chains(planes, weights, offsets, [0, 3, 7], slopes, range(n_out), range(span)))


@pytest.mark.parametrize("step, length, n_runs", [(11, 11, 5), (16, 11, 4), (121, 97, 3), (100, 78, 4),
                                                 (24, 1, 7), (40, 17, 3), (33, 33, 1)])
def test_conv_chains_computes_every_position_of_its_runs(step, length, n_runs):
    """Only the runs [n * step, n * step + length) are asked for (a batch's
    images, each one's valid windows): runs under 16 positions, runs that end
    inside a block of 16, one run for all; with chains in two blocks."""
    rng = np.random.default_rng(step * 100 + length)
    span = (n_runs - 1) * step + length
    planes, weights, offsets = random_conv_problem(rng, 9, 6, span)
    slopes = normal(rng, 6)
    out = np.full((6, span), np.nan, np.float32)
    native.conv_chains(planes, native.ConvWeights(weights, slopes),
                       native.ConvWindows(np.asarray(offsets, np.int64), np.array([0, 4, 9], np.int64)), out,
                       (step, length))
    positions = [n * step + p for n in range(n_runs) for p in range(length)]
    want = ref_conv_chains(planes, weights, offsets, [0, 4, 9], slopes, range(6), positions)
    assert_same_bits(out[:, positions], want)


@pytest.mark.parametrize("n_cols, n_out, span", [(577, 4, 20), (900, 2, 12), (1000, 3, 10), (2000, 2, 6), (2000, 5, 50)])
def test_conv_chains_long_columns_in_blocks(n_cols, n_out, span):
    """K above 448 in the blocks of the level-3 driver: the reference's blocks
    are chain_blocks' (checked against the rule above)."""
    rng = np.random.default_rng(n_cols)
    planes, weights, offsets = random_conv_problem(rng, n_cols, n_out, span, length=3000)
    blocks = layers.chain_blocks(100, 100, n_cols)
    assert len(blocks) > 2
    slopes = np.linspace(-1.5, 2.5, n_out).astype(np.float32)
    out = run_conv_chains(planes, weights, offsets, blocks, slopes, span)
    assert_same_bits(out, ref_conv_chains(planes, weights, offsets, blocks, slopes, range(n_out), range(span)))
    # the split matters: one chain over all columns gives other bits somewhere
    one_chain = run_conv_chains(planes, weights, offsets, [0, n_cols], slopes, span)
    assert (one_chain != out).any()


def test_conv_chains_prelu_slopes():
    """Slopes above 1, negative, zero (a negative result becomes -0), tiny (the
    product is subnormal) and huge; v >= 0 is kept as it is."""
    rng = np.random.default_rng(31)
    slopes = np.array([0.25, 1.0, 3.5, -0.75, -2.0, 0.0, 2.0 ** -140, 1e30], np.float32)
    planes, weights, offsets = random_conv_problem(rng, 5, len(slopes), 64)
    out = run_conv_chains(planes, weights, offsets, [0, 5], slopes, 64)
    plain = run_conv_chains(planes, weights, offsets, [0, 5], None, 64)
    assert (plain < 0).sum() > 100 and (plain > 0).sum() > 100
    assert_same_bits(out, ref_conv_chains(planes, weights, offsets, [0, 5], slopes, range(len(slopes)), range(64)))
    assert_same_bits(plain, ref_conv_chains(planes, weights, offsets, [0, 5], None, range(len(slopes)), range(64)))
    negative = plain[5] < 0  # slope 0: -0 there, the rest unchanged
    assert (out[5][negative] == 0).all() and np.signbit(out[5][negative]).all()
    assert_same_bits(out[5][~negative], plain[5][~negative])

    # no columns and a bias of -0: the chain starts from +0, so +0, left alone
    zero = run_conv_chains(planes[:1], np.array([[-0.0]], np.float32), [], [0, 1],
                           np.array([-3.0], np.float32), 1)
    assert_same_bits(zero, [[ref_chains([], [], -0.0, [0, 1], -3.0)]])
    assert not np.signbit(zero[0, 0])


# --- through layers.conv --------------------------------------------------------

def check_layer(rng, c, n, h, w, c_out, kh, kw, blocks, slopes=None, picks=None):
    """layers.conv against the reference on all outputs, or `picks` of them; returns
    (maps, kernels, biases, out) for further checks."""
    maps = normal(rng, c, n, h, w)
    kernels_, biases = normal(rng, c, c_out, kh, kw), normal(rng, c_out)
    out = layers.conv(maps, layers.conv_weight_matrix(kernels_, biases), kh, kw, slopes)
    assert out.shape == (c_out, n, h - kh + 1, w - kw + 1)
    if picks is None:
        picks = list(np.ndindex(*out.shape))
    else:
        picks = [tuple(int(rng.integers(0, size)) for size in out.shape) for _ in range(picks)]
    want = [ref_conv_output(maps, kernels_, biases, blocks, slopes, *pick) for pick in picks]
    assert_same_bits([out[pick] for pick in picks], want)
    return maps, kernels_, biases, out


@pytest.mark.parametrize("c, n, h, w, c_out, kh, kw", [
    (3, 2, 8, 9, 10, 3, 3),  # PNet's first layer, K = 28
    (16, 1, 7, 6, 6, 3, 3),  # K = 145
    (2, 3, 6, 5, 5, 2, 3),  # a kernel that is not square
    (5, 1, 4, 4, 3, 1, 1),  # 1x1 kernels, K = 6
])
def test_conv_random_shapes(c, n, h, w, c_out, kh, kw):
    rng = np.random.default_rng(c * 1000 + h * 10 + w)
    k = c * kh * kw + 1
    assert list(layers.chain_blocks(c_out, (h - kh + 1) * (w - kw + 1), k)) == [0, k]
    maps, kernels_, biases, out = check_layer(rng, c, n, h, w, c_out, kh, kw, [0, k])
    if k >= 28:  # the test has teeth: a float64 sum rounded once differs somewhere
        windows = np.lib.stride_tricks.sliding_window_view(maps.astype(np.float64), (kh, kw), axis=(2, 3))
        exact = np.einsum("cnyxij,coij->onyx", windows, kernels_.astype(np.float64)) + biases[:, None, None, None]
        assert (exact.astype(np.float32) != out).sum() > 5


def test_conv_with_prelu():
    rng = np.random.default_rng(41)
    slopes = np.array([0.25, 1.5, -0.5, 0.0, 2.0, -1.25], np.float32)
    check_layer(rng, 4, 2, 6, 7, 6, 3, 3, [0, 37], slopes)


@pytest.mark.parametrize("h, w", [(3, 9), (9, 3), (3, 3)])
def test_conv_one_row_one_column_one_pixel(h, w):
    """A single output row, a single output column, a 1x1 output, for 3 images."""
    rng = np.random.default_rng(h * 10 + w)
    check_layer(rng, 3, 3, h, w, 4, 3, 3, [0, 28], np.array([0.5, -1, 2, 0.125], np.float32))


def test_conv_577_columns_in_two_chains():
    """ONet's third convolution: 64 maps, 3x3, 64 outputs, 64 pixels per image:
    64 * 64 * 577 > 1e6, so each output is chain(0..287) + chain(288..576).
    A few hundred outputs against the reference."""
    rng = np.random.default_rng(577)
    assert list(layers.chain_blocks(64, 64, 577)) == [0, 288, 577]
    slopes = normal(rng, 64)
    maps, kernels_, biases, out = check_layer(rng, 64, 2, 10, 10, 64, 3, 3, [0, 288, 577], slopes, picks=250)
    # the split matters: one chain over the 577 columns gives other bits somewhere
    weights = layers.conv_weight_matrix(kernels_, biases)
    one = np.empty((64, 200), np.float32)
    of_map, places = layers.window_places(64, 10, 3, 3)
    native.conv_chains(maps.reshape(-1), native.ConvWeights(weights, slopes),
                       native.ConvWindows(places, np.array([0, 577]), of_map), one[:, :178], plane=200)
    assert (one.reshape(64, 2, 10, 10)[:, :, :8, :8] != out).sum() > 10


# --- gemv_lanes ----------------------------------------------------------------

@pytest.mark.parametrize("n_in, n_out, n_rows", [(576, 3, 1), (576, 2, 3), (1152, 2, 1), (1152, 1, 3),
                                                 (16, 7, 1), (16, 5, 3), (32, 4, 2), (576, 128, 2),
                                                 (1152, 256, 1), (64, 19, 3), (16, 8, 2)])
def test_gemv_lanes(n_in, n_out, n_rows):
    rng = np.random.default_rng(n_in + 10 * n_out + n_rows)
    x, weights, biases = normal(rng, n_rows, n_in), normal(rng, n_in, n_out), normal(rng, n_out)
    out = native.gemv_lanes(x, weights, biases, np.full((n_rows, n_out), np.nan, np.float32))
    want = [[ref_lanes(x[i].tolist(), weights[:, o].tolist(), float(biases[o])) for o in range(n_out)]
            for i in range(n_rows)]
    assert_same_bits(out, want)


def test_gemv_lanes_order_matters():
    """The test has teeth: a single chain, or the lanes summed in order, give
    other bits on some outputs than the 16 lanes reduced pairwise."""
    rng = np.random.default_rng(61)
    x, weights, biases = normal(rng, 1, 576), normal(rng, 576, 24), normal(rng, 24)
    out = native.gemv_lanes(x, weights, biases, np.empty((1, 24), np.float32))[0]
    xs = x[0].tolist()
    single, in_order = [], []
    for o in range(24):
        ws = weights[:, o].tolist()
        acc = 0.0
        for a, b in zip(xs, ws):
            acc = fma_ref(a, b, acc)
        single.append(add_ref(acc, float(biases[o])))
        lanes = [0.0] * 16
        for k, (a, b) in enumerate(zip(xs, ws)):
            lanes[k % 16] = fma_ref(a, b, lanes[k % 16])
        s = 0.0
        for lane in lanes:
            s = add_ref(s, lane)
        in_order.append(add_ref(s, float(biases[o])))
    assert (np.array(single, np.float32) != out).any()
    assert (np.array(in_order, np.float32) != out).any()


def test_fully_connected_with_100_outputs_or_more_takes_the_lanes():
    rng = np.random.default_rng(62)
    x, weights, biases = normal(rng, 2, 576), normal(rng, 576, 128), normal(rng, 128)
    out = layers.fully_connected(x, weights, biases)
    for o in rng.choice(128, 8, replace=False).tolist():
        for i in range(2):
            assert_same_bits(out[i, o], ref_lanes(x[i].tolist(), weights[:, o].tolist(), float(biases[o])))


# --- sums_double ---------------------------------------------------------------

@pytest.mark.parametrize("n_in, n_out, n_items", [(576, 6, 3), (256, 16, 2), (32, 6, 40), (1, 2, 3),
                                                  (32, 6, 1300), (3, 2, 512)])  # past blocks of 512 items
def test_sums_double(n_in, n_out, n_items):
    rng = np.random.default_rng(n_in + n_out)
    columns = normal(rng, n_in, n_items)
    weights = normal(rng, n_in, n_out).astype(np.float64)  # float32 values, as the layers hold them
    out = native.sums_double(columns, weights, np.full((n_out, n_items), np.nan))
    want = np.array([[ref_double(columns[:, p].tolist(), weights[:, o].tolist()) for p in range(n_items)]
                     for o in range(n_out)])
    assert out.dtype == np.float64
    assert (out.view(np.uint64) == want.view(np.uint64)).all()
    if n_in >= 256:  # the test has teeth: the correctly rounded sum differs somewhere
        exact = np.array([[math.fsum(a * b for a, b in zip(columns[:, p].tolist(), weights[:, o].tolist()))
                           for p in range(n_items)] for o in range(n_out)])
        assert (exact != out).any()


def test_fully_connected_below_100_outputs_sums_in_double():
    """Accumulated in double, the bias added in double, then one rounding to float32."""
    rng = np.random.default_rng(71)
    x, weights, biases = normal(rng, 3, 256), normal(rng, 256, 16), normal(rng, 16)
    out = layers.fully_connected(x, weights, biases)
    want = [[round_f32(Fraction(ref_double(x[i].tolist(), weights[:, o].tolist()) + float(biases[o])))
             for o in range(16)] for i in range(3)]
    assert_same_bits(out, want)


@pytest.mark.parametrize("plane", [40, 57])
def test_conv_chains_reads_maps_placed_by_the_plane_length(plane):
    """Windows given as (map, place in the map) read map * plane + place: the
    same bits as the same windows given as absolute offsets, for any plane."""
    rng = np.random.default_rng(plane)
    maps, places = np.repeat(np.arange(3), 4), np.tile([0, 1, 7, 8], 3)
    planes = normal(rng, 3 * plane)
    weights, slopes = normal(rng, 13, 5), normal(rng, 5)
    span = plane - 9
    got = np.full((5, span), np.nan, np.float32)
    native.conv_chains(planes, native.ConvWeights(weights, slopes),
                       native.ConvWindows(places, np.array([0, 13], np.int64), maps), got, plane=plane)
    want = ref_conv_chains(planes, weights, maps * plane + places, [0, 13], slopes, range(5), range(span))
    assert_same_bits(got, want)


def test_conv_chains_over_one_map_longer_than_its_few_windows():
    """Under 16 positions, one map of 60 values of which the windows read the
    first 20: the inputs are padded past what the windows reach, not to the
    map's length."""
    rng = np.random.default_rng(9)
    planes, weights, slopes = normal(rng, 60), normal(rng, 3, 2), normal(rng, 2)
    got = np.full((2, 5), np.nan, np.float32)
    native.conv_chains(planes, native.ConvWeights(weights, slopes),
                       native.ConvWindows(np.array([0, 15]), np.array([0, 3]), np.array([0, 0])), got, plane=60)
    assert_same_bits(got, ref_conv_chains(planes, weights, [0, 15], [0, 3], slopes, range(2), range(5)))
