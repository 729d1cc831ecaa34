"""`mtcnn detect --crops DIR`: a PNG per face, named as --annotate names its
copies, and the records carry each crop's path and matrix. Real folders and
real `mtcnn` processes with the real detector; the expected crops are made
here with OpenCV from the record's own numbers and ArcFace's template as
published, not by the package's code."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.process

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"
MTCNN = Path(sys.executable).parent / "mtcnn"
# ArcFace's 112 x 112 five-point template (insightface), typed in from its publication
ARCFACE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                    [41.5493, 92.3655], [70.7299, 92.2041]])


def run(*args, cwd):
    return subprocess.run([str(MTCNN), "detect", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def tree(tmp_path):
    """a/x.png (the sample: two faces) and b/x.png (the same, flipped)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(SAMPLE, tmp_path / "a" / "x.png")
    cv2.imwrite(str(tmp_path / "b" / "x.png"), cv2.imread(str(SAMPLE))[:, ::-1])
    return tmp_path


def test_crops_are_one_png_per_face_named_like_the_inputs_and_recorded(tree):
    done = run("a/x.png", "b/x.png", "--crops", "crops", "-o", "faces.jsonl", cwd=tree)
    assert done.returncode == 0, done.stderr
    records = lines(tree / "faces.jsonl")
    found = sorted(p.relative_to(tree / "crops").as_posix() for p in (tree / "crops").rglob("*.png"))
    assert found == ["a/x_0.png", "a/x_1.png", "b/x_0.png", "b/x_1.png"]
    for record in records:
        image = cv2.imread(str(tree / record["path"]))
        for k, face in enumerate(record["faces"]):
            stem = record["path"][:-len(".png")]
            assert face["crop"] == f"crops/{stem}_{k}.png"
            matrix = np.array(face["matrix"])
            assert matrix.shape == (2, 3)
            # the crop is the image warped by the recorded matrix, bilinear, zeros outside
            expected = cv2.warpAffine(image, matrix, (112, 112), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            assert np.array_equal(cv2.imread(str(tree / face["crop"])), expected)
            # and the matrix puts the five points on ArcFace's template, up to the fit's residual
            points = np.array(face["landmarks"])
            placed = points @ matrix[:, :2].T + matrix[:, 2]
            assert np.sqrt(np.mean(np.sum((placed - ARCFACE) ** 2, axis=1))) < 6.0
            # a similarity: a rotation and one scale, no shear, no reflection
            a, b = matrix[0, 0], matrix[1, 0]
            assert np.allclose(matrix[:, :2], [[a, -b], [b, a]], atol=1e-9)


def test_without_crops_the_records_are_as_they_were(tree):
    plain = run("a/x.png", cwd=tree)
    cropped = run("a/x.png", "--crops", "crops", cwd=tree)
    assert plain.returncode == cropped.returncode == 0
    assert '"crop"' not in plain.stdout and '"matrix"' not in plain.stdout
    # the same faces, to the byte, before the crop fields
    for before, after in zip(plain.stdout.splitlines(), cropped.stdout.splitlines()):
        b, a = json.loads(before), json.loads(after)
        for face in a["faces"]:
            face.pop("crop"), face.pop("matrix")
        assert a["faces"] == b["faces"]


def test_box_crops_are_the_square_box_grown_by_the_margin(tree):
    done = run("a/x.png", "--crops", "crops", "--crop-style", "box", "--crop-size", 64, "--margin", 0.25,
               "--format", "csv", cwd=tree)
    assert done.returncode == 0, done.stderr
    header, *rows = [line.split(",") for line in done.stdout.splitlines()]
    for row in rows:
        cell = dict(zip(header, row))
        x, y, w, h = (float(cell[k]) for k in ("x", "y", "width", "height"))
        side = max(w, h) * 1.25
        scale = 64 / side
        left, top = x + w / 2 - side / 2, y + h / 2 - side / 2
        expected = [scale, 0.0, -left * scale, 0.0, scale, -top * scale]
        got = [float(cell[k]) for k in ("m11", "m12", "m13", "m21", "m22", "m23")]
        assert np.allclose(got, expected, rtol=1e-6, atol=1e-6)
        assert cv2.imread(str(tree / cell["crop"])).shape == (64, 64, 3)


def test_crop_compression_changes_the_files_size_and_never_the_pixels(tree):
    sizes, pixels = {}, {}
    for level in (None, "0", "1", "9"):
        out = f"crops{level}"
        done = run("a/x.png", "--crops", out, *(["--crop-compression", level] if level else []), cwd=tree)
        assert done.returncode == 0, done.stderr
        files = sorted((tree / out).rglob("*.png"))
        assert len(files) == 2
        sizes[level] = [f.stat().st_size for f in files]
        pixels[level] = [cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files]
    for level in ("0", "1", "9"):
        assert all(np.array_equal(a, b) for a, b in zip(pixels[level], pixels[None]))
    assert sizes[None] == sizes["0"]  # the default: stored, every pixel's bytes in the file
    assert all(size >= 112 * 112 * 3 for size in sizes["0"])
    assert all(small < stored for small, stored in zip(sizes["1"], sizes["0"]))
    assert all(smaller <= small for smaller, small in zip(sizes["9"], sizes["1"]))


def test_crops_written_again_replace_the_files_keep_their_bits_and_follow_links(tree):
    assert run("a/x.png", "--crops", "crops", cwd=tree).returncode == 0
    first, second = tree / "crops" / "a" / "x_0.png", tree / "crops" / "a" / "x_1.png"
    first.write_bytes(b"stale")
    first.chmod(0o600)
    kept = tree / "kept.png"
    second.rename(kept)
    second.symlink_to(kept)
    kept.write_bytes(b"stale")
    done = run("a/x.png", "--crops", "crops", cwd=tree)
    assert done.returncode == 0, done.stderr
    assert cv2.imread(str(first)).shape == (112, 112, 3) and (first.stat().st_mode & 0o777) == 0o600
    assert second.is_symlink() and cv2.imread(str(kept)).shape == (112, 112, 3)
    assert [p.name for p in (tree / "crops" / "a").iterdir() if p.name.endswith(".tmp")] == []


def test_a_video_frames_crops_are_named_after_the_frame(tmp_path):
    frame = cv2.imread(str(SAMPLE))
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5,
                             (frame.shape[1], frame.shape[0]))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    done = run("clip.avi", "--every", 2, "--crops", "crops", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "crops").glob("*.png"))
    assert names == ["clip.avi#frame=0_0.png", "clip.avi#frame=0_1.png",
                     "clip.avi#frame=2_0.png", "clip.avi#frame=2_1.png"]


@pytest.mark.parametrize("args, fragment", [
    (["a/x.png", "--crop-size", "64"], "give --crops DIR too"),
    (["a/x.png", "--crop-compression", "1"], "give --crops DIR too"),
    (["a/x.png", "--crops", "c", "--crop-compression", "10"], "0<=x<=9"),
    (["a/x.png", "--crops", "c", "--no-landmarks"], "drop --no-landmarks, or give --crop-style box"),
    (["a/x.png", "a/x.jpg", "--crops", "c"], "same name stem in one folder"),
    (["a/x.png", "--crops", "c", "--out-dir", "parts"], "--crops and --out-dir exclude each other"),
])
def test_crop_options_that_cannot_work_are_one_line_and_exit_2(tree, args, fragment):
    cv2.imwrite(str(tree / "a" / "x.jpg"), cv2.imread(str(SAMPLE)))
    done = run(*args, cwd=tree)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and fragment in done.stderr, done.stderr
    assert not (tree / "c").exists()


def test_a_resumed_document_keeps_its_crops(tree):
    whole = run("a/x.png", "b/x.png", "--crops", "crops", "-o", "whole.json", cwd=tree)
    assert whole.returncode == 0, whole.stderr
    # a run that finished the first image only: its journal, as a kill leaves it
    first = run("a/x.png", "--crops", "crops", "-o", "first.jsonl", cwd=tree)
    journal = tree / ".out.json.journal"
    journal.write_text((tree / "first.jsonl").read_text())
    (tree / "first.jsonl").unlink()
    resumed = run("a/x.png", "b/x.png", "--crops", "crops", "--resume", "-o", "out.json", cwd=tree)
    assert resumed.returncode == 0, resumed.stderr
    assert (tree / "out.json").read_bytes() == (tree / "whole.json").read_bytes()
