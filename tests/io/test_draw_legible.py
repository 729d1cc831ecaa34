"""Annotations legible for every face from 20 to 2,000 pixels, and --draw
choosing what is drawn without touching the records.

The image is real: the bundled sample's large face scaled with cv2.resize to
about 2,000 px wide, with the whole sample scaled down to 0.3 pasted in a
corner (faces of about 27 and 44 px) — a small face in a large photo and a
huge one side by side. The faces are the detector's on the sample, scaled
alike. What is checked is what a reader meets: the box's line is visible and
does not cover a small face, the label's black text on green has the
contrast (WCAG's ratio) and the height to be read, and the index is there."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtcnn_cli import Detector
from mtcnn_cli.io import draw

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"
MTCNN = Path(sys.executable).parent / "mtcnn"
GREEN = np.array(draw.BOX_COLOUR)
LABEL = ("index", "scores")  # the label alone: no box line of the same green beside it


def scaled(face, factor, dx=0.0, dy=0.0):
    return replace(face, x=face.x * factor + dx, y=face.y * factor + dy, width=face.width * factor,
                   height=face.height * factor,
                   landmarks=tuple((px * factor + dx, py * factor + dy) for px, py in face.landmarks))


@pytest.fixture(scope="module")
def scene():
    """(image, faces): a ~2,000 px face and a pasted small copy of the sample."""
    sample = cv2.imread(str(SAMPLE))
    faces = Detector().detect(sample)
    small, large = sorted(faces, key=lambda f: f.width)
    big = 2000 / large.width
    top, left = 100, 50
    crop = sample[top:320, left:260]
    image = cv2.resize(crop, None, fx=big, fy=big, interpolation=cv2.INTER_LINEAR)
    tiny = cv2.resize(sample, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    y0, x0 = image.shape[0] - tiny.shape[0] - 20, image.shape[1] - tiny.shape[1] - 20
    image[y0:y0 + tiny.shape[0], x0:x0 + tiny.shape[1]] = tiny
    drawn_faces = [scaled(large, big, -left * big, -top * big)] + [scaled(f, 0.3, x0, y0) for f in faces]
    return image, drawn_faces


def test_the_scene_holds_faces_from_27_to_2000_px(scene):
    image, faces = scene
    widths = sorted(round(f.width) for f in faces)
    assert widths[0] <= 28 and widths[-1] >= 1990
    assert image.shape[0] * image.shape[1] > 8e6


def line_width_at(image, face):
    """The box's left edge, measured across at mid-height: how many pixels
    in a row are the box's green (anti-aliased edges at half strength)."""
    row = int(face.y + face.height / 2)
    x = int(round(face.x))
    reach = max(4, int(face.width * 0.1))
    strip = image[row, max(0, x - reach): x + reach].astype(int)
    greenish = (strip[:, 1] > 160) & (strip[:, 0] < 110) & (strip[:, 2] < 110)
    return int(greenish.sum())


def luminance(bgr):
    srgb = np.asarray(bgr, float)[..., ::-1] / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    return linear @ [0.2126, 0.7152, 0.0722]


def label_of(image, face):
    """The filled green label above the face's box (found by its colour, in
    an image where only this face's label is drawn), its text's height in
    rows and its contrast ratio (WCAG: at least 4.5 reads)."""
    reach = int(max(60, face.width * 0.4))
    top = max(0, int(face.y) - reach)
    region = image[top:int(face.y) + 2]
    rows, cols = np.nonzero(np.all(region == GREEN, axis=2))
    assert rows.size, "no label"
    box = region[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    text = box.max(axis=2) < 90
    text_rows = np.nonzero(text.any(axis=1))[0]
    contrast = (luminance(GREEN) + 0.05) / (luminance(box[text].mean(axis=0)) + 0.05)
    return {"width": box.shape[1], "height": box.shape[0], "text_height": int(np.ptp(text_rows) + 1),
            "contrast": contrast}


def labels(image):
    """The green rectangles of an image where only labels are drawn: their
    bounding boxes (x, y, w, h), from OpenCV's connected components."""
    mask = np.all(image == GREEN, axis=2).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    boxes = [tuple(int(v) for v in stats[k, :4]) for k in range(1, count)]

    def inside(a, b):  # the green inside a glyph (the hole of a 0) is part of its label
        return a != b and b[0] <= a[0] and b[1] <= a[1] and a[0] + a[2] <= b[0] + b[2] and a[1] + a[3] <= b[1] + b[3]
    return [a for a in boxes if not any(inside(a, b) for b in boxes)]


def test_every_face_has_a_visible_line_that_does_not_cover_it(scene):
    image, faces = scene
    drawn = draw.annotate(image, faces)
    for face in faces:
        width = line_width_at(drawn, face)
        assert width >= 1, face.width
        # a small face stays visible (anti-aliasing may add a partial pixel on each side)
        assert width <= max(2, 0.06 * face.width) + 2, (face.width, width)
        if face.width > 1000:
            assert width >= 0.004 * face.width  # a huge face's line still shows when the photo is shown whole


def test_every_label_is_legible(scene):
    image, faces = scene
    alone = {id(face): draw.annotate(image, [face], parts=LABEL) for face in faces}
    small_photo = np.full((300, 400, 3), 128, np.uint8)
    for face in faces:
        label = label_of(alone[id(face)], face)
        assert label["contrast"] >= 4.5, (face.width, label)
        assert label["text_height"] >= draw.MIN_TEXT_PIXELS, (face.width, label)
        if face.width < 100:  # a small face in a large photo: a larger label than in a small photo
            in_small = label_of(draw.annotate(small_photo, [replace(face, x=100.0, y=150.0)], parts=LABEL),
                                replace(face, x=100.0, y=150.0))
            assert label["text_height"] >= 1.3 * in_small["text_height"], (label, in_small)
        if face.width > 1000:
            assert label["text_height"] >= 0.08 * face.width  # sized by its face
    heights = [label_of(alone[id(f)], f)["text_height"] for f in sorted(faces, key=lambda f: f.width)]
    assert heights[-1] > 5 * heights[0]


def test_labels_of_faces_close_together_do_not_cover_each_other(scene):
    image, faces = scene
    small = sorted(faces, key=lambda f: f.width)[:2]
    (a,), (b,) = (labels(draw.annotate(image, [face], parts=LABEL)) for face in small)
    # drawn alone, each would take the same place
    assert a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
    found = labels(draw.annotate(image, faces, parts=LABEL))
    assert len(found) == len(faces), found  # the two small faces' labels: apart, not one over the other
    for (x, y, w, h), (x2, y2, w2, h2) in zip(found, found[1:]):
        assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y


def test_the_index_is_drawn_beside_each_box(scene):
    image, faces = scene
    for face in faces:
        drawn = [draw.annotate(image, [face], parts=parts) for parts in (("index", "scores"), ("scores",), ("index",))]
        a, b, c = (label_of(d, face)["width"] for d in drawn)
        assert a > b > c > 0  # "#k 0.99..." is wider than "0.99...", which is wider than "#k"
    assert draw.label_text(2, np.float32(0.9999838), draw.PARTS) == "#2 0.9999838"


def test_a_label_stays_inside_the_image():
    image = np.full((120, 160, 3), 128, np.uint8)
    at_the_corner = replace(draw_face(-6.5, -3.0, 40), confidence=np.float32(0.9876543))
    drawn = draw.annotate(image, [at_the_corner])
    rows, cols = np.nonzero(np.all(drawn == GREEN, axis=2))
    assert cols.min() == 0 and rows.min() == 0  # moved in: the face's box starts outside the image
    label = drawn[:rows.max() + 1, :cols.max() + 1]
    text_cols = np.nonzero((label.max(axis=2) < 90).any(axis=0))[0]
    assert text_cols.size and text_cols.min() >= 1 and text_cols.max() < cols.max()  # green all round the text


def draw_face(x, y, size):
    from mtcnn_cli import Face

    points = tuple((x + size * fx, y + size * fy) for fx, fy in ((0.3, 0.35), (0.7, 0.35), (0.5, 0.55),
                                                                 (0.35, 0.8), (0.65, 0.8)))
    return Face(float(x), float(y), float(size), float(size), 0.99, points)


# --- --draw from the command line ---------------------------------------------------------------

def run(*args, cwd):
    return subprocess.run([str(MTCNN), "detect", *map(str, args)], cwd=cwd, capture_output=True, timeout=300)


def point_pixels(image):
    return sum(int(np.all(image == colour, axis=2).sum()) for colour in set(draw.POINT_COLOURS))


def test_draw_chooses_the_picture_and_never_the_records(tmp_path):
    outputs = {}
    for name, parts in (("all", None), ("boxes", "boxes"), ("points", "landmarks,index")):
        args = ["--draw", parts] if parts else []
        done = run(SAMPLE, "--annotate", tmp_path / name, "-o", tmp_path / f"{name}.json", *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        outputs[name] = cv2.imread(str(tmp_path / name / str(SAMPLE).lstrip("/")))
    records = {name: (tmp_path / f"{name}.json").read_bytes() for name in outputs}
    assert records["boxes"] == records["all"] == records["points"]  # byte for byte
    assert len(json.loads(records["all"])["images"][0]["faces"][0]["landmarks"]) == 5
    original = cv2.imread(str(SAMPLE))
    assert point_pixels(original) == 0
    assert point_pixels(outputs["all"]) > 20 and point_pixels(outputs["points"]) > 20
    assert point_pixels(outputs["boxes"]) == 0  # --draw boxes: not one landmark dot
    # no label with --draw boxes (less solid green), a label but no box with landmarks,index
    assert np.all(outputs["boxes"] == GREEN, axis=2).sum() < np.all(outputs["all"] == GREEN, axis=2).sum()
    assert not np.array_equal(outputs["points"], outputs["all"])


def test_a_bad_or_lonely_draw_is_one_usage_line(tmp_path):
    for args, fragment in ((["--draw", "boxes,nose", "--annotate", "out"], "'nose' is not one of"),
                           (["--draw", "boxes"], "--draw chooses what --annotate draws")):
        done = run(SAMPLE, *args, cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == b""
        (line,) = done.stderr.decode().splitlines()
        assert line.startswith("mtcnn detect: ") and fragment in line
    assert not (tmp_path / "out").exists()
