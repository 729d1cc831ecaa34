"""A folder search finds every extension cv2.imread documents and this OpenCV
decodes, --ext adds or restricts, and the summary counts what the search
skipped for its type. Real folders, real files, real `mtcnn` processes."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtcnn_cli.io.images import IMAGE_EXTENSIONS

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"
MTCNN = Path(sys.executable).parent / "mtcnn"
# OpenCV's imread documentation, less OpenEXR (OpenCV's wheels decode none: this one says "OpenEXR: NO")
DOCUMENTED = {".bmp", ".dib", ".gif", ".jpeg", ".jpg", ".jpe", ".jp2", ".png", ".webp", ".avif", ".pbm", ".pgm",
              ".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".tiff", ".tif", ".exr", ".hdr", ".pic"}
EXR_HEAD = b"\x76\x2f\x31\x01" + bytes(60)  # an OpenEXR file's first bytes


def run(*args, cwd):
    return subprocess.run([str(MTCNN), "detect", *map(str, args)], cwd=cwd, capture_output=True, timeout=300)


def records(done):
    return [json.loads(line) for line in done.stdout.splitlines()]


def lines(done):
    return done.stderr.decode().splitlines()


def write_as(path: Path, image: np.ndarray) -> None:
    """image written in the format of path's extension, as OpenCV writes it."""
    ext = path.suffix.lower()
    if ext == ".pxm":  # OpenCV reads .pxm (any portable map) but writes none under that name
        ok, data = cv2.imencode(".ppm", image)
    elif ext in (".pgm", ".pbm"):
        ok, data = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    elif ext in (".hdr", ".pic", ".pfm"):
        ok, data = cv2.imencode(ext, image.astype(np.float32) / 255)
    else:
        ok, data = cv2.imencode(ext, image)
    assert ok, ext
    path.write_bytes(data.tobytes())


def test_the_list_is_what_imread_documents_less_openexr():
    documented = set(re.findall(r"\\\*(\.[a-z0-9]+)", cv2.imread.__doc__ or ""))
    if documented:  # this OpenCV's own words
        assert documented == DOCUMENTED
    assert set(IMAGE_EXTENSIONS) == DOCUMENTED - {".exr"}
    assert "OpenEXR:                     NO" in cv2.getBuildInformation()


def test_a_folder_of_every_format_is_found_and_read(tmp_path):
    sample = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    folder = tmp_path / "all"
    folder.mkdir()
    for k, ext in enumerate(sorted(DOCUMENTED - {".exr"})):
        name = f"img{k:02d}" + (ext.upper() if k % 2 else ext)  # any case
        write_as(folder / name, sample)
    (folder / "notes.txt").write_text("not an image")
    (folder / "render.exr").write_bytes(EXR_HEAD)
    (folder / ".hidden.pgm").write_bytes(b"hidden: never looked at")
    done = run("all", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = records(done)
    assert sorted(Path(r["path"]).suffix.lower() for r in found) == sorted(DOCUMENTED - {".exr"})
    assert all("error" not in r and (r["width"], r["height"]) == (480, 360) for r in found), found
    faces = {Path(r["path"]).suffix.lower(): len(r["faces"]) for r in found}
    assert all(faces[ext] == 2 for ext in (".png", ".bmp", ".dib", ".ppm", ".pnm", ".pxm", ".tif", ".sr")), faces
    summary = lines(done)
    assert summary[1].startswith(f"mtcnn: {len(DOCUMENTED) - 1} images, ") and len(summary) == 2
    assert summary[0] == "mtcnn: skipped 2 files of unknown type in the folders searched (--ext adds extensions)"


@pytest.fixture
def mixed(tmp_path):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(SAMPLE, folder / "a.png")
    shutil.copy(SAMPLE, folder / "sub" / "b.raw")  # PNG bytes under another name: read by content
    cv2.imwrite(str(folder / "c.jpg"), cv2.imread(str(SAMPLE)))
    (folder / "d.exr").write_bytes(EXR_HEAD)
    (folder / "readme.md").write_text("# photos")
    return tmp_path


def found_in(done):
    return [r["path"] for r in records(done)]


def test_ext_adds_extensions(mixed):
    done = run("mixed", "--ext", ".raw", cwd=mixed)
    assert done.returncode == 0, done.stderr
    assert found_in(done) == ["mixed/a.png", "mixed/c.jpg", "mixed/sub/b.raw"]
    assert len(records(done)[2]["faces"]) == 2
    assert lines(done)[0] == "mtcnn: skipped 2 files of unknown type in the folders searched (--ext adds extensions)"
    both = run("mixed", "--ext", "RAW,.exr", cwd=mixed)  # a comma list, any case, dot or not
    assert both.returncode == 1
    assert found_in(both) == ["mixed/a.png", "mixed/c.jpg", "mixed/d.exr", "mixed/sub/b.raw"]
    assert "mtcnn: skipped mixed/d.exr: corrupt or unsupported OpenEXR data (OpenCV's own wheels decode no " \
           "OpenEXR)" in lines(both)
    assert run("mixed", "--ext", "raw", "--ext", "exr", cwd=mixed).stdout == both.stdout  # repeatable


def test_ext_with_an_equals_sign_takes_only_those(mixed):
    done = run("mixed", "--ext", "=jpg", cwd=mixed)
    assert done.returncode == 0, done.stderr
    assert found_in(done) == ["mixed/c.jpg"]
    assert lines(done)[0] == "mtcnn: skipped 4 files of unknown type in the folders searched (--ext adds extensions)"
    assert found_in(run("mixed", "--ext", "=jpg,png", cwd=mixed)) == ["mixed/a.png", "mixed/c.jpg"]
    assert found_in(run("mixed", "--ext", "=jpg", "--ext", "raw", cwd=mixed)) == ["mixed/c.jpg", "mixed/sub/b.raw"]
    nothing = run("mixed", "--ext", "=gif", cwd=mixed)
    assert nothing.returncode == 0
    assert lines(nothing)[0] == ("mtcnn: no images in mixed: looked in it and its subfolders for .gif files "
                                 "(any case), skipping hidden entries")


def test_a_named_file_is_taken_whatever_ext_says(mixed):
    done = run("mixed/sub/b.raw", "mixed/a.png", "--ext", "=jpg", cwd=mixed)
    assert done.returncode == 0 and found_in(done) == ["mixed/sub/b.raw", "mixed/a.png"]
    assert len(lines(done)) == 1  # nothing was searched, nothing skipped


@pytest.mark.parametrize("value", ["tar.gz", "", "=", "*.jpg", "a/b", "jpg,,png", " "])
def test_a_bad_ext_is_one_usage_line(mixed, value):
    done = run("mixed", "--ext", value, cwd=mixed)
    assert done.returncode == 2 and done.stdout == b""
    (line,) = lines(done)
    assert line.startswith("mtcnn detect: --ext ") and "is not one file extension" in line
    assert line.endswith("(see mtcnn detect --help)")


def test_the_count_leaves_out_what_was_skipped_on_purpose(mixed):
    (mixed / "mixed" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (mixed / "mixed" / "._a.png").write_bytes(b"resource fork")
    done = run("mixed", "--exclude", "readme.md", cwd=mixed)
    assert lines(done)[:-1] == ["mtcnn: skipped 2 files of unknown type in the folders searched (--ext adds "
                                "extensions)"]  # b.raw and d.exr: hidden and excluded files are not counted
    assert lines(done)[-1].startswith("mtcnn: 2 images, ")  # the totals stay the last line
    assert len(lines(run("mixed", "--exclude", "readme.md", "--exclude", "d.exr", "--exclude", "b.raw",
                         cwd=mixed))) == 1  # none left: no line
    assert lines(run("mixed", "-q", cwd=mixed)) == []  # -q: no summary, and this is part of it


def test_a_walked_format_that_keeps_no_colour_is_annotated_as_png(mixed):
    red = np.ascontiguousarray(cv2.imread(str(SAMPLE))[:, :, 2])  # in grey, the sample's red holds a face
    assert cv2.imwrite(str(mixed / "mixed" / "e.pgm"), red)
    done = run("mixed/e.pgm", "mixed/a.png", "--annotate", "drawn", cwd=mixed)
    assert done.returncode == 0, done.stderr
    assert len(records(done)[0]["faces"]) >= 1
    assert sorted(p.name for p in (mixed / "drawn" / "mixed").iterdir()) == ["a.png", "e.pgm.png"]
    drawn = cv2.imread(str(mixed / "drawn" / "mixed" / "e.pgm.png"))
    assert drawn.shape == (360, 480, 3) and not np.array_equal(drawn[:, :, 0], drawn[:, :, 1])  # colour drawn


def test_help_says_how(tmp_path):
    done = subprocess.run([str(MTCNN), "detect", "--help"], capture_output=True, timeout=60)
    text = " ".join(done.stdout.decode().split())
    assert "--ext EXTS" in text and "--ext =jpg,png takes only those" in text and "--ext .pgm" in text
    assert ".pgm .ppm .pxm .pnm .pfm .sr .ras" in text
