"""The layers against their plain definitions (small loops over small arrays).

Values are small integers or halves where exactness matters, so that every
order of summation gives the same float32 result and the comparison is exact.
The layers take planar maps (C, N, H, W); the plain definitions here work on
(N, H, W, C) images, converted with planar() and channels_last()."""
import numpy as np
import pytest

from mtcnn_cli.detector import layers, native
from mtcnn_cli.detector.datfile import Conv, FullyConnected, MaxPool, PReLU
from mtcnn_cli.detector.network import Network, channels_last

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


def planar(maps):
    """(N, H, W, C) -> (C, N, H, W)."""
    return np.ascontiguousarray(maps.transpose(3, 0, 1, 2))


def conv_nhwc(maps, kernels, biases, slopes=None):
    """layers.conv on (N, H, W, C) images, the result back in that layout."""
    kh, kw = kernels.shape[2:]
    return channels_last(layers.conv(planar(maps), layers.conv_weight_matrix(kernels, biases), kh, kw, slopes))


@pytest.mark.parametrize("n, h, w, c_in, c_out, k", [(1, 7, 9, 3, 4, 3), (3, 5, 6, 2, 5, 2), (1, 3, 3, 4, 2, 3)])
def test_conv_is_cross_correlation_with_bias(n, h, w, c_in, c_out, k):
    maps, kernels, biases = ints(n, h, w, c_in), ints(c_in, c_out, k, k), ints(c_out)
    np.testing.assert_array_equal(conv_nhwc(maps, kernels, biases), naive_conv(maps, kernels, biases))


def test_conv_kernel_is_not_square_symmetric():
    # a kernel with a single 1 at (ky=0, kx=1) picks the pixel to the right
    maps = ints(1, 4, 4, 1)
    kernels = np.zeros((1, 1, 2, 2), np.float32)
    kernels[0, 0, 0, 1] = 1
    out = conv_nhwc(maps, kernels, np.zeros(1, np.float32))
    np.testing.assert_array_equal(out[0, :, :, 0], maps[0, :3, 1:, 0])


def test_window_places_follow_im2col_column_order_map_then_column_then_row():
    c, w, kh, kw = 2, 7, 2, 3
    maps, places = layers.window_places(c, w, kh, kw)
    assert maps.shape == places.shape == (c * kh * kw,)
    for ci in range(c):
        for kx in range(kw):
            for ky in range(kh):
                assert (maps[ci * kw * kh + kx * kh + ky], places[ci * kw * kh + kx * kh + ky]) == (ci, ky * w + kx)


@pytest.mark.parametrize("n_out, n_pixels, n_cols, want", [
    (64, 64, 577, [0, 288, 577]),  # ONet's third convolution: always split
    (64, 27, 577, [0, 577]),  # a product of 997,056 multiply-adds: the small kernel, one chain
    (64, 28, 577, [0, 288, 577]),
    (128, 9, 257, [0, 257]), (32, 10000, 145, [0, 145]), (1, 1, 448, [0, 448]),
    (1, 10000, 449, [0, 224, 449]), (1, 10000, 896, [0, 448, 896]), (1, 10000, 1000, [0, 448, 736, 1000]),
    (1, 10000, 2000, [0, 448, 896, 1344, 1680, 2000])])
def test_chain_blocks_follow_the_reference_sgemm(n_out, n_pixels, n_cols, want):
    assert layers.chain_blocks(n_out, n_pixels, n_cols).tolist() == want


@pytest.mark.parametrize("slopes", [[0.25, 0.5], [-0.5, 0.75], [1.5, 0.25], [1.25, -2.0], [1.0, 0.0]])
def test_prelu_matches_its_definition(slopes):
    s = np.float32(slopes)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32) * 10  # planar: a slope per map
    x[:, 0, 0, 0] = [0.0, -0.0]
    expected = np.where(x >= 0, x, x * s.reshape(-1, 1, 1, 1))
    np.testing.assert_array_equal(layers.prelu(x.copy(), s), expected)


def test_prelu_on_flat_activations_is_per_feature():
    x = np.float32([[-2, 2, -4], [4, -8, 1]])
    np.testing.assert_array_equal(layers.prelu(x.copy(), np.float32([0.5, 0.25, -1])), [[-1, 2, 4], [4, -2, 1]])


@pytest.mark.parametrize("slopes", [[-1.5, 0.0, 0.25, 1.0, 1.75, 3.0], [0.5, 1.5, 2.0, -0.25, 1.01, 0.99]])
def test_conv_with_slopes_is_conv_then_prelu(slopes):
    s = np.float32(slopes)
    maps = rng.standard_normal((2, 9, 11, 3)).astype(np.float32)
    kernels, biases = rng.standard_normal((3, 6, 3, 3)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    plain = conv_nhwc(maps, kernels, biases)
    np.testing.assert_array_equal(conv_nhwc(maps, kernels, biases, s), np.where(plain >= 0, plain, plain * s))


def naive_pool(maps, k, s):
    n, h, w, c = maps.shape
    oh, ow = layers.pooled_size(h, k, s), layers.pooled_size(w, k, s)
    out = np.full((n, oh, ow, c), -np.inf, np.float32)
    for oy in range(oh):
        for ox in range(ow):
            out[:, oy, ox] = maps[:, oy * s:oy * s + k, ox * s:ox * s + k].max(axis=(1, 2))
    return out


def pool_nhwc(maps, kx, ky, sx, sy):
    return channels_last(layers.max_pool(planar(maps), kx, ky, sx, sy))


@pytest.mark.parametrize("h, w, k, s", [(22, 22, 3, 2), (9, 9, 3, 2), (10, 10, 2, 2), (7, 5, 2, 2), (13, 11, 3, 2), (4, 4, 3, 2)])
def test_max_pool_with_partial_edge_windows(h, w, k, s):
    maps = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    np.testing.assert_array_equal(pool_nhwc(maps, k, k, s, s), naive_pool(maps, k, s))


@pytest.mark.parametrize("size, kernel, stride, expected", [(22, 3, 2, 11), (9, 3, 2, 4), (4, 3, 2, 2), (10, 2, 2, 5), (11, 2, 2, 6)])
def test_pooled_size_rounds_halves_up_like_caffe(size, kernel, stride, expected):
    assert layers.pooled_size(size, kernel, stride) == expected


def test_flatten_reads_each_map_column_by_column():
    maps = np.arange(2 * 2 * 3, dtype=np.float32).reshape(1, 2, 3, 2)  # (N, H=2, W=3, C=2)
    flat = layers.flatten(planar(maps))[0]
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
    out = native.gemv_lanes(x, w, np.zeros(1, np.float32), np.empty((2, 1), np.float32))
    assert out[0, 0] == 2.0 ** 25 + 4
    assert np.float32(np.float32(2.0 ** 25) + np.float32(2)) + np.float32(2) == 2.0 ** 25


def test_fully_connected_maps_acts_on_every_pixel():
    maps, w, b = ints(2, 3, 4, 5), ints(5, 6), ints(6)
    out = channels_last(layers.fully_connected_maps(planar(maps), w, b))
    np.testing.assert_array_equal(out, np.einsum("nhwc,co->nhwo", maps, w) + b)


@pytest.mark.parametrize("n_in, n_out", [(576, 128), (1152, 256), (128, 6), (256, 16)])
def test_fully_connected_of_one_row_equals_batched_rows(n_in, n_out):
    x = rng.standard_normal((5, n_in)).astype(np.float32)
    w, b = rng.standard_normal((n_in, n_out)).astype(np.float32), rng.standard_normal(n_out).astype(np.float32)
    whole = layers.fully_connected(x, w, b)
    for i in range(5):
        np.testing.assert_array_equal(layers.fully_connected(x[i:i + 1], w, b), whole[i:i + 1])


def test_network_runs_layers_in_order_and_names_shapes_in_errors():
    net = Network((Conv(ints(3, 4, 3, 3), ints(4)), PReLU(np.float32([[0.5]] * 4)),
                   MaxPool(2, 2, 2, 2), FullyConnected(ints(2, 1), ints(4, 2))))
    out = net(ints(1, 8, 8, 3))
    assert out.shape == (1, 3, 3, 2)
    with pytest.raises(ValueError, match=r"\(5, 1, 8, 8\)"):  # planar (C, N, H, W)
        net(ints(1, 8, 8, 5))


def test_network_traces_each_layer_and_fuses_only_when_not_tracing():
    net = Network((Conv(ints(3, 4, 3, 3), ints(4)), PReLU(np.float32([[0.5], [1.5], [-1.0], [0.0]])),
                   MaxPool(2, 2, 2, 2), FullyConnected(ints(2, 1), ints(4, 2))))
    maps = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    trace = []
    traced = net(maps, trace)
    assert [t.shape for t in trace] == [(2, 7, 6, 4), (2, 7, 6, 4), (2, 4, 3, 4), (2, 4, 3, 2)]
    np.testing.assert_array_equal(traced, net(maps))


# Shapes at the edges, and batches against each image alone

@pytest.mark.parametrize("h, w, c_in, c_out, kh, kw", [
    (3, 3, 3, 4, 3, 3), (2, 2, 2, 5, 2, 2),  # one output pixel
    (3, 17, 3, 6, 3, 3), (2, 9, 4, 3, 2, 2),  # one output row
    (13, 3, 3, 2, 3, 3), (8, 2, 1, 3, 2, 2),  # one output column
    (1, 9, 2, 3, 1, 3), (1, 6, 3, 2, 1, 2), (9, 1, 2, 2, 3, 1),  # one-row and one-column maps
    (12, 12, 3, 10, 3, 3), (11, 12, 10, 16, 3, 3), (24, 24, 3, 28, 3, 3), (13, 17, 48, 64, 2, 2),
    (5, 6, 1, 1, 2, 3)])
def test_conv_at_edge_shapes_is_the_convolution_and_batches_change_nothing(h, w, c_in, c_out, kh, kw):
    maps, kernels, biases = ints(3, h, w, c_in), ints(c_in, c_out, kh, kw), ints(c_out)
    out = conv_nhwc(maps, kernels, biases)
    assert out.shape == (3, h - kh + 1, w - kw + 1, c_out)
    np.testing.assert_array_equal(out, naive_conv(maps, kernels, biases))
    maps = rng.standard_normal((3, h, w, c_in)).astype(np.float32)
    kernels = rng.standard_normal((c_in, c_out, kh, kw)).astype(np.float32)
    batch = conv_nhwc(maps, kernels, biases)
    for i in range(3):
        np.testing.assert_array_equal(conv_nhwc(maps[i:i + 1], kernels, biases), batch[i:i + 1])


def test_conv_of_a_batch_equals_each_image_alone():
    maps = rng.standard_normal((4, 14, 15, 3)).astype(np.float32)
    kernels = rng.standard_normal((3, 10, 3, 3)).astype(np.float32)
    biases = rng.standard_normal(10).astype(np.float32)
    batch = conv_nhwc(maps, kernels, biases)
    for i in range(len(maps)):
        np.testing.assert_array_equal(conv_nhwc(maps[i:i + 1], kernels, biases), batch[i:i + 1])


POOL_CASES = [(h, w, k, s) for k in (1, 2, 3) for s in (1, 2) for h, w in
              [(k, k), (5, 7), (6, 8), (7, 6), (9, 9), (10, 10), (11, 4), (k, 13)] if min(h, w) >= k]


@pytest.mark.parametrize("h, w, k, s", POOL_CASES)
def test_max_pool_equals_naive_windows(h, w, k, s):
    maps = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    oh, ow = layers.pooled_size(h, k, s), layers.pooled_size(w, k, s)
    if (oh - 1) * s >= h or (ow - 1) * s >= w:  # a window would start past the edge
        with pytest.raises(ValueError, match="max_pool"):
            pool_nhwc(maps, k, k, s, s)
        return
    out = pool_nhwc(maps, k, k, s, s)
    assert out.shape == (2, oh, ow, 3)
    np.testing.assert_array_equal(out, naive_pool(maps, k, s))


def test_max_pool_mixed_kernel_and_stride_is_separable():
    maps = rng.standard_normal((1, 9, 10, 2)).astype(np.float32)
    # 3 wide, 2 high, stride 2 across and 1 down
    out = pool_nhwc(maps, 3, 2, 2, 1)
    oh, ow = layers.pooled_size(9, 2, 1), layers.pooled_size(10, 3, 2)
    want = np.stack([np.stack([maps[0, y:y + 2, 2 * x:2 * x + 3].max(axis=(0, 1)) for x in range(ow)])
                     for y in range(oh)])
    np.testing.assert_array_equal(out[0], want)


PRELU_SLOPES = [[-1.5, 0.0, 0.25, 1.0, 1.75, 3.0], [2.0], [0.0], [-0.25], [1.0], [0.5, 1.5],
                [1.25, 1.5, 2.5, -3.0, 0.75, 1.0, 0.0, 4.0, 1.01, 0.99]]


@pytest.mark.parametrize("slopes", PRELU_SLOPES)
@pytest.mark.parametrize("shape", [(3, None), (1, None), (None, 2, 5, 4), (None, 1, 1, 1), (None, 1, 7, 1)])
def test_prelu_equals_where_for_every_slope(slopes, shape):
    s = np.float32(slopes)
    shape = tuple(len(s) if d is None else d for d in shape)
    x = (rng.standard_normal(shape) * 50).astype(np.float32)
    flat = x.reshape(-1)
    flat[:2] = np.float32([0.0, -0.0])[:flat.size]
    want = np.where(x >= 0, x, x * (s.reshape(-1, 1, 1, 1) if x.ndim == 4 else s))
    got = layers.prelu(x.copy(), s.reshape(-1, 1))  # slopes as the .dat file gives them: (C, 1)
    assert got.shape == x.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k, s", [(2, 2), (3, 2), (3, 1), (2, 3)])
def test_max_pool_reads_a_strided_view_in_place(k, s):
    # conv's output is the valid part of a larger buffer: rows, images and maps strided
    big = rng.standard_normal((3, 2, 13, 17)).astype(np.float32)
    view = big[:, :, :11, :14]
    want = naive_pool(np.ascontiguousarray(view.transpose(1, 2, 3, 0)), k, s)
    np.testing.assert_array_equal(channels_last(layers.max_pool(view, k, k, s, s)), want)


def test_max_pool_spreads_nan_wherever_it_is_in_the_window():
    for y in range(3):
        for x in range(3):
            maps = np.zeros((1, 1, 3, 3), np.float32)
            maps[0, 0, y, x] = np.nan
            assert np.isnan(layers.max_pool(maps, 3, 3, 2, 2)[0, 0, 0, 0])
    maps = np.full((1, 1, 4, 4), -np.inf, np.float32)
    maps[0, 0, 3, 3] = np.inf
    np.testing.assert_array_equal(layers.max_pool(maps, 2, 2, 2, 2)[0, 0], [[-np.inf, -np.inf], [-np.inf, np.inf]])
