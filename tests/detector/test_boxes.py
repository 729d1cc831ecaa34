"""Box arithmetic against scalar transcriptions of the rules in the OpenFace notes."""
import math

import numpy as np
import pytest

from mtcnn_cli.detector import boxes as bx

f32 = np.float32


def cv_round(v):
    return int(np.rint(f32(v)))


def naive_nms(boxes, scores, threshold, minimum):
    """The C++ loop: a score-ordered multimap, take the last, drop overlaps > threshold."""
    rects = [tuple(cv_round(v) for v in b) for b in boxes]
    remaining = sorted(range(len(boxes)), key=lambda i: (scores[i], i))
    kept = []
    while remaining:
        best = remaining.pop()
        kept.append(best)
        x, y, w, h = rects[best]
        survivors = []
        for j in remaining:
            X, Y, W, H = rects[j]
            iw = min(x + w, X + W) - max(x, X)
            ih = min(y + h, Y + H) - max(y, Y)
            inter = f32(iw * ih if iw > 0 and ih > 0 else 0)
            denom = f32(min(w * h, W * H)) if minimum else f32(w * h + W * H) - inter
            with np.errstate(divide="ignore", invalid="ignore"):
                overlap = f32(inter / denom)
            if not overlap > f32(threshold):
                survivors.append(j)
        remaining = survivors
    return kept


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("minimum", [False, True])
def test_nms_matches_the_cpp_loop(seed, minimum):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    xy = rng.uniform(-20, 200, (n, 2))
    wh = rng.uniform(0, 60, (n, 2))
    wh[rng.random(n) < 0.05] = 0  # some empty boxes
    boxes = np.hstack([xy, wh]).astype(f32)
    scores = rng.choice(np.float32([0.5, 0.75, 0.9, 0.95]), n)  # many ties
    threshold = 0.7 if minimum else float(rng.choice([0.5, 0.7]))
    assert bx.nms(boxes, scores, threshold, minimum).tolist() == naive_nms(boxes, scores, threshold, minimum)


def test_nms_prefers_the_later_of_equal_scores():
    boxes = np.float32([[0, 0, 10, 10], [1, 1, 10, 10]])
    assert bx.nms(boxes, np.float32([0.9, 0.9]), 0.5).tolist() == [1]
    assert bx.nms(np.zeros((0, 4), f32), np.zeros(0, f32), 0.5).tolist() == []


def test_nms_threshold_is_strict():
    # two 10x10 boxes overlapping by 50 px: IoU = 50 / 150 = 1/3; min-overlap 0.5
    boxes = np.float32([[0, 0, 10, 10], [5, 0, 10, 10]])
    scores = np.float32([0.9, 0.8])
    assert bx.nms(boxes, scores, 0.5, minimum=True).tolist() == [0, 1]  # 0.5 is not > 0.5
    assert bx.nms(boxes, scores, 0.49, minimum=True).tolist() == [0]


def test_apply_correction_rounds_first_then_works_in_float():
    rng = np.random.default_rng(3)
    boxes = rng.uniform(-50, 500, (200, 4)).astype(f32)
    boxes[:, 2:] = np.abs(boxes[:, 2:])
    corr = rng.uniform(-0.5, 0.5, (200, 4)).astype(f32)
    for add1 in (False, True):
        out = bx.apply_correction(boxes, corr, add1)
        for b, c, o in zip(boxes, corr, out):
            x, y, w, h = (cv_round(v) for v in b)
            w, h = (w + 1, h + 1) if add1 else (w, h)
            x1 = f32(x) + c[0] * f32(w)
            y1 = f32(y) + c[1] * f32(h)
            x2 = f32(x + w) + f32(w) * c[2]
            y2 = f32(y + h) + f32(h) * c[3]
            assert o.tolist() == [x1, y1, f32(x2 - x1), f32(y2 - y1)]


def test_rectify_makes_truncated_squares():
    rng = np.random.default_rng(4)
    boxes = rng.uniform(-30, 300, (200, 4)).astype(f32)
    boxes[:, 2:] = np.abs(boxes[:, 2:])
    for b, o in zip(boxes, bx.rectify(boxes)):
        side = max(b[2], b[3])
        nx = f32(float(b[0]) + 0.5 * float(f32(b[2] - side)))
        ny = f32(float(b[1]) + 0.5 * float(f32(b[3] - side)))
        assert o.tolist() == [math.trunc(float(v)) for v in (nx, ny, side, side)]


def test_proposals_scan_columns_outside_rows_inside():
    prob = np.zeros((3, 4), f32)
    prob[0, 2], prob[2, 1], prob[1, 1] = 0.9, 0.8, 0.7
    corrections = np.arange(4 * 3 * 4, dtype=f32).reshape(4, 3, 4)
    boxes, scores, corr = bx.proposals(prob, corrections, 0.5, 0.6)
    assert scores.tolist() == [f32(0.7), f32(0.8), f32(0.9)]  # (y,x) = (1,1), (2,1), (0,2)
    # x = 1, y = 1 at scale 0.5: min = int((2 + 1) / 0.5) = 6, max = int((2 + 12) / 0.5) = 28
    assert boxes[0].tolist() == [6, 6, 22, 22]
    assert corr[2].tolist() == corrections[:, 0, 2].tolist()


def test_tighten_uses_the_double_constants():
    out = bx.tighten(np.float32([[10, 20, 100, 80]]))[0]
    assert out.tolist() == [f32(100 * -0.0075 + 10), f32(80 * 0.2459 + 20), f32(1.0323 * 100), f32(0.7751 * 80)]
