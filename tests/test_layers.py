"""The layers against their plain definitions (small loops over small arrays).

Values are small integers or halves where exactness matters, so that every
order of summation gives the same float32 result and the comparison is exact."""
import numpy as np
import pytest

from mtcnn_cli.detector import layers
from mtcnn_cli.detector.datfile import Conv, FullyConnected, MaxPool, PReLU
from mtcnn_cli.detector.network import Network

rng = np.random.default_rng(7)


def ints(*shape, lo=-4, hi=5):
    return rng.integers(lo, hi, shape).astype(np.float32)


def naive_conv(maps, kernels, biases):
    """maps (N, H, W, C_in), kernels (C_in, C_out, kh, kw): out[o](y, x) = b[o] +
    sum_i sum_ky sum_kx in[i](y+ky, x+kx) * K[i][o](ky, kx)."""
    n, h, w, c_in = maps.shape
    _, c_out, kh, kw = kernels.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, c_out), np.float64)
    for o in range(c_out):
        for y in range(h - kh + 1):
            for x in range(w - kw + 1):
                window = maps[:, y:y + kh, x:x + kw, :]  # (N, kh, kw, C_in)
                out[:, y, x, o] = biases[o] + np.einsum("nabi,iab->n", window, kernels[:, o])
    return out.astype(np.float32)


@pytest.mark.parametrize("n, h, w, c_in, c_out, k", [(1, 7, 9, 3, 4, 3), (3, 5, 6, 2, 5, 2), (1, 3, 3, 4, 2, 3)])
def test_conv_is_cross_correlation_with_bias(n, h, w, c_in, c_out, k):
    maps, kernels, biases = ints(n, h, w, c_in), ints(c_in, c_out, k, k), ints(c_out)
    out = layers.conv(maps, layers.conv_weight_matrix(kernels, biases), k, k)
    np.testing.assert_array_equal(out, naive_conv(maps, kernels, biases))


def test_conv_kernel_is_not_square_symmetric():
    # a kernel with a single 1 at (ky=0, kx=1) picks the pixel to the right
    maps = ints(1, 4, 4, 1)
    kernels = np.zeros((1, 1, 2, 2), np.float32)
    kernels[0, 0, 0, 1] = 1
    out = layers.conv(maps, layers.conv_weight_matrix(kernels, np.zeros(1, np.float32)), 2, 2)
    np.testing.assert_array_equal(out[0, :, :, 0], maps[0, :3, 1:, 0])


def test_im2col_column_order_is_map_then_column_then_row():
    maps = np.arange(2 * 3 * 3, dtype=np.float32).reshape(1, 3, 3, 2)  # (N, H, W, C)
    cols = layers.im2col(maps, 2, 2)  # (C*kw*kh + 1, P)
    # output pixel 0 (y=0, x=0); row c*4 + kx*2 + ky holds maps[0, ky, kx, c]
    for c in range(2):
        for kx in range(2):
            for ky in range(2):
                assert cols[c * 4 + kx * 2 + ky, 0] == maps[0, ky, kx, c]
    assert (cols[-1] == 1).all()


@pytest.mark.parametrize("slopes", [[0.25, 0.5], [-0.5, 0.75], [1.5, 0.25], [1.25, -2.0], [1.0, 0.0]])
def test_prelu_matches_its_definition(slopes):
    s = np.float32(slopes)
    x = rng.standard_normal((3, 5, 4, 2)).astype(np.float32) * 10
    x[0, 0, 0] = [0.0, -0.0]
    expected = np.where(x >= 0, x, x * s)
    np.testing.assert_array_equal(layers.prelu(x.copy(), s), expected)


def test_prelu_on_flat_activations_is_per_feature():
    x = np.float32([[-2, 2, -4], [4, -8, 1]])
    np.testing.assert_array_equal(layers.prelu(x.copy(), np.float32([0.5, 0.25, -1])), [[-1, 2, 4], [4, -2, 1]])


def naive_pool(maps, k, s):
    n, h, w, c = maps.shape
    oh, ow = layers.pooled_size(h, k, s), layers.pooled_size(w, k, s)
    out = np.full((n, oh, ow, c), -np.inf, np.float32)
    for oy in range(oh):
        for ox in range(ow):
            out[:, oy, ox] = maps[:, oy * s:oy * s + k, ox * s:ox * s + k].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("h, w, k, s", [(22, 22, 3, 2), (9, 9, 3, 2), (10, 10, 2, 2), (7, 5, 2, 2), (13, 11, 3, 2), (4, 4, 3, 2)])
def test_max_pool_with_partial_edge_windows(h, w, k, s):
    maps = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    np.testing.assert_array_equal(layers.max_pool(maps, k, k, s, s), naive_pool(maps, k, s))


@pytest.mark.parametrize("size, kernel, stride, expected", [(22, 3, 2, 11), (9, 3, 2, 4), (4, 3, 2, 2), (10, 2, 2, 5), (11, 2, 2, 6)])
def test_pooled_size_rounds_halves_up_like_caffe(size, kernel, stride, expected):
    assert layers.pooled_size(size, kernel, stride) == expected


def test_flatten_reads_each_map_column_by_column():
    maps = np.arange(2 * 2 * 3, dtype=np.float32).reshape(1, 2, 3, 2)  # (N, H=2, W=3, C=2)
    flat = layers.flatten(maps)[0]
    h, w = 2, 3
    for c in range(2):
        for x in range(w):
            for y in range(h):
                assert flat[c * h * w + x * h + y] == maps[0, y, x, c]


@pytest.mark.parametrize("n_out", [6, 16, 128, 256])
def test_fully_connected_is_w_v_plus_b(n_out):
    x, w, b = ints(4, 64), ints(64, n_out), ints(n_out)
    np.testing.assert_array_equal(layers.fully_connected(x, w, b), x @ w + b)


def test_gemv_lanes_sums_sixteen_chains_pairwise():
    # lane 0 holds 2^25 (float32 spacing 4 there), lanes 2 and 3 hold 2 each
    # (inputs k = 18 and 3: lane = k mod 16). Pairwise: (2^25 + 0) + (2 + 2)
    # = 2^25 + 4 exactly. Adding the 2s one at a time to 2^25 would lose both
    # (each a tie, rounded to even), giving 2^25.
    x = np.ones((2, 32), np.float32)
    w = np.zeros((32, 1), np.float32)
    w[0, 0], w[18, 0], w[3, 0] = 2.0 ** 25, 2.0, 2.0
    assert layers.gemv_lanes(x, layers.lane_weights(w))[0, 0] == 2.0 ** 25 + 4
    assert np.float32(np.float32(2.0 ** 25) + np.float32(2)) + np.float32(2) == 2.0 ** 25


def test_fully_connected_maps_acts_on_every_pixel():
    maps, w, b = ints(2, 3, 4, 5), ints(5, 6), ints(6)
    out = layers.fully_connected_maps(maps, w, b)
    np.testing.assert_array_equal(out, np.einsum("nhwc,co->nhwo", maps, w) + b)


def test_single_row_gemm_equals_batched_rows():
    a = rng.standard_normal((5, 577)).astype(np.float32)
    b = rng.standard_normal((577, 64)).astype(np.float32)
    whole = layers.sgemm(a, b)
    for i in range(5):
        np.testing.assert_array_equal(layers.sgemm(a[i:i + 1], b), whole[i:i + 1])


def test_network_runs_layers_in_order_and_names_shapes_in_errors():
    net = Network((Conv(ints(3, 4, 3, 3), ints(4)), PReLU(np.float32([[0.5]] * 4)),
                   MaxPool(2, 2, 2, 2), FullyConnected(ints(2, 1), ints(4, 2))))
    out = net(ints(1, 8, 8, 3))
    assert out.shape == (1, 3, 3, 2)
    with pytest.raises(ValueError, match=r"\(1, 8, 8, 5\)"):
        net(ints(1, 8, 8, 5))


# The fast paths against the plain ones: whole-row im2col, pooling, row-wise PReLU

@pytest.mark.parametrize("h, w, c_in, c_out, kh, kw", [
    (3, 3, 3, 4, 3, 3), (2, 2, 2, 5, 2, 2),  # one output pixel
    (3, 17, 3, 6, 3, 3), (2, 9, 4, 3, 2, 2),  # one output row
    (13, 3, 3, 2, 3, 3), (8, 2, 1, 3, 2, 2),  # one output column
    (1, 9, 2, 3, 1, 3), (1, 6, 3, 2, 1, 2), (9, 1, 2, 2, 3, 1),  # one-row and one-column maps
    (12, 12, 3, 10, 3, 3), (11, 12, 10, 16, 3, 3), (24, 24, 3, 28, 3, 3), (13, 17, 48, 64, 2, 2),
    (5, 6, 1, 1, 2, 3)])
def test_wrapped_conv_equals_im2col_conv(monkeypatch, h, w, c_in, c_out, kh, kw):
    maps = rng.standard_normal((1, h, w, c_in)).astype(np.float32)
    kernels = rng.standard_normal((c_in, c_out, kh, kw)).astype(np.float32)
    biases = rng.standard_normal(c_out).astype(np.float32)
    weights = layers.conv_weight_matrix(kernels, biases)
    monkeypatch.setattr(layers, "WRAPPED_CONV_MAX_PIXELS", 1 << 40)
    wrapped = layers.conv(maps, weights, kh, kw)
    monkeypatch.setattr(layers, "WRAPPED_CONV_MAX_PIXELS", 0)
    plain = layers.conv(maps, weights, kh, kw)
    assert wrapped.shape == plain.shape == (1, h - kh + 1, w - kw + 1, c_out)
    assert wrapped.flags.c_contiguous
    np.testing.assert_array_equal(wrapped, plain)
    # and both are the convolution (integer values: every summation order agrees)
    maps, kernels, biases = ints(1, h, w, c_in), ints(c_in, c_out, kh, kw), ints(c_out)
    monkeypatch.setattr(layers, "WRAPPED_CONV_MAX_PIXELS", 1 << 40)
    out = layers.conv(maps, layers.conv_weight_matrix(kernels, biases), kh, kw)
    np.testing.assert_array_equal(out, naive_conv(maps, kernels, biases))


def test_conv_of_a_batch_equals_each_image_alone():
    maps = rng.standard_normal((4, 14, 15, 3)).astype(np.float32)
    weights = layers.conv_weight_matrix(rng.standard_normal((3, 10, 3, 3)).astype(np.float32),
                                        rng.standard_normal(10).astype(np.float32))
    batch = layers.conv(maps, weights, 3, 3)  # im2col (n > 1)
    for i in range(len(maps)):
        np.testing.assert_array_equal(layers.conv(maps[i:i + 1], weights, 3, 3), batch[i:i + 1])  # wrapped


POOL_CASES = [(h, w, k, s) for k in (1, 2, 3) for s in (1, 2) for h, w in
              [(k, k), (5, 7), (6, 8), (7, 6), (9, 9), (10, 10), (11, 4), (k, 13)] if min(h, w) >= k]


@pytest.mark.parametrize("h, w, k, s", POOL_CASES)
def test_max_pool_equals_naive_windows(h, w, k, s):
    maps = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    oh, ow = layers.pooled_size(h, k, s), layers.pooled_size(w, k, s)
    if (oh - 1) * s >= h or (ow - 1) * s >= w:  # a window would start past the edge
        with pytest.raises(ValueError, match="max_pool"):
            layers.max_pool(maps, k, k, s, s)
        return
    out = layers.max_pool(maps, k, k, s, s)
    assert out.shape == (2, oh, ow, 3)
    np.testing.assert_array_equal(out, naive_pool(maps, k, s))


def test_max_pool_mixed_kernel_and_stride_is_separable():
    maps = rng.standard_normal((1, 9, 10, 2)).astype(np.float32)
    # 3 wide, 2 high, stride 2 across and 1 down
    out = layers.max_pool(maps, 3, 2, 2, 1)
    oh, ow = layers.pooled_size(9, 2, 1), layers.pooled_size(10, 3, 2)
    want = np.stack([np.stack([maps[0, y:y + 2, 2 * x:2 * x + 3].max(axis=(0, 1)) for x in range(ow)])
                     for y in range(oh)])
    np.testing.assert_array_equal(out[0], want)


PRELU_SLOPES = [[-1.5, 0.0, 0.25, 1.0, 1.75, 3.0], [2.0], [0.0], [-0.25], [1.0], [0.5, 1.5],
                [1.25, 1.5, 2.5, -3.0, 0.75, 1.0, 0.0, 4.0, 1.01, 0.99]]


def prelu_reference(x, slopes):
    return np.where(x >= 0, x, x * slopes)


@pytest.mark.parametrize("slopes", PRELU_SLOPES)
@pytest.mark.parametrize("shape", [(3, None), (1, None), (2, 5, 4, None), (1, 1, 1, None), (1, 7, 1, None)])
def test_prelu_equals_where_for_every_slope(slopes, shape):
    s = np.float32(slopes)
    x = (rng.standard_normal(shape[:-1] + (len(s),)) * 50).astype(np.float32)
    flat = x.reshape(-1)
    flat[:2] = np.float32([0.0, -0.0])[:flat.size]
    want = prelu_reference(x, s)
    got = layers.prelu(x.copy(), s.reshape(-1, 1))  # slopes as the .dat file gives them: (C, 1)
    assert got.shape == x.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_prelu_slope_rows_reused_over_widths_and_batches():
    slopes = np.float32([-1.5, 0.0, 0.25, 1.0, 1.75])
    table = layers.SlopeRows(slopes.reshape(-1, 1))
    for shape in [(1, 4, 6, 5), (3, 2, 9, 5), (1, 4, 6, 5), (7, 5), (2, 1, 1, 5)]:
        x = (rng.standard_normal(shape) * 50).astype(np.float32)
        np.testing.assert_array_equal(layers.prelu(x.copy(), table), prelu_reference(x, slopes))
