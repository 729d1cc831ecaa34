"""The Python API: inputs it takes and refuses, edge sizes, parameters, landmarks."""
import cv2
import numpy as np
import pytest

from mtcnn_cli import Detector, Face
from mtcnn_cli.detector.cascade import pyramid_scales


def test_finds_both_drawn_faces_with_landmarks_inside(detector, sample):
    faces = detector.detect(sample)
    assert len(faces) == 2
    centres = sorted(f.x + f.width / 2 for f in faces)
    assert centres[0] == pytest.approx(150, abs=25) and centres[1] == pytest.approx(350, abs=25)
    for f in faces:
        assert isinstance(f, Face) and 0.7 <= f.confidence <= 1.0
        (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = f.landmarks
        # eyes above the nose, nose above the mouth; left/right as seen in the image
        assert lex < nx < rex and mlx < mrx
        assert max(ley, rey) < ny < min(mly, mry)
        for x, y in f.landmarks:
            assert f.x - 0.1 * f.width <= x <= f.x + 1.1 * f.width
            assert f.y - 0.5 * f.height <= y <= f.y + 1.1 * f.height


def test_drawn_eyes_are_where_they_were_drawn(detector, sample):
    # make_synthetic_faces.py puts the big face's pupils at (150 -+ 32, 168)
    big = max(detector.detect(sample), key=lambda f: f.width)
    (lex, ley), (rex, rey) = big.landmarks[:2]
    assert (lex, ley) == pytest.approx((118, 168), abs=6)
    assert (rex, rey) == pytest.approx((182, 168), abs=6)


def test_grey_input_equals_replicated_bgr(detector, sample):
    grey = cv2.cvtColor(sample, cv2.COLOR_BGR2GRAY)
    assert detector.detect(grey) == detector.detect(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    assert detector.detect(grey[:, :, None]) == detector.detect(grey)


def test_bgra_input_ignores_alpha(detector, sample):
    bgra = cv2.cvtColor(sample, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = np.arange(bgra.shape[1], dtype=np.uint8)[None, :]
    assert detector.detect(bgra) == detector.detect(sample)


@pytest.mark.parametrize("bad, words", [
    (np.zeros((20, 20, 3), np.float32), "uint8"),
    (np.zeros((20, 20, 3), np.uint16), "uint8"),
    (np.zeros((0, 20, 3), np.uint8), "empty"),
    (np.zeros((20, 20, 2), np.uint8), "H x W x 3"),
    (np.zeros((2, 20, 20, 3), np.uint8), "H x W x 3"),
    (np.zeros(20, np.uint8), "H x W x 3"),
    ([[1, 2], [3, 4]], "numpy array"),
])
def test_refuses_other_inputs_with_a_clear_error(detector, bad, words):
    with pytest.raises(ValueError, match=words):
        detector.detect(bad)


@pytest.mark.parametrize("h, w", [(1, 1), (10, 10), (42, 42), (43, 43), (60, 60), (40, 800), (800, 40)])
def test_edge_sizes_run_without_error(detector, h, w):
    rng = np.random.default_rng(h * 1000 + w)
    faces = detector.detect(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    assert isinstance(faces, list) and all(isinstance(f, Face) for f in faces)
    if not pyramid_scales(h, w, 60):  # too small to search: nothing, where the C++ aborts
        assert faces == []
    # noise is not a face
    assert all(f.confidence < 0.99 for f in faces)


def test_small_images_have_no_pyramid_and_no_faces(detector):
    # the C++ aborts below about 0.709 * min_face; we return nothing
    assert pyramid_scales(42, 42, 60) == []
    assert detector.detect(np.full((42, 42, 3), 128, np.uint8)) == []


def test_sixty_pixel_image_gives_a_single_pnet_cell():
    scales = pyramid_scales(60, 60, 60)
    assert len(scales) == 1 and scales[0] == pytest.approx(0.2)


def test_a_face_in_a_60x60_image_is_found(detector, sample):
    big = max(detector.detect(sample), key=lambda f: f.width)
    cx, cy = int(big.x + big.width / 2), int(big.y + big.height / 2)
    crop = np.ascontiguousarray(sample[cy - 110:cy + 110, cx - 110:cx + 110])
    tiny = cv2.resize(crop, (60, 60), interpolation=cv2.INTER_AREA)
    assert len(detector.detect(tiny)) == 1


@pytest.mark.parametrize("kwargs", [
    {"min_face": 11}, {"min_face": 0}, {"min_face": 20.5}, {"min_face": True},
    {"t1": -0.1}, {"t2": 1.5}, {"t3": float("nan")}, {"t1": "0.5"},
])
def test_invalid_parameters_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        Detector(**kwargs)


def test_thresholds_change_the_result(sample):
    strict = Detector(t3=0.99).detect(sample)
    loose = Detector().detect(sample)
    assert len(strict) < len(loose)
    assert Detector(min_face=400).detect(sample) == []  # larger than the 360 px image


def test_models_are_loaded_once_per_detector(monkeypatch, sample):
    import mtcnn_cli.detector.models as models

    calls = []
    real = models.load_models
    monkeypatch.setattr(models, "load_models", lambda *a, **k: calls.append(1) or real(*a, **k))
    d = Detector()
    for _ in range(3):
        d.detect(sample)
    assert len(calls) == 1


def test_bundled_and_openface_models_give_identical_faces(openface_models, sample):
    assert Detector(models=openface_models).detect(sample) == Detector().detect(sample)


def thread_inputs(sample):
    """The sample at several sizes and crops: different pyramids, crops and batch sizes."""
    out = [sample]
    for f in (0.6, 0.8, 1.3):
        out.append(cv2.resize(sample, None, fx=f, fy=f, interpolation=cv2.INTER_AREA))
    out.append(np.ascontiguousarray(sample[20:, 35:]))
    out.append(np.ascontiguousarray(sample[:, ::-1]))
    return out


@pytest.mark.parametrize("shared", [True, False])
def test_concurrent_calls_give_the_serial_results(detector, sample, shared):
    """Detect from 4 threads at once, on one Detector or one each: the kernels
    release the GIL, so the calls really overlap, and nothing in a call may
    depend on another (no process-wide switch, no shared scratch)."""
    from concurrent.futures import ThreadPoolExecutor

    images = thread_inputs(sample)
    serial = [detector.detect(img) for img in images]
    assert any(serial)
    detectors = [detector] * 4 if shared else [Detector() for _ in range(4)]

    def work(t):
        return [(i, detectors[t].detect(images[i])) for _ in range(3) for i in range(len(images))]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    for per_thread in results:
        for i, faces in per_thread:
            assert faces == serial[i]
