"""cvexact against OpenCV 4.6.0 and glibc, bit for bit.

The expected values in fixtures/cvexact/ were computed by OpenCV 4.6.0 itself (the
build the C++ reference used) and by glibc's expf, not by this package; see
fixtures/cvexact/README.md.
"""
import json
import math
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtcnn_cli.detector.cvexact import (
    _EXPF_TABLE, _expf_fused, _fma64, _powers_of_two, crop_and_resize, exp, expf, normalise, resize_bilinear,
    resize_bilinear_mosaic)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cvexact"


def load(name: str) -> dict:
    with np.load(FIXTURES / name) as data:
        return {key: data[key] for key in data.files}


RESIZE = load("resize.npz")
RESIZE_CASES = sorted(key[:-4] for key in RESIZE if key.endswith(".src"))


def assert_same_bits(got: np.ndarray, want: np.ndarray):
    """Equal shapes and float32 bits; any NaN only has to meet a NaN."""
    assert got.dtype == np.float32 and got.shape == want.shape
    both_nan = np.isnan(got) & np.isnan(want)
    differ = (got.view(np.uint32) != want.view(np.uint32)) & ~both_nan
    assert not differ.any(), (
        f"{differ.sum()} of {got.size} values differ, e.g. got {got[differ][:3]} "
        f"want {want[differ][:3]}")


@pytest.mark.parametrize("case", RESIZE_CASES)
def test_resize_matches_opencv_46(case):
    src, want = RESIZE[case + ".src"], RESIZE[case + ".out"]
    got = resize_bilinear(src, want.shape[1], want.shape[0])
    assert_same_bits(got, want)


def test_resize_fixture_covers_every_code_path():
    shapes = [(RESIZE[c + ".src"].shape, RESIZE[c + ".out"].shape) for c in RESIZE_CASES]
    assert any(s == o for s, o in shapes)  # copy
    assert any(s[0] == 2 * o[0] and s[1] == 2 * o[1] for s, o in shapes)  # 2x2 mean
    assert any(o[0] > s[0] for s, o in shapes) and any(o[0] < s[0] for s, o in shapes)
    assert {len(s) for s, _ in shapes} == {2, 3}
    assert {s[2] for s, _ in shapes if len(s) == 3} >= {1, 3, 4}


def test_resize_keeps_a_single_channel_axis():
    src = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    assert resize_bilinear(src, 5, 2).shape == (2, 5, 1)
    assert resize_bilinear(src[:, :, 0], 5, 2).shape == (2, 5)


@pytest.mark.parametrize("src, size, error", [
    (np.zeros((4, 4, 3), np.float64), (2, 2), TypeError),
    (np.zeros((4,), np.float32), (2, 2), ValueError),
    (np.zeros((0, 4, 3), np.float32), (2, 2), ValueError),
    (np.zeros((4, 4, 3), np.float32), (0, 2), ValueError),
])
def test_resize_rejects_bad_input(src, size, error):
    with pytest.raises(error):
        resize_bilinear(src, *size)


@pytest.mark.parametrize("size", [24, 48])
def test_crop_and_resize_matches_opencv_46(size):
    data = load("crops.npz")
    got = crop_and_resize(data["image"], data[f"boxes{size}"], size)
    assert_same_bits(got, data[f"out{size}"])


def test_crop_and_resize_is_per_box():
    """A batch gives each box the result it gets alone, whatever its neighbours."""
    data = load("crops.npz")
    boxes = data["boxes24"]
    together = crop_and_resize(data["image"], boxes[::-1], 24)[::-1]
    alone = np.concatenate([crop_and_resize(data["image"], b[None], 24) for b in boxes])
    assert_same_bits(together, alone)


def test_crop_and_resize_without_boxes():
    image = np.zeros((5, 6, 3), np.float32)
    assert crop_and_resize(image, np.zeros((0, 4), np.int64), 24).shape == (0, 24, 24, 3)


@pytest.mark.parametrize("boxes", [
    np.array([[0, 0, -1, 3]]), np.array([[0.0, 0.0, 3.0, 3.0]]), np.zeros((2, 3), np.int64)])
def test_crop_and_resize_rejects_bad_boxes(boxes):
    with pytest.raises(ValueError):
        crop_and_resize(np.zeros((5, 6, 3), np.float32), boxes, 24)


def test_exp_matches_opencv_46():
    data = load("exp.npz")
    assert data["x"].size > 2000 and np.isnan(data["x"]).any()
    for name in ("x", "short_x", "one_x"):  # vector code, scalar code (< 16 values), one value
        assert_same_bits(exp(data[name]), data[name.replace("x", "y")])


def test_exp_keeps_the_shape():
    x = np.linspace(-5, 5, 24, dtype=np.float32).reshape(4, 6)
    assert exp(x).shape == (4, 6)
    assert_same_bits(exp(x).ravel(), exp(x.ravel()))


def test_exp_nan_depends_on_array_length_as_in_opencv():
    long = np.full(16, np.nan, np.float32)
    assert (exp(long) == 0).all()
    assert np.isnan(exp(long[:15])).all()


def test_expf_matches_glibc():
    data = load("expf.npz")
    assert_same_bits(expf(data["x"]), data["y"])
    assert_same_bits(_expf_fused(data["x"]), data["y"])  # the exact port the fast path falls back on


def test_expf_fast_path_equals_the_fused_port():
    rng = np.random.default_rng(11)
    x = np.concatenate([
        rng.uniform(-110, 110, 400_000).astype(np.float32),
        (rng.standard_normal(400_000) * 4).astype(np.float32),
        rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),  # any bits
        np.float32([np.nan, np.inf, -np.inf, 0.0, -0.0, -87.0, 88.0, 87.99999, -86.99999, 1e-45, -1e-45]),
    ])
    assert_same_bits(expf(x), _expf_fused(x))
    for v in (1.5, 100.0, np.nan):  # 0-d arrays, on both paths
        assert_same_bits(expf(np.asarray(np.float32(v))), _expf_fused(np.asarray(np.float32(v))))
    assert expf(np.zeros((2, 0, 3), np.float32)).shape == (2, 0, 3)


def test_expf_table_matches_glibc_published_constants():
    # entries of glibc's __exp2f_data.tab, as published in its source
    assert int(_EXPF_TABLE[0]) == 0x3FF0000000000000
    assert int(_EXPF_TABLE[1]) == 0x3FEFD9B0D3158574
    assert int(_EXPF_TABLE[16]) == 0x3FEEA09E667F3BCD
    assert int(_EXPF_TABLE[31]) == 0x3FEFD0765B6E4540


@pytest.mark.parametrize("n", [32, 64])
def test_powers_of_two_are_correctly_rounded_doubles(n):
    # the tables' 2^(j/n), derived another way: 40-digit decimal powers, rounded once to a double
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 40
        expected = [float(Decimal(2) ** (Decimal(j) / Decimal(n))) for j in range(n)]
    assert _powers_of_two(n) == expected
    assert _powers_of_two(n)[0] == 1.0 and _powers_of_two(n)[n // 2] == math.sqrt(2.0)


def test_fma64_is_correctly_rounded():
    rng = np.random.default_rng(7)
    a = rng.standard_normal(3000) * 10.0 ** rng.integers(-5, 5, 3000)
    b = rng.standard_normal(3000)
    # c close to -a*b: heavy cancellation, where a separate multiply and add go wrong
    c = np.where(rng.random(3000) < 0.5, -(a * b), rng.standard_normal(3000))
    got = _fma64(a, b, c)
    want = np.array([float(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in zip(a, b, c)])
    assert np.array_equal(got, want)
    assert not np.array_equal(a * b + c, want)  # the test data does need the fused form


def test_normalise_shifts_every_channel():
    x = np.array([[[0.0, 127.5, 255.0]]], np.float32)
    assert_same_bits(normalise(x), np.array([[[-0.99609375, 0.0, 0.99609375]]], np.float32))


def test_pnet_input_of_the_first_reference_image(reference, corpus):
    """resize + normalise reproduce the C++'s PNet input dump, bit for bit."""
    meta = json.loads((reference / "stages_mf60.pnet_input_s0.json").read_text())
    want = np.fromfile(reference / meta["file"], dtype="<f4").reshape(meta["shape"])
    image_path = corpus / Path(meta["image"]).name
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR).astype(np.float32)
    got = normalise(resize_bilinear(image, meta["w_pyr"], meta["h_pyr"]))
    assert_same_bits(got, want)


# resize_bilinear_mosaic with the sizes stacked: the same bits as one resize_bilinear per size


def resize_bilinear_many(src, sizes):
    """Each size resized through one mosaic, the sizes stacked one above the other."""
    tops = np.cumsum([0] + [h for _, h in sizes])
    stack = resize_bilinear_mosaic(src, [(int(y), 0, w, h) for y, (w, h) in zip(tops, sizes)],
                                   (int(tops[-1]), max((w for w, _ in sizes), default=0)))
    return [stack[y:y + h, :w].copy() for y, (w, h) in zip(tops, sizes)]


def _random_image(shape, seed):
    return np.random.default_rng(seed).uniform(-300, 300, shape).astype(np.float32)


def _mixed_sizes(h, w):
    """Targets (width, height): down and up, each axis alone, 1-pixel sides, the
    source size (a copy) and, for even sides, the exact 2x halving."""
    sizes = [(w, h), (max(1, w // 3), max(1, h // 3)), (2 * w + 1, 3 * h), (w, max(1, h - 1)),
             (w + 5, h), (1, 1), (1, h + 2), (w + 2, 1), (max(1, (w * 7) // 10), max(1, (h * 7) // 10))]
    if h % 2 == 0 and w % 2 == 0:
        sizes.insert(2, (w // 2, h // 2))
    return sizes


def _assert_many_is_each(src, sizes):
    got = resize_bilinear_many(src, sizes)
    assert len(got) == len(sizes)
    for out, (w, h) in zip(got, sizes):
        assert_same_bits(out, resize_bilinear(src, w, h))
    return got


@pytest.mark.parametrize("shape", [(1, 9, 3), (9, 1, 3), (1, 1, 3), (17, 23, 3), (40, 30, 3),
                                   (64, 48, 3), (31, 20, 1), (24, 36, 4), (2, 2, 3), (31, 20), (1, 7), (12, 8)])
def test_resize_many_equals_resize_each(shape):
    src = _random_image(shape, sum(shape))
    got = _assert_many_is_each(src, _mixed_sizes(*shape[:2]))
    assert all(out.ndim == len(shape) for out in got)


def test_resize_many_sizes_in_any_order_and_repeated():
    src = _random_image((50, 38, 3), 1)
    _assert_many_is_each(src, [(5, 7), (19, 25), (60, 80), (19, 25), (5, 7), (38, 50), (19, 25)])


def test_resize_many_pyramid_of_an_image():
    src = _random_image((141, 140, 3), 2)
    sizes = [(int(np.ceil(140 * s)), int(np.ceil(141 * s))) for s in 0.2 * 0.709 ** np.arange(6)]
    _assert_many_is_each(src, sizes)


def test_mosaic_twice_gives_the_same_and_keeps_no_pixels():
    places = [(0, 0, 7, 9), (0, 8, 20, 15), (16, 0, 10, 12), (16, 12, 5, 30), (46, 0, 20, 24)]
    shape = (70, 30)  # (20, 24) at (46, 0) is a copy, (10, 12) a halving
    src = _random_image((24, 20, 3), 3)
    first = resize_bilinear_mosaic(src, places, shape)
    kept = first.copy()
    first += 1.0  # the result is the caller's to change: nothing cached may be part of it
    assert_same_bits(resize_bilinear_mosaic(src, places, shape), kept)
    other = _random_image((24, 20, 3), 4)  # same size, new pixels: new results
    again = resize_bilinear_mosaic(other, places, shape)
    for y, x, w, h in places:
        assert_same_bits(again[y:y + h, x:x + w], resize_bilinear(other, w, h))


def test_mosaic_copy_is_not_a_view_of_the_source():
    src = _random_image((6, 8, 3), 5)
    before = src.copy()
    out = resize_bilinear_mosaic(src, [(0, 0, 8, 6)], (6, 8))  # a plain copy
    out[...] = 0
    assert_same_bits(src, before)


@pytest.mark.parametrize("sizes", [[(12, 12)], [(24, 24)], [(24, 24), (12, 12)], []])
def test_resize_many_with_only_copies_and_halvings(sizes):
    src = _random_image((24, 24, 3), 6)
    _assert_many_is_each(src, sizes)


@pytest.mark.parametrize("shape", [(60, 44, 3), (60, 44), (31, 1, 3), (1, 40, 3)])
def test_resize_mosaic_places_each_resize_and_zero_elsewhere(shape):
    h, w = shape[:2]
    sizes = [size for size in _mixed_sizes(h, w) if size[0] <= 2 * w + 1]
    places, y = [], 0
    for size_w, size_h in sizes:  # a column of places, each shifted right by its index
        places.append((y, len(places), size_w, size_h))
        y += size_h + 1
    out_shape = (y, max(x + pw for _, x, pw, _ in places) + 3)
    for seed in (7, 8):  # the second image reuses the first one's taps
        src = _random_image(shape, seed)
        out = resize_bilinear_mosaic(src, places, out_shape)
        assert out.shape == out_shape + shape[2:]
        covered = np.zeros(out_shape, bool)
        for py, px, pw, ph in places:
            assert_same_bits(np.ascontiguousarray(out[py:py + ph, px:px + pw]), resize_bilinear(src, pw, ph))
            covered[py:py + ph, px:px + pw] = True
        assert (out[~covered] == 0).all()


def test_resize_mosaic_refuses_a_place_outside():
    with pytest.raises(ValueError, match="outside"):
        resize_bilinear_mosaic(np.zeros((8, 8, 3), np.float32), [(0, 4, 5, 5)], (10, 8))
