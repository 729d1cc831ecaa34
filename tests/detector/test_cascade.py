"""The cascade's shortcuts give the same bits as the plain computation."""
import numpy as np
import pytest

from mtcnn_cli import Detector
from mtcnn_cli.detector import cascade as cc


@pytest.fixture(scope="module")
def networks():
    return Detector().cascade


@pytest.mark.parametrize("h, w", [(700, 90), (701, 61), (333, 500), (12, 12), (13, 2000)])
def test_pnet_in_bands_equals_one_pass(networks, monkeypatch, h, w):
    monkeypatch.setattr(cc, "CACHE_BYTES", 1 << 16)  # many small bands
    maps = np.random.default_rng(h * w).uniform(-1, 1, (3, 1, h, w)).astype(np.float32)  # planar
    whole = networks.pnet.planar(maps)
    banded = networks.pnet_in_bands(maps)
    assert banded.shape == whole.shape
    np.testing.assert_array_equal(banded, whole)


def test_output_size_follows_the_layers(networks):
    for h, w in [(12, 12), (13, 13), (389, 500), (24, 24)]:
        out = networks.pnet(np.zeros((1, h, w, 3), np.float32))
        assert networks.pnet.output_size(h, w) == out.shape[1:3]


@pytest.mark.parametrize("size, network", [(24, "rnet"), (48, "onet")])
def test_refine_in_batches_equals_one_batch(networks, monkeypatch, size, network):
    rng = np.random.default_rng(size)
    img = rng.uniform(0, 255, (300, 400, 3)).astype(np.float32)
    xy = rng.integers(-30, 380, (50, 2))
    side = rng.integers(0, 120, (50, 1))
    boxes = np.hstack([xy, side, side]).astype(np.float32)
    net = getattr(networks, network)
    monkeypatch.setattr(cc, "CACHE_BYTES", 1 << 40)
    _, whole = networks.refine(net, img, boxes, size)
    monkeypatch.setattr(cc, "CACHE_BYTES", 1)
    _, one_by_one = networks.refine(net, img, boxes, size)
    monkeypatch.setattr(cc, "CACHE_BYTES", 4 * size * size * 32 * 7)
    _, sevens = networks.refine(net, img, boxes, size)
    np.testing.assert_array_equal(one_by_one, whole)
    np.testing.assert_array_equal(sevens, whole)


THRESHOLDS = [1e-6, 0.01, 0.3, 0.5, 0.6, 0.7, 0.9, 0.95, 0.9899] + list(np.random.default_rng(5).uniform(0, 0.99, 200))


@pytest.mark.parametrize("t1", THRESHOLDS)
def test_may_reach_is_false_only_when_no_probability_reaches_t1(t1):
    t = np.float32(t1)
    bound = np.float32(np.log(1.0 / float(t) - 1.0) + 0.01)
    # gaps from just above the bound upwards: none may reach t1, and may_reach says so
    above = np.nextafter(bound, np.float32(np.inf)) + np.linspace(0, 5, 4001, dtype=np.float32)
    above = np.concatenate([np.nextafter(bound, np.float32(np.inf))[None], above[above > bound]])
    prob = cc.pnet_probability(above)
    assert (prob < t).all()
    assert not cc.may_reach(above, t1)
    # a gap where the probability does reach t1 makes the map a candidate
    reaching = np.float32(np.log(1.0 / float(t) - 1.0) - 0.05)
    assert cc.pnet_probability(np.float32([reaching]))[0] >= t
    assert cc.may_reach(np.append(above, reaching), t1)


@pytest.mark.parametrize("t1", [0.0, 0.995, 1.0])
def test_may_reach_always_true_at_the_extremes(t1):
    assert cc.may_reach(np.float32([80.0, 100.0]), t1)


def test_forgetting_image_sizes_changes_nothing_but_the_caches(networks):
    from pathlib import Path

    import cv2

    from mtcnn_cli.detector import cvexact, pyramid

    sample = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"
    img = cc.as_bgr_float(cv2.imread(str(sample), cv2.IMREAD_COLOR))
    first = networks.run(img, 60, 0.6, 0.7, 0.7)
    assert pyramid.plan.cache_info().currsize > 0 and cvexact._linear_taps.cache_info().currsize > 0
    networks.forget_image_sizes()
    assert pyramid.plan.cache_info().currsize == 0 and cvexact._linear_taps.cache_info().currsize == 0
    again = networks.run(img, 60, 0.6, 0.7, 0.7)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert len(first[0]) == 2  # not vacuous: the sample's two drawn faces


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4)])
def test_converting_into_the_kept_buffer_gives_the_fresh_conversion(shape):
    """Detector.detect converts into a buffer kept per thread: grey, BGR and
    BGRA, after a larger image and after a smaller one, as the plain copy."""
    rng = np.random.default_rng(len(shape) + shape[-1])
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    pixels = image.reshape(5, 7, -1).tolist()  # [row][column][channel]
    want = np.float32([[p * 3 if len(p) == 1 else p[:3] for p in row] for row in pixels])
    for before in ((9, 11, 3), (2, 2, 3)):
        cc.as_bgr_float(np.zeros(before, np.uint8), reuse=True)
        got = cc.as_bgr_float(image, reuse=True)
        assert got.shape == (5, 7, 3) and got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(cc.as_bgr_float(image), want)
