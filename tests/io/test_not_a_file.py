"""What is not a file gets one line naming it and what to do: a URL (never
fetched: download it first), a shell pattern that matched nothing, a Windows
path on POSIX. Real processes of the installed `mtcnn`, and the library's
reader, whose ImageError carries the path."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtcnn_cli import ImageError, read_image

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"
MTCNN = Path(sys.executable).parent / "mtcnn"

CASES = [
    ("https://example.com/photos/a.jpg", "URLs are not read: download the file first"),
    ("http://example.com/clip.mp4", "URLs are not read: download the file first"),  # never given to a video decoder
    ("s3://bucket/photos/b.png", "URLs are not read: download the file first"),
    ("photos/*.JPG", "no file matches the pattern photos/*.JPG (the shell passed it through unexpanded)"),
    ("shot_[0-9].png", "no file matches the pattern shot_[0-9].png (the shell passed it through unexpanded)"),
    ("C:\\Users\\me\\face.jpg", "a Windows path, which is not a path on this system"),
    ("D:/photos/face.jpg", "a Windows path, which is not a path on this system"),
]


def run(*args, cwd, input=None):
    return subprocess.run([str(MTCNN), "detect", *map(str, args)], cwd=cwd, capture_output=True, input=input,
                          timeout=300)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "photos").mkdir()
    shutil.copy(SAMPLE, tmp_path / "photos" / "a.png")
    return tmp_path


def test_each_is_one_line_naming_it_and_the_batch_goes_on(folder):
    done = run("photos/a.png", *(path for path, _ in CASES), "missing.jpg", cwd=folder)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.decode().splitlines()
    assert "Traceback" not in done.stderr.decode()
    skipped = [line for line in lines if line.startswith("mtcnn: skipped ")]
    assert len(skipped) == len(CASES) + 1
    for line, (path, reason) in zip(skipped, CASES):
        assert line.startswith(f"mtcnn: skipped {path}: {reason}"), line
    assert skipped[-1] == "mtcnn: skipped missing.jpg: no such file"  # a plain missing file says what it said
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["path"] for r in records] == ["photos/a.png", *(p for p, _ in CASES), "missing.jpg"]
    assert len(records[0]["faces"]) == 2
    assert all(r["error"].startswith(reason) for r, (_, reason) in zip(records[1:], CASES))


def test_the_windows_message_says_where_such_a_file_is_found(folder):
    done = run("C:\\Users\\me\\face.jpg", cwd=folder)
    (line,) = done.stderr.decode().splitlines()[:1]
    assert "give the file's path as this system names it" in line and "/mnt/c/" in line


def test_in_a_list_on_stdin_too(folder):
    done = run("-", cwd=folder, input=b"photos/a.png\nhttps://example.com/x.jpg\n")
    assert done.returncode == 1
    assert "mtcnn: skipped https://example.com/x.jpg: URLs are not read: download the file first" \
        in done.stderr.decode().splitlines()


def test_a_file_whose_name_only_looks_so_is_read(folder):
    """An existing file named like a pattern (or like http:) is a file."""
    odd = folder / "photos" / "shot[1]*.png"
    shutil.copy(SAMPLE, odd)
    (folder / "http:").mkdir()
    shutil.copy(SAMPLE, folder / "http:" / "x.png")
    done = run("photos/shot[1]*.png", "http://x.png", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert [len(json.loads(line)["faces"]) for line in done.stdout.splitlines()] == [2, 2]


def test_the_library_says_the_same_and_the_error_carries_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path, reason in CASES:
        with pytest.raises(ImageError) as caught:
            read_image(path)
        assert caught.value.path == path and caught.value.reason.startswith(reason)
        assert str(caught.value) == f"{path}: {caught.value.reason}"
    with pytest.raises(ImageError) as caught:
        read_image(tmp_path / "missing.jpg")
    assert caught.value.path == tmp_path / "missing.jpg" and caught.value.reason == "no such file"
    assert str(caught.value) == f"{tmp_path / 'missing.jpg'}: no such file"


def test_an_undecodable_name_in_the_message_is_printable(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with pytest.raises(ImageError) as caught:
        read_image(raw)
    assert caught.value.path == raw
    assert str(caught.value).endswith("caf\\xe9.jpg: no such file")
