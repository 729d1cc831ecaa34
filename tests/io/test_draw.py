"""Annotated copies: legible on every image."""
import numpy as np

from mtcnn_cli.io import draw

from ..detect_support import StandInFace


def face(x, y, size, confidence=0.99, points=None):
    points = points or tuple((x + size * fx, y + size * fy)
                             for fx, fy in ((0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.35, 0.8), (0.65, 0.8)))
    return StandInFace(float(x), float(y), float(size), float(size), confidence, points)


def label_height(image, f):
    """Rows of the filled green label above the face's box (which is drawn
    with the face's stroke centred on y): rows with green in the label's
    first columns (the black text never covers a whole row of them)."""
    x = int(round(f.x))
    rows = image[: int(f.y) - draw.line_width(*image.shape[:2], f.width) // 2 - 1, x: x + 8]
    return int(np.all(rows == draw.BOX_COLOUR, axis=2).any(axis=1).sum())


def test_points_keep_an_outline_on_their_own_colour():
    """A blue eye point on a blue (or any dark) eye stays visible: a black ring around it."""
    for background in (draw.POINT_COLOURS[0], (20, 20, 20)):
        image = np.empty((300, 300, 3), np.uint8)
        image[:] = background
        f = face(50, 80, 200)
        drawn = draw.annotate(image, [f])
        px, py = f.landmarks[0]
        ring = drawn[int(py) - 6: int(py) + 7, int(px) - 6: int(px) + 7].reshape(-1, 3)
        assert (ring.astype(int).sum(axis=1) < 60).sum() >= 8, "no dark outline around the point"
        assert (np.all(ring == draw.POINT_COLOURS[0], axis=1)).any()


def test_the_label_is_sized_by_its_face_above_the_images_floor():
    small, large = face(100, 300, 40), face(300, 300, 240)
    image = np.zeros((700, 700, 3), np.uint8)
    drawn = draw.annotate(image, [small, large], landmarks=False)
    assert label_height(drawn, large) > 2.5 * label_height(drawn, small) > 0
    in_a_huge_image = draw.annotate(np.zeros((3000, 3000, 3), np.uint8), [large], landmarks=False)
    assert abs(label_height(in_a_huge_image, large) - label_height(drawn, large)) <= 1
    assert label_height(drawn, small) >= draw.MIN_TEXT_PIXELS


def test_confidences_that_differ_read_differently():
    assert draw.confidence_label(np.float32(0.9999838)) == "0.9999838"
    assert draw.confidence_label(np.float32(0.9999741)) != draw.confidence_label(np.float32(0.9999838))
    image = np.zeros((200, 400, 3), np.uint8)
    one = draw.annotate(image, [face(20, 60, 120, np.float32(0.9999838))], landmarks=False)
    two = draw.annotate(image, [face(20, 60, 120, np.float32(0.9999741))], landmarks=False)
    assert not np.array_equal(one, two)
