"""Aligned face crops (detector/align.py, Face.crop, Detector.crops): the
least-squares similarity against a solution found another way, crops of
synthetic images warped by known transforms, and real corpus photos."""
import math

import cv2
import numpy as np
import pytest

from mtcnn_cli import Face
from mtcnn_cli.detector import align

PHOTO = "skimage__astronaut.png"  # one clear frontal face; a PNG, so that Pillow and OpenCV decode it alike
TWO_FACES = "facerec__lin-manuel-miranda.png"
AT_THE_EDGE = "insightface__Tom_Hanks_54745.png"  # 112 x 112, the face's box reaches past the bottom edge
SWAP_LEFT_RIGHT = [1, 0, 2, 4, 3]


def lstsq_similarity(src, dst):
    """The same least-squares problem solved as a linear one: the four
    parameters (a, b, tx, ty) of [[a, -b, tx], [b, a, ty]], by numpy.linalg.lstsq."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    rows = []
    for x, y in src:
        rows.append([x, -y, 1.0, 0.0])
        rows.append([y, x, 0.0, 1.0])
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), dst.reshape(-1), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def rms_gap(matrix, src, dst):
    """RMS distance between the mapped src and dst, point by point."""
    gaps = []
    for (x, y), (u, v) in zip(src, dst):
        mx = matrix[0][0] * x + matrix[0][1] * y + matrix[0][2]
        my = matrix[1][0] * x + matrix[1][1] * y + matrix[1][2]
        gaps.append((mx - u) ** 2 + (my - v) ** 2)
    return math.sqrt(sum(gaps) / len(gaps))


def similarity_matrix(angle_degrees, scale, tx, ty):
    c, s = math.cos(math.radians(angle_degrees)) * scale, math.sin(math.radians(angle_degrees)) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


# --- the transform ------------------------------------------------------------------------

def test_similarity_is_the_least_squares_solution_on_random_points():
    rng = np.random.default_rng(20240611)
    for trial in range(200):
        n = int(rng.integers(2, 12))
        src = rng.uniform(-50, 250, (n, 2))
        if trial % 3 == 0:  # unrelated point sets
            dst = rng.uniform(-50, 250, (n, 2))
        elif trial % 3 == 1:  # a similarity plus noise
            known = similarity_matrix(rng.uniform(-180, 180), rng.uniform(0.2, 5), *rng.uniform(-100, 100, 2))
            dst = src @ known[:, :2].T + known[:, 2] + rng.normal(0, 2, (n, 2))
        else:  # a mirror image: the best similarity still has no reflection
            dst = src * [-1.0, 1.0] + rng.normal(0, 1, (n, 2))
        got, want = align.similarity(src, dst), lstsq_similarity(src, dst)
        assert got.shape == (2, 3) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        assert np.linalg.det(got[:, :2]) > 0
        assert align.residual(got, src, dst) == pytest.approx(rms_gap(want, src, dst), abs=1e-6)


def test_an_exact_similarity_is_recovered_with_no_residual():
    rng = np.random.default_rng(7)
    src = rng.uniform(0, 200, (5, 2))
    known = similarity_matrix(-37.5, 0.61, 12.25, -80.5)
    dst = [[known[0, 0] * x + known[0, 1] * y + known[0, 2], known[1, 0] * x + known[1, 1] * y + known[1, 2]]
           for x, y in src]
    np.testing.assert_allclose(align.similarity(src, dst), known, rtol=0, atol=1e-9)
    assert align.residual(known, src, dst) < 1e-9


def test_similarity_on_real_landmarks(detector, corpus):
    faces = [face for name in (PHOTO, TWO_FACES, "openface__sample6.jpg", "facerec__biden.jpg")
             for face in detector.detect(str(corpus / name))]
    assert len(faces) >= 5
    for face in faces:
        for size in (112, 224, 96):
            template = align.ARCFACE_112 * (size / 112)
            want = lstsq_similarity(face.landmarks, template)
            np.testing.assert_allclose(align.arcface_matrix(face.landmarks, size), want, rtol=0, atol=1e-6)
            np.testing.assert_allclose(face.crop_matrix(size), want, rtol=0, atol=1e-6)


def test_degenerate_points_are_refused():
    with pytest.raises(ValueError, match="coincide"):
        align.similarity([[3, 4], [3, 4], [3, 4]], [[0, 0], [1, 0], [0, 1]])
    with pytest.raises(ValueError, match="shape"):
        align.similarity([[0, 0]], [[1, 1]])
    with pytest.raises(ValueError, match="as many points"):
        align.similarity([[0, 0], [1, 1]], [[0, 0], [1, 1], [2, 2]])


# --- crops of images warped by known transforms ------------------------------------------------

def dots_image(points, shape, sigma=1.6):
    """float32 image of Gaussian dots centred on points (pixel-centre coordinates)."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    image = np.zeros(shape, np.float64)
    for x, y in points:
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma * sigma))
    return (image * 250).astype(np.float32)


def dot_centres(image):
    """The intensity-weighted centroid of each bright blob, sorted by (x, y)
    in 10-pixel bins, as (n, 2)."""
    count, labels = cv2.connectedComponents((image > 10).astype(np.uint8))
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    centres = []
    for label in range(1, count):
        w = np.where(labels == label, image, 0).astype(np.float64)
        centres.append(((w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()))
    return np.array(centres)


def match_order(found, wanted):
    """found reordered to follow wanted (nearest point each)."""
    return np.array([found[np.argmin(np.hypot(*(found - p).T))] for p in wanted])


def test_a_known_warp_is_undone_within_half_a_pixel():
    size = 112
    points = align.ARCFACE_112 + [0.3, -0.2]  # sub-pixel positions
    flat = dots_image(points, (size, size))
    known = similarity_matrix(23.0, 1.7, 61.5, -14.25)  # the crop's coordinates -> a "photo"'s
    photo = cv2.warpAffine(flat, known, (260, 240), flags=cv2.INTER_LINEAR)
    seen = match_order(dot_centres(photo), points @ known[:, :2].T + known[:, 2])
    assert len(seen) == 5

    matrix = align.similarity(seen, points)  # the photo's dots onto where they were drawn
    np.testing.assert_allclose(matrix, cv2.invertAffineTransform(known), atol=0.02)
    back = align.crop(photo, matrix, size)
    assert back.shape == (size, size) and back.dtype == np.float32
    found = match_order(dot_centres(back), points)
    assert np.hypot(*(found - points).T).max() < 0.5


def test_arcface_matrix_maps_warped_landmarks_onto_the_template():
    """A template-shaped face warped by a known similarity: its crop's dots
    are the template's, at 112 and scaled to 224."""
    known = similarity_matrix(-12.0, 2.3, 90.0, 40.5)
    landmarks = align.ARCFACE_112 @ known[:, :2].T + known[:, 2]
    photo = dots_image(landmarks, (420, 400), sigma=3.0)
    for size in (112, 224):
        crop = Face(0.0, 0.0, 1.0, 1.0, 1.0, tuple(map(tuple, landmarks))).crop(photo, size)
        template = align.ARCFACE_112 * (size / 112)
        found = match_order(dot_centres(crop), template)
        assert np.hypot(*(found - template).T).max() < 0.5


# --- real photos ----------------------------------------------------------------------------

def test_the_landmark_order_is_the_templates(detector, corpus):
    """ARCFACE_112 lists the eye on the image's left first (x 38 < 74), as
    ONet's landmarks do (Face.left_eye is the eye on the image's left). On the
    astronaut photo (also checked by eye on a drawing of the points: 0 on the
    eye at the image's left, 2 the nose, 3 and 4 the mouth corners, left to
    right): the points' geometry, the fit, and a mirrored copy all agree."""
    image = cv2.imread(str(corpus / PHOTO), cv2.IMREAD_COLOR)
    face, = detector.detect(image)
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert face.left_eye == (lx, ly) and face.mouth_right == (mrx, mry)
    assert lx < nx < rx and mlx < nx < mrx  # left of the image first, as in the template
    assert max(ly, ry) < ny < min(mly, mry)  # eyes above the nose above the mouth
    assert align.ARCFACE_112[0, 0] < align.ARCFACE_112[2, 0] < align.ARCFACE_112[1, 0]

    # With left and right swapped, no similarity (no reflection) fits: the order is the template's.
    ours = align.residual(align.arcface_matrix(face.landmarks), face.landmarks, align.ARCFACE_112)
    swapped = np.array(face.landmarks)[SWAP_LEFT_RIGHT]
    theirs = align.residual(align.similarity(swapped, align.ARCFACE_112), swapped, align.ARCFACE_112)
    assert ours < 6 and theirs > 3 * ours

    # In the mirrored photo, the eye on the image's left is the mirror of the one on the right.
    width = image.shape[1]
    mirrored, = detector.detect(np.ascontiguousarray(image[:, ::-1]))
    for name, twin in (("left_eye", "right_eye"), ("mouth_left", "mouth_right"), ("nose", "nose")):
        x, y = getattr(mirrored, name)
        tx, ty = getattr(face, twin)
        assert math.hypot(x - (width - 1 - tx), y - ty) < 3, name


def test_on_a_photo_the_crop_puts_the_face_on_the_template(detector, corpus):
    image = cv2.imread(str(corpus / PHOTO), cv2.IMREAD_COLOR)
    face, = detector.detect(image)
    matrix = face.crop_matrix()
    fit = align.residual(matrix, face.landmarks, align.ARCFACE_112)
    # the mapped landmarks are within the least-squares residual of the template ...
    assert rms_gap(matrix, face.landmarks, align.ARCFACE_112) == pytest.approx(fit, abs=1e-9)
    assert fit < 0.2 * (align.ARCFACE_112[1, 0] - align.ARCFACE_112[0, 0])
    # ... and no nearby similarity comes closer
    rng = np.random.default_rng(3)
    a, b, tx, ty = matrix[0][0], matrix[1][0], matrix[0][2], matrix[1][2]
    for da, db, dx, dy in rng.normal(0, [0.01, 0.01, 0.5, 0.5], (200, 4)):
        other = [[a + da, -(b + db), tx + dx], [b + db, a + da, ty + dy]]
        assert rms_gap(other, face.landmarks, align.ARCFACE_112) >= fit

    # The crop itself: the detector finds the face again where the matrix put it.
    crop = face.crop(image)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    again, = detector.detect(crop)
    mapped = align.transform(matrix, face.landmarks)
    assert np.hypot(*(np.array(again.landmarks) - mapped).T).max() < 2.5
    assert rms_gap([[1, 0, 0], [0, 1, 0]], again.landmarks, align.ARCFACE_112) < fit + 2.5


@pytest.mark.parametrize("name", [PHOTO, TWO_FACES])
@pytest.mark.parametrize("style, margin", [("arcface", 0.0), ("box", 0.25)])
def test_crops_are_the_same_from_a_path_its_bytes_an_array_and_a_pil_image(detector, corpus, name, style, margin):
    from PIL import Image

    path = corpus / name
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    from_path = detector.crops(path, style=style, margin=margin)
    from_array = detector.crops(bgr, style=style, margin=margin)
    with Image.open(path) as pil:
        from_pil = detector.crops(pil, style=style, margin=margin)
    from_rgb = detector.crops(np.ascontiguousarray(bgr[:, :, ::-1]), channels="rgb", style=style, margin=margin)
    from_bytes = detector.crops(path.read_bytes(), style=style, margin=margin)
    assert len(from_path) >= 1
    for (face, crop), (bytes_face, bytes_crop) in zip(from_path, from_bytes):
        assert face == bytes_face and np.array_equal(crop, bytes_crop)
    for runs in zip(from_path, from_array, from_pil, from_rgb):
        faces, crops = zip(*runs)
        assert len(set(faces)) == 1
        assert all(c.shape == (112, 112, 3) and c.dtype == np.uint8 for c in crops)
        path_crop, array_crop, pil_crop, rgb_crop = crops
        assert np.array_equal(path_crop, array_crop)
        assert np.array_equal(pil_crop[:, :, ::-1], path_crop)  # the PIL image's crop is RGB
        assert np.array_equal(rgb_crop, pil_crop)
        assert np.array_equal(path_crop, faces[0].crop(bgr, style=style, margin=margin))


def test_a_crop_keeps_the_images_channels_and_dtype(detector, corpus):
    bgr = cv2.imread(str(corpus / PHOTO), cv2.IMREAD_COLOR)
    face, = detector.detect(bgr)
    crop = face.crop(bgr, 96)
    assert crop.shape == (96, 96, 3)
    assert np.array_equal(face.crop(np.ascontiguousarray(bgr[:, :, ::-1]), 96), crop[:, :, ::-1])
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert face.crop(grey, 96).shape == (96, 96)
    assert face.crop(grey[:, :, None], 96).shape == (96, 96, 1)
    # Every channel is cropped as it would be alone, whatever the channel count
    # (OpenCV's own warp of 2 or 5+ channels differs by a few levels).
    for extra in (0, 1, 2, 4):
        planes = np.dstack([bgr] + [bgr[:, :, :1]] * extra)
        several = face.crop(planes, 96)
        assert several.shape == (96, 96, 3 + extra) and np.array_equal(several[:, :, :3], crop)
        assert all(np.array_equal(several[:, :, 3 + i], crop[:, :, 0]) for i in range(extra))
    two = face.crop(np.ascontiguousarray(bgr[:, :, 1:]), 96)
    assert two.shape == (96, 96, 2) and np.array_equal(two, crop[:, :, 1:])
    as_float = face.crop(bgr.astype(np.float32), 96)
    assert as_float.dtype == np.float32 and np.abs(as_float - crop).max() <= 1.0


def bilinear(image, matrix, size):
    """The crop computed pixel by pixel in float64: each crop pixel (u, v)
    samples the image at the inverse map of (u, v), bilinearly, with zeros
    beyond the image."""
    a, b, c, d = matrix[0][0], matrix[0][1], matrix[1][0], matrix[1][1]
    det = a * d - b * c
    padded = np.pad(image.astype(np.float64), [(2, 2), (2, 2)] + [(0, 0)] * (image.ndim - 2))
    out = np.zeros((size, size) + image.shape[2:])
    for v in range(size):
        for u in range(size):
            du, dv = u - matrix[0][2], v - matrix[1][2]
            x, y = (d * du - b * dv) / det, (a * dv - c * du) / det
            x0, y0 = math.floor(x), math.floor(y)
            if -2 < x0 < image.shape[1] + 1 and -2 < y0 < image.shape[0] + 1:
                fx, fy = x - x0, y - y0
                p = padded[y0 + 2:y0 + 4, x0 + 2:x0 + 4]
                out[v, u] = ((1 - fy) * ((1 - fx) * p[0, 0] + fx * p[0, 1])
                             + fy * ((1 - fx) * p[1, 0] + fx * p[1, 1]))
    return out


@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4, 6])
def test_a_crop_is_bilinear_sampling_with_zeros_outside(channels):
    rng = np.random.default_rng(11)
    shape = (37, 53) if channels is None else (37, 53, channels)
    image = rng.uniform(0, 255, shape).astype(np.float32)
    matrix = similarity_matrix(31.0, 1.37, 9.5, -20.25)  # parts of the crop fall outside the image
    want = bilinear(image, matrix, 48)
    got = align.crop(image, matrix, 48)
    assert got.shape == want.shape and got.dtype == np.float32
    assert (want == 0).any() and np.abs(got - want).max() < 1e-3


# --- the image's edges ----------------------------------------------------------------------

def test_box_crops_beyond_the_image_are_zeros():
    """A box near the top edge, grown by its margin: the crop's rows above
    the image are black, the others the image's (independently: side 40 x 1.5
    = 60 centred on (30, 19), so crop (u, v) samples image (u, v - 11) at size 60)."""
    image = np.full((50, 70, 3), 255, np.uint8)
    face = Face(10.0, 4.0, 40.0, 30.0, 0.99, ())
    np.testing.assert_allclose(align.box_matrix(face, 60, 0.5), [[1, 0, 0], [0, 1, 11]], atol=1e-12)
    crop = face.crop(image, 60, style="box", margin=0.5)
    assert (crop[:11] == 0).all() and (crop[11:] == 255).all()
    doubled = face.crop(image, 120, style="box", margin=0.5)  # (u, v) samples (u / 2, v / 2 - 11)
    assert (doubled[:21] == 0).all() and (doubled[22:] == 255).all()


def test_a_real_face_at_the_edge_is_padded_with_zeros(detector, corpus):
    image = cv2.imread(str(corpus / AT_THE_EDGE), cv2.IMREAD_COLOR)
    assert image.min() >= 12  # no black pixel of its own
    face, = detector.detect(image)
    height, width = image.shape[:2]
    for style, margin in (("box", 0.3), ("box", 0.0), ("arcface", 0.5)):
        matrix = np.array(face.crop_matrix(128, style, margin))
        crop = face.crop(image, 128, style, margin)
        back = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))  # crop -> image coordinates
        vs, us = np.mgrid[0:128, 0:128]
        xs = back[0, 0] * us + back[0, 1] * vs + back[0, 2]
        ys = back[1, 0] * us + back[1, 1] * vs + back[1, 2]
        outside = (xs <= -1) | (xs >= width) | (ys <= -1) | (ys >= height)
        inside = (xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1)
        assert outside.any() and inside.any(), style
        assert (crop[outside] == 0).all(), style
        assert (crop[inside] >= 12).all(), style


# --- bad requests ---------------------------------------------------------------------------

def test_bad_crop_requests_are_one_line_value_errors(detector):
    face = Face(10.0, 10.0, 50.0, 50.0, 0.99, ((20.0, 25.0), (40.0, 25.0), (30.0, 35.0), (22.0, 45.0), (38.0, 45.0)))
    image = np.zeros((80, 80, 3), np.uint8)
    for kwargs, fragment in (({"style": "square"}, "style"), ({"size": 0}, "size"), ({"size": 2.5}, "size"),
                             ({"margin": -0.1}, "margin"), ({"margin": float("nan")}, "margin")):
        for call in (lambda: face.crop(image, **kwargs), lambda: face.crop_matrix(**kwargs),
                     lambda: detector.crops(image, **kwargs)):
            with pytest.raises(ValueError, match=fragment) as caught:
                call()
            assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="no landmarks"):
        Face(10.0, 10.0, 50.0, 50.0, 0.99, ()).crop(image)
    assert Face(10.0, 10.0, 50.0, 50.0, 0.99, ()).crop(image, style="box").shape == (112, 112, 3)
    with pytest.raises(ValueError, match="numpy array"):
        face.crop([[0, 1], [2, 3]])


def test_crop_matrix_is_nested_lists_of_floats(detector, corpus):
    face, = detector.detect(str(corpus / PHOTO))
    for style in ("arcface", "box"):
        matrix = face.crop_matrix(160, style, 0.1)
        assert len(matrix) == 2 and all(len(row) == 3 and all(type(v) is float for v in row) for row in matrix)
        np.testing.assert_array_equal(np.array(matrix), align.face_matrix(face, 160, style, 0.1))
    assert face.to_dict().keys() == {"x", "y", "width", "height", "confidence", "landmarks"}
