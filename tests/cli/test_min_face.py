"""--min-face says what it does (the smallest face the pyramid searches for,
its first scale; boxes may come out smaller), and a --min-face larger than
every image says, once, that no face can be found. Real `mtcnn` processes."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"  # 480 x 360
MTCNN = Path(sys.executable).parent / "mtcnn"
WARNING = "mtcnn: --min-face {} is larger than every image: no faces can be found"


def run(*args, cwd):
    return subprocess.run([str(MTCNN), "detect", *map(str, args)], cwd=cwd, capture_output=True, timeout=300)


def test_the_help_says_what_it_does():
    done = subprocess.run([str(MTCNN), "detect", "--help"], capture_output=True, timeout=60)
    text = " ".join(done.stdout.decode().split())
    assert "--min-face INTEGER RANGE The smallest face the pyramid searches for, in pixels (at least 12): " \
           "its first scale, 12/N" in text
    assert "may come out smaller than N" in text
    assert "Smallest face searched for" not in text


def test_boxes_do_come_out_smaller_than_min_face(reference):
    """The claim of the help, from OpenFace's C++ itself: at min_face 60 its boxes go down to about 28 px
    wide and 27 px high."""
    cpp = json.loads((reference / "mf60.json").read_text())
    assert cpp["params"]["min_face"] == 60
    widths = [face["width"] for image in cpp["images"] for face in image.get("faces") or []]
    heights = [face["height"] for image in cpp["images"] for face in image.get("faces") or []]
    assert min(widths) < 30 and min(heights) < 30


@pytest.fixture
def photos(tmp_path):
    (tmp_path / "photos").mkdir()
    shutil.copy(SAMPLE, tmp_path / "photos" / "a.png")
    cv2.imwrite(str(tmp_path / "photos" / "b.png"), cv2.imread(str(SAMPLE))[:200, :300])  # 300 x 200
    return tmp_path


def test_a_min_face_larger_than_every_image_warns_once(photos):
    done = run("photos", "--min-face", 361, "-o", "out.json", cwd=photos)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.decode().splitlines()
    assert lines[0] == WARNING.format(361) and len(lines) == 2
    assert lines[1].startswith("mtcnn: 2 images, 0 faces, 0 failures, ")  # the totals stay last
    quiet = run("photos", "--min-face", 1000, "-q", cwd=photos)
    assert quiet.stderr.decode().splitlines() == [WARNING.format(1000)]  # a warning, not part of the summary
    assert [len(json.loads(line)["faces"]) for line in quiet.stdout.splitlines()] == [0, 0]


def test_no_warning_while_one_image_can_be_searched(photos):
    for args in (("--min-face", 360), ("--min-face", 201), ()):  # a.png's shorter side is 360, b.png's 200
        done = run("photos", *args, "-o", "out.json", cwd=photos)
        assert done.returncode == 0, done.stderr
        assert not any("--min-face" in line for line in done.stderr.decode().splitlines()), args


def test_images_that_could_not_be_read_do_not_count(photos):
    (photos / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    done = run("photos/broken.png", "photos/b.png", "--min-face", 250, cwd=photos)
    assert done.returncode == 1
    assert WARNING.format(250) in done.stderr.decode().splitlines()  # b.png was read, and too small
    only_broken = run("photos/broken.png", "--min-face", 250, cwd=photos)
    assert not any("--min-face" in line for line in only_broken.stderr.decode().splitlines())
