"""The Python library around the port: colour order, PIL
images, paths read as the CLI reads them, working with Faces, many images at once."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mtcnn_cli import Detector, Face, ImageError, read_image
from mtcnn_cli.cli import main

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"
PHOTOS = ["openface__sample1.jpg", "facerec__obama_small.jpg", "opencv__lena.jpg", "insightface__no_face.png"]


def same_faces(a, b):
    return [(f.box, f.confidence, f.landmarks) for f in a] == [(f.box, f.confidence, f.landmarks) for f in b]


# --- item 11: the colour order, PIL images, paths ------------------------------------------

def test_rgb_arrays_are_said_to_be_rgb(detector, corpus):
    for name in PHOTOS[:3]:
        bgr = cv2.imread(str(corpus / name), cv2.IMREAD_COLOR)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        want = detector.detect(bgr)
        assert want
        assert same_faces(detector.detect(rgb, channels="rgb"), want)
        assert same_faces(detector.detect(bgr, channels="bgr"), want)
        assert same_faces(detector.detect(rgb, "rgb"), want)  # the second argument is the order
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
        assert same_faces(detector.detect(rgba, channels="rgb"), want)


def test_the_colour_order_is_documented_and_checked(detector, sample):
    for text in (Detector.__doc__, Detector.detect.__doc__):
        assert "BGR" in text or "bgr" in text
    assert 'channels="rgb"' in Detector.__doc__ and "PIL" in Detector.__doc__
    with pytest.raises(ValueError, match="channels must be 'bgr' or 'rgb'"):
        detector.detect(sample, channels="RGBX")


def test_pil_images_are_taken_as_rgb(detector, sample):
    Image = pytest.importorskip("PIL.Image")
    want = detector.detect(sample)
    with Image.open(SAMPLE) as image:
        assert same_faces(detector.detect(image), want)
        assert same_faces(detector.detect(image.convert("RGBA")), want)
        grey = image.convert("L")
        assert same_faces(detector.detect(grey), detector.detect(np.asarray(grey)))
        with pytest.raises(ValueError, match="RGB by nature"):
            detector.detect(image, channels="bgr")


def test_paths_are_read_as_the_cli_reads_them(detector, corpus, tmp_path):
    photo = corpus / PHOTOS[0]
    faces = detector.detect(photo)
    assert same_faces(detector.detect(str(photo)), faces)
    assert same_faces(faces, detector.detect(cv2.imread(str(photo), cv2.IMREAD_COLOR)))
    result = CliRunner().invoke(main, ["detect", str(photo), "-o", str(tmp_path / "out.json"), "-q"])
    assert result.exit_code == 0, result.stderr
    written = json.loads((tmp_path / "out.json").read_text())["images"][0]["faces"]
    assert [face.to_dict() for face in faces] == written
    (tmp_path / "cut.jpg").write_bytes(photo.read_bytes()[:5000])
    for path, reason in ((tmp_path / "missing.jpg", "no such file"), (tmp_path / "cut.jpg", "truncated JPEG")):
        with pytest.raises(ImageError, match=reason):
            detector.detect(path)
    with pytest.raises(ImageError, match="too large"):
        Detector(max_pixels=1000).detect(photo)


# --- item 12: working with results -----------------------------------------------------------

def test_faces_print_json_and_name_their_parts(detector, sample):
    face = detector.detect(sample)[0]
    text = repr(face)
    assert text.startswith("Face(x=") and len(text) < 300
    assert f"x={face.x:.2f}," in text and f"confidence={face.confidence:.4f}," in text  # for reading
    assert "landmarks=((" in text and f"({face.landmarks[0][0]:.2f}, " in text
    d = json.loads(json.dumps(face.to_dict()))
    assert set(d) == {"x", "y", "width", "height", "confidence", "landmarks"}
    assert np.float32(d["x"]) == np.float32(face.x) and len(d["x"].__repr__()) <= 10
    assert [np.float32(v) for v in np.ravel(d["landmarks"])] == [np.float32(v) for v in np.ravel(face.landmarks)]
    x1, y1, x2, y2 = face.corners
    assert repr(face.corners) == f"Corners(x1={x1:.2f}, y1={y1:.2f}, x2={x2:.2f}, y2={y2:.2f})"
    assert (x1, y1) == (face.x, face.y)
    assert x2 == float(np.float32(face.x) + np.float32(face.width))
    assert y2 == float(np.float32(face.y) + np.float32(face.height))
    assert face.box == (face.x, face.y, face.width, face.height)
    assert [face.left_eye, face.right_eye, face.nose, face.mouth_left, face.mouth_right] == list(face.landmarks)
    assert face.left_eye[0] < face.right_eye[0] and face.mouth_left[0] < face.mouth_right[0]
    bare = Face(*face.box, face.confidence, ())
    assert bare.left_eye is None and "landmarks" not in bare.to_dict()


def test_the_detector_says_what_it_is():
    text = repr(Detector(min_face=40, t3=0.8))
    assert text.startswith("Detector(models=") and "min_face=40, t1=0.6, t2=0.7, t3=0.8)" in text


# --- item 13: many images ---------------------------------------------------------------------

def test_detect_many_in_order_with_error_records(detector, corpus, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths = [corpus / PHOTOS[0], str(tmp_path / "missing.jpg"), corpus / PHOTOS[3], tmp_path / "broken.png",
             corpus / PHOTOS[1], corpus / PHOTOS[0]]
    one = list(detector.detect_many(paths))
    two = list(detector.detect_many(paths, jobs=2))
    assert [r.path for r in one] == [str(p) for p in paths]
    assert [r.error for r in one] == [None, "no such file", None, "truncated PNG data", None, None]
    for r, path in zip(one, paths):
        if r.error is None:
            assert same_faces(r.faces, detector.detect(path))
            assert (r.width, r.height) == read_image(path).shape[1::-1]
    assert [(r.path, r.width, r.height, r.error) for r in two] == [(r.path, r.width, r.height, r.error) for r in one]
    assert all(r.faces is None or same_faces(r.faces, s.faces) for r, s in zip(one, two))


def test_detect_many_takes_arrays_and_pil_images_in_this_process(detector, sample):
    rgb = np.ascontiguousarray(sample[:, :, ::-1])
    results = list(detector.detect_many([sample, rgb, str(SAMPLE)]))
    assert [r.path for r in results] == [None, None, str(SAMPLE)]
    assert same_faces(results[0].faces, results[2].faces)
    assert not same_faces(results[0].faces, results[1].faces)  # RGB read as BGR: another answer
    assert same_faces(next(detector.detect_many([rgb], channels="rgb")).faces, results[0].faces)
    assert all(f.landmarks == () for f in next(detector.detect_many([sample], landmarks=False)).faces)
    with pytest.raises(ValueError, match="file paths only"):
        detector.detect_many([sample], jobs=2)


def test_read_image_is_public_with_the_clis_checks(tmp_path):
    image = read_image(SAMPLE)
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert np.array_equal(image, cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR))
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match="too large") as caught:
        read_image(SAMPLE, max_pixels=100)
    assert caught.value.width == image.shape[1]


def test_videos_are_said_to_be_for_the_command(tmp_path):
    from mtcnn_cli import Detector

    detector = Detector.__new__(Detector)  # no models needed: refused before any detection
    detector.max_pixels = 100
    with pytest.raises(ValueError, match="is a video"):
        detector.detect(str(tmp_path / "clip.mp4"))
    with pytest.raises(ValueError, match="is a video"):
        list(detector.detect_many([tmp_path / "a.jpg", tmp_path / "clip.MKV"]))


def test_detect_many_with_jobs_runs_from_a_script_without_the_main_guard(corpus, tmp_path):
    """A plain script, no `if __name__ == "__main__":`, as people write them:
    jobs=2 gives jobs=1's results, and nothing else on stderr."""
    script = tmp_path / "faces.py"
    script.write_text(
        "import json, sys\n"
        "from mtcnn_cli import Detector\n"
        "detector = Detector()\n"
        "paths = sys.argv[1:]\n"
        "def rows(jobs):\n"
        "    return [(r.path, r.error, [f.to_dict() for f in r.faces or ()]) for r in detector.detect_many(paths, jobs=jobs)]\n"
        "print(json.dumps({'one': rows(1), 'two': rows(2)}))\n")
    paths = [str(corpus / name) for name in PHOTOS[:4]] + [str(tmp_path / "missing.jpg")]
    done = subprocess.run([sys.executable, str(script), *paths], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    found = json.loads(done.stdout)
    assert found["two"] == found["one"]
    assert [error for _, error, _ in found["one"]] == [None] * 4 + ["no such file"]


def test_leaving_a_threaded_detect_many_early_stops_its_threads(detector, corpus):
    import threading

    before = threading.active_count()
    paths = [corpus / PHOTOS[0]] * 12
    results = detector.detect_many(paths, jobs=2)
    first = next(results)
    assert first.error is None
    results.close()
    assert threading.active_count() == before
