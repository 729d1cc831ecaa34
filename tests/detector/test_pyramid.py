"""The PNet mosaic gives the bits of running every pyramid level alone.

pack's placements are checked as rectangles; a network run over a mosaic with
`regions` against the same network run on each region cut out; pnet_stage
against the plain per-level computation (resize, PNet, proposals, NMS)."""
import itertools

import cv2
import numpy as np
import pytest

from mtcnn_cli import Detector
from mtcnn_cli.detector import boxes as bx
from mtcnn_cli.detector import cascade as cc
from mtcnn_cli.detector import pyramid
from mtcnn_cli.detector.cvexact import normalise, resize_bilinear
from mtcnn_cli.detector.datfile import Conv, FullyConnected, MaxPool, PReLU
from mtcnn_cli.detector.network import Network
from mtcnn_cli.detector.pyramid import ALIGN, Level

CORPUS_SIZES = [(140, 141), (189, 107), (199, 148), (225, 225), (640, 480)]


@pytest.fixture(scope="module")
def cascade():
    return Detector().cascade


def aligned(n):
    return -(-n // ALIGN) * ALIGN


def small_levels(height, width, min_face):
    return [lv for lv in pyramid.levels(height, width, min_face) if lv.h * lv.w <= pyramid.MOSAIC_MAX_PIXELS]


def check_packing(small, packed):
    """Every property pack promises, for levels `small` packed as `packed`."""
    height, width, placed = packed
    assert len(placed) == len(small)
    for before, after in zip(small, placed):
        assert (after.scale, after.h, after.w) == (before.scale, before.h, before.w)
        assert after.y % ALIGN == 0 and after.x % ALIGN == 0
        assert 0 <= after.y and after.y + after.h <= height
        assert 0 <= after.x and after.x + after.w <= width
    # the mosaic is no larger than its levels need
    assert height == max(p.y + p.h for p in placed) and width == max(p.x + p.w for p in placed)
    for a, b in itertools.combinations(placed, 2):
        apart_y = a.y + aligned(a.h) <= b.y or b.y + aligned(b.h) <= a.y
        apart_x = a.x + aligned(a.w) <= b.x or b.x + aligned(b.w) <= a.x
        assert apart_y or apart_x, f"{a} and {b} overlap"


@pytest.mark.parametrize("min_face", [12, 20, 40, 60, 100])
@pytest.mark.parametrize("height, width", CORPUS_SIZES + [(w, h) for h, w in CORPUS_SIZES] + [(100, 2000), (999, 101)])
def test_pack_places_pyramid_levels_apart_and_aligned(height, width, min_face):
    small = small_levels(height, width, min_face)
    assert small
    check_packing(small, pyramid.pack(small))


def test_pack_random_level_lists():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        sides = sorted(rng.integers(1, 60, (n, 2)).tolist(), key=lambda s: -s[0] * s[1])
        small = [Level(float(i), h, w) for i, (h, w) in enumerate(sides)]
        check_packing(small, pyramid.pack(small))


@pytest.mark.parametrize("height, width", CORPUS_SIZES + [(w, h) for h, w in CORPUS_SIZES])
@pytest.mark.parametrize("min_face", [20, 40, 60, 80])
def test_pack_area_is_close_to_the_levels_own(height, width, min_face):
    small = small_levels(height, width, min_face)
    mosaic_h, mosaic_w, _ = pyramid.pack(small)
    assert mosaic_h * mosaic_w <= 1.35 * sum(lv.h * lv.w for lv in small)


@pytest.mark.parametrize("h, w", [(13, 17), (12, 12), (1, 1), (128, 128)])
def test_pack_of_one_level_is_that_level(h, w):
    level = Level(0.5, h, w)
    assert pyramid.pack([level]) == (h, w, [Level(0.5, h, w, 0, 0)])


@pytest.mark.parametrize("height, width, min_face", [(800, 600, 60), (141, 140, 60), (300, 200, 20), (20, 20, 12)])
def test_plan_splits_levels_by_size_and_keeps_their_order(height, width, min_face):
    steps = pyramid.plan(height, width, min_face)
    every = pyramid.levels(height, width, min_face)
    assert [(lv.scale, lv.h, lv.w) for lv in steps.alone + steps.placed] == [(lv.scale, lv.h, lv.w) for lv in every]
    assert all(lv.h * lv.w > pyramid.MOSAIC_MAX_PIXELS for lv in steps.alone)
    assert all(lv.h * lv.w <= pyramid.MOSAIC_MAX_PIXELS for lv in steps.placed)
    assert pyramid.plan(height, width, min_face) is steps  # cached per image size


def test_mosaic_holds_each_level_resized_and_zero_between():
    img = np.random.default_rng(5).uniform(0, 255, (300, 200, 3)).astype(np.float32)
    steps = pyramid.plan(300, 200, 20)
    out = pyramid.mosaic(img, steps)
    assert out.shape == steps.mosaic_shape + (3,) and out.dtype == np.float32
    covered = np.zeros(steps.mosaic_shape, bool)
    for lv in steps.placed:
        np.testing.assert_array_equal(out[lv.y:lv.y + lv.h, lv.x:lv.x + lv.w], resize_bilinear(img, lv.w, lv.h))
        covered[lv.y:lv.y + lv.h, lv.x:lv.x + lv.w] = True
    assert (out[~covered] == 0).all()


# ---------------------------------------------------------------------------------------
# Networks over regions
# ---------------------------------------------------------------------------------------

ODD_SIZES = [(13, 17), (12, 12), (29, 28), (20, 21), (15, 15), (12, 13), (33, 12), (16, 19)]


def check_regions(net, maps, regions):
    """net over the whole maps with regions == net over each region cut out."""
    before = maps.copy()
    whole = net(maps, regions=regions)[0]
    outs = net.output_regions(regions)
    for (y, x, h, w), (oy, ox, oh, ow) in zip(regions, outs):
        alone = net(np.ascontiguousarray(maps[:, y:y + h, x:x + w]))[0]
        assert alone.shape[:2] == (oh, ow)
        np.testing.assert_array_equal(whole[oy:oy + oh, ox:ox + ow], alone)
    np.testing.assert_array_equal(maps, before)  # the input is left as it was


def random_maps(h, w, c=3, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (1, h, w, c)).astype(np.float32)


@pytest.mark.parametrize("sizes", [ODD_SIZES, ODD_SIZES[::-1], [(29, 28)], [(12, 12)] * 5, [(13, 13), (15, 17), (27, 12)]])
def test_pnet_over_packed_regions_equals_each_level_alone(cascade, sizes):
    height, width, placed = pyramid.pack([Level(1.0, h, w) for h, w in sizes])
    check_regions(cascade.pnet, random_maps(height, width, seed=len(sizes)), [lv.region for lv in placed])


def test_pnet_over_hand_placed_regions(cascade):
    # regions with wide gaps, one in the far corner, one touching the right edge
    regions = [(0, 0, 12, 12), (0, 20, 17, 13), (30, 0, 13, 25), (40, 40, 14, 15), (2, 60, 21, 19)]
    check_regions(cascade.pnet, random_maps(54, 79, seed=9), regions)


def small_network(rng, pool_kernel=3, pools=1):
    """conv 3x3, PReLU, then `pools` times (max pool kernel k stride 2, conv 2x2, PReLU),
    then a fully connected layer acting on every pixel."""
    def conv(c_in, c_out, k):
        return Conv(rng.standard_normal((c_in, c_out, k, k)).astype(np.float32),
                    rng.standard_normal(c_out).astype(np.float32))

    def prelu(c):
        return PReLU(rng.uniform(-0.5, 1.5, (c, 1)).astype(np.float32))

    net_layers = [conv(3, 4, 3), prelu(4)]
    for _ in range(pools):
        net_layers += [MaxPool(pool_kernel, pool_kernel, 2, 2), conv(4, 4, 2), prelu(4)]
    net_layers.append(FullyConnected(rng.standard_normal((1, 3)).astype(np.float32),
                                     rng.standard_normal((4, 3)).astype(np.float32)))
    return Network(tuple(net_layers), "small")


@pytest.mark.parametrize("seed", range(3))
def test_three_by_three_pooling_over_packed_regions(seed):
    rng = np.random.default_rng(seed)
    net = small_network(rng)
    sizes = [(int(h), int(w)) for h, w in rng.integers(6, 20, (7, 2))]
    height, width, placed = pyramid.pack([Level(1.0, h, w) for h, w in sizes])
    check_regions(net, random_maps(height, width, seed=seed), [lv.region for lv in placed])


@pytest.mark.parametrize("pool_kernel", [2, 3])
def test_two_pooling_layers_over_regions_on_their_grid(pool_kernel):
    # two stride-2 pools: regions start on multiples of 4, a few pixels apart
    net = small_network(np.random.default_rng(pool_kernel), pool_kernel, pools=2)
    regions = [(0, 0, 14, 14), (0, 20, 16, 15), (0, 40, 15, 14), (24, 0, 17, 19), (24, 24, 19, 20)]
    check_regions(net, random_maps(44, 54, seed=4), regions)


@pytest.mark.parametrize("h, w", [(12, 12), (13, 17), (29, 28), (100, 3 * 37), (12, 401)])
def test_output_region_at_the_origin_is_output_size(cascade, h, w):
    net = cascade.pnet
    size = net(np.zeros((1, h, w, 3), np.float32)).shape[1:3]
    assert net.output_region((0, 0, h, w)) == (0, 0) + tuple(size)
    assert net.output_size(h, w) == size


def test_output_region_moves_with_the_pooling_stride(cascade):
    assert cascade.pnet.output_region((4, 10, 13, 17)) == (2, 5) + cascade.pnet.output_size(13, 17)


@pytest.mark.parametrize("region", [(1, 0, 12, 12), (0, 3, 12, 12), (5, 7, 14, 14)])
def test_region_off_the_pooling_grid_is_refused(cascade, region):
    with pytest.raises(ValueError, match="pooling grid"):
        cascade.pnet.output_region(region)
    with pytest.raises(ValueError, match="pooling grid"):
        cascade.pnet(random_maps(30, 30), regions=[region])


def test_regions_through_a_flattening_layer_are_refused(cascade):
    with pytest.raises(ValueError, match="RNet"):
        cascade.rnet(random_maps(24, 48), regions=[(0, 0, 24, 24), (0, 24, 24, 24)])


def test_output_regions_are_output_region_of_each(cascade):
    regions = [(0, 0, 12, 12), (0, 14, 29, 28), (30, 0, 15, 15)]
    want = [cascade.pnet.output_region(r) for r in regions]
    assert cascade.pnet.output_regions(regions) == want
    assert cascade.pnet.output_regions(list(regions)) == want  # again, from its memory


# ---------------------------------------------------------------------------------------
# pnet_stage against the plain per-level computation
# ---------------------------------------------------------------------------------------

def smooth_image(h, w, seed):
    """uint8-valued float32 BGR image of colour blobs, which PNet scores higher than noise."""
    low = np.random.default_rng(seed).integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)


def pnet_stage_per_level(cascade, img, min_face, t1):
    """Each level resized, run through PNet alone, proposals, NMS: per level
    (level, out_h, out_w, n_before_nms, boxes, scores, corrections)."""
    found = []
    for lv in pyramid.levels(*img.shape[:2], min_face):
        rgb = normalise(resize_bilinear(img, lv.w, lv.h)[None, :, :, ::-1])  # (1, h, w, 3) network input
        out = cascade.pnet(rgb)[0]  # channels last, not the cascade's planar route
        prob = cc.pnet_probability(out[..., 0] - out[..., 1])
        boxes, scores, corrections = bx.proposals(prob, out.transpose(2, 0, 1)[2:6], lv.scale, t1)
        keep = bx.nms(boxes, scores, cc.PNET_NMS)
        found.append((lv, out.shape[0], out.shape[1], len(boxes), boxes[keep], scores[keep], corrections[keep]))
    return found


@pytest.mark.parametrize("height, width, min_face, has_alone", [
    (141, 140, 60, False), (700, 500, 60, False), (300, 200, 20, True), (800, 600, 60, True)])
def test_pnet_stage_equals_each_level_alone(cascade, height, width, min_face, has_alone):
    steps = pyramid.plan(height, width, min_face)
    assert bool(steps.alone) == has_alone and steps.placed
    img = smooth_image(height, width, height)
    for t1 in (0.6, 0.3, 0.05):
        want = pnet_stage_per_level(cascade, img, min_face, t1)
        trace = {}
        got = cascade.pnet_stage(img, min_face, t1)
        traced = cascade.pnet_stage(img, min_face, t1, trace=trace)
        for part in range(3):
            expected = np.concatenate([level[4 + part] for level in want])
            np.testing.assert_array_equal(got[part], expected)
            np.testing.assert_array_equal(traced[part], expected)
        assert len(trace["scales"]) == len(want)
        for entry, (lv, out_h, out_w, n, boxes, scores, corrections) in zip(trace["scales"], want):
            assert (entry["scale"], entry["h_pyr"], entry["w_pyr"]) == (lv.scale, lv.h, lv.w)
            assert (entry["pnet_out_h"], entry["pnet_out_w"], entry["n_before_nms"]) == (out_h, out_w, n)
            np.testing.assert_array_equal(entry["boxes"], boxes)
            np.testing.assert_array_equal(entry["scores"], scores)
            np.testing.assert_array_equal(entry["corrections"], corrections)
    # not vacuous: at the lowest threshold the mosaic's levels do propose boxes
    mosaic_levels = [level for level in want if (level[0].h * level[0].w <= pyramid.MOSAIC_MAX_PIXELS)]
    assert sum(level[3] for level in mosaic_levels) > 0


@pytest.mark.parametrize("height, width, min_face", [(12, 12, 12), (24, 24, 24), (16, 14, 12)])
def test_pnet_stage_when_the_only_level_is_a_copy_or_a_halving(cascade, height, width, min_face):
    img = smooth_image(height, width, 1)
    got = cascade.pnet_stage(img, min_face, 0.0)
    want = pnet_stage_per_level(cascade, img, min_face, 0.0)
    np.testing.assert_array_equal(got[1], np.concatenate([level[5] for level in want]))
