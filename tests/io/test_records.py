"""Output formats and atomic writing."""
import csv
import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mtcnn_cli.base import atomic
from mtcnn_cli.io import records as output
from mtcnn_cli.base.atomic import AtomicFile, LineAppender, OutputError
from mtcnn_cli.io.records import Result

from ..detect_support import expected_faces

ROOT = Path(__file__).resolve().parents[2]


@settings(max_examples=500, deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_floats_read_back_as_the_same_float32(value):
    text = output.format_float(value)
    assert np.float32(json.loads(text)) == np.float32(value)


def test_floats_are_short():
    assert output.format_float(np.float32(90.14)) == "90.14"
    assert output.format_float(np.float32(0.999997)) == "0.999997"
    assert output.format_float(12.0) == "12.0"
    # 9 significant digits would print 90.1399994
    assert len(output.format_float(np.float32(90.14))) < len(f"{np.float32(90.14):.9g}")


def test_json_string_escapes_undecodable_bytes_reversibly():
    name = os.fsdecode(b"dir/caf\xe9 \xff.jpg")
    literal = output.json_string(name)
    assert literal.isascii()
    assert os.fsencode(json.loads(literal)) == b"dir/caf\xe9 \xff.jpg"
    assert output.json_string("café.jpg") == '"café.jpg"'


def f32(values) -> list:
    """Numbers (or their text) as float32 values, the way to compare them."""
    return [np.float32(float(v)) for v in values]


def _result(faces=2, error=None, path="a/b.jpg"):
    if error:
        return Result(path, None, None, None, error)
    return Result(path, 64, 48, expected_faces(faces), None)


def test_json_document_parses_back():
    fmt = output.make_format("json", {"min_face": 60, "t1": 0.6, "t2": 0.7, "t3": 0.7})
    text = fmt.start() + fmt.record(_result(2)) + fmt.record(_result(error="no such file", path="x.png")) + fmt.end()
    doc = json.loads(text)
    assert doc["detector"] == "mtcnn-cli" and doc["params"] == {"min_face": 60, "t1": 0.6, "t2": 0.7, "t3": 0.7}
    first, second = doc["images"]
    assert (first["path"], first["width"], first["height"]) == ("a/b.jpg", 64, 48)
    want = expected_faces(2)
    for got, face in zip(first["faces"], want):
        assert f32([got[k] for k in ("x", "y", "width", "height", "confidence")]) == \
               f32([face.x, face.y, face.width, face.height, face.confidence])
        assert f32(np.ravel(got["landmarks"])) == f32(np.ravel(face.landmarks))
    assert second == {"path": "x.png", "width": None, "height": None, "error": "no such file"}
    assert "faces" not in second


def test_empty_json_document():
    fmt = output.make_format("json", {})
    assert json.loads(fmt.start() + fmt.end())["images"] == []


def test_jsonl_without_landmarks():
    fmt = output.make_format("jsonl", {}, landmarks=False)
    line = fmt.record(_result(1))
    assert line.endswith("\n") and line.count("\n") == 1
    assert "landmarks" not in json.loads(line)["faces"][0]


def test_csv_rows_one_per_face_and_one_per_faceless_image():
    fmt = output.make_format("csv", {})
    text = fmt.start() + fmt.record(_result(2)) + fmt.record(_result(0, path="none.png")) + \
        fmt.record(_result(error="truncated JPEG data", path="cut,name.jpg"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["path", "face", "x", "y", "width", "height", "confidence",
                             "lx1", "ly1", "lx2", "ly2", "lx3", "ly3", "lx4", "ly4", "lx5", "ly5", "error"]
    assert [r["face"] for r in rows] == ["0", "1", "", ""]
    face = expected_faces(2)[1]
    assert f32([rows[1]["x"], rows[1]["confidence"]]) == f32([face.x, face.confidence])
    assert f32([rows[1]["lx5"], rows[1]["ly5"]]) == f32(face.landmarks[4])
    assert rows[2]["path"] == "none.png" and rows[2]["x"] == "" and rows[2]["error"] == ""
    assert rows[3]["path"] == "cut,name.jpg" and rows[3]["error"] == "truncated JPEG data"


def test_csv_header_without_landmarks():
    assert output.csv_header(False) == ["path", "face", "x", "y", "width", "height", "confidence", "error"]


def test_bbox_text_is_what_openface_reads():
    faces = expected_faces(2)
    lines = output.bbox_text(faces).splitlines()
    assert len(lines) == 2
    for line, face in zip(lines, faces):
        min_x, min_y, max_x, max_y = (np.float32(v) for v in line.split())
        assert (min_x, min_y) == (np.float32(face.x), np.float32(face.y))
        assert max_x == np.float32(face.x) + np.float32(face.width)
        assert max_y == np.float32(face.y) + np.float32(face.height)
    assert output.bbox_text([]) == ""


# --- atomic writing -------------------------------------------------------------------

def test_atomic_file_commit_and_discard(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with AtomicFile(target, "w", encoding="utf-8") as f:
            f.write("new, half")
            raise RuntimeError("stop")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out.json"]  # no temporary file left
    with AtomicFile(target, "w", encoding="utf-8") as f:
        f.write("new")
        assert target.read_text() == "old"  # nothing visible before the rename
    assert target.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_atomic_write_keeps_permissions_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "report.txt"
    target.write_text("x")
    target.chmod(0o640)
    atomic.write_text(target, "y")
    assert target.read_text() == "y" and (target.stat().st_mode & 0o777) == 0o640
    fresh = tmp_path / "fresh.txt"
    atomic.write_bytes(fresh, b"z")
    umask = os.umask(0)
    os.umask(umask)
    assert (fresh.stat().st_mode & 0o777) == 0o666 & ~umask


def test_atomic_file_in_a_missing_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="missing"):
        AtomicFile(tmp_path / "missing" / "x.json")


def test_cut_torn_tail(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"path": "a"}\n{"path": "b"}\n{"pa')
    assert atomic.cut_torn_tail(path) == 4
    assert path.read_bytes() == b'{"path": "a"}\n{"path": "b"}\n'
    assert atomic.cut_torn_tail(path) == 0
    path.write_bytes(b'{"no newline at all')
    assert atomic.cut_torn_tail(path) == 19 and path.read_bytes() == b""
    assert atomic.cut_torn_tail(tmp_path / "absent") == 0


def test_cut_torn_tail_across_read_blocks(tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"x\n" + b"y" * 200_000)
    assert atomic.cut_torn_tail(path) == 200_000 and path.read_bytes() == b"x\n"


def test_line_appender(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"1\n")
    appender = LineAppender(path)
    appender.append(b"2\n")
    appender.append(b"3\n")
    appender.close()
    assert path.read_bytes() == b"1\n2\n3\n"


# --- targets that are not regular files -----------------------------

def test_atomic_write_to_a_character_device_writes_in_place(tmp_path):
    device = tmp_path / "fakedev"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null
    except PermissionError:
        pytest.skip("mknod needs root")
    atomic.write_text(device, "swallowed")
    assert stat.S_ISCHR(os.lstat(device).st_mode)  # still the device, not a regular file
    assert sorted(os.listdir(tmp_path)) == ["fakedev"]


def test_atomic_write_to_a_fifo_feeds_its_reader(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    atomic.write_bytes(fifo, b"every byte\n")
    reader.join(10)
    assert got == [b"every byte\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["pipe"]


def test_atomic_write_through_a_symlink_replaces_the_file_it_names(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic.write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "real" / "fresh.json")
    atomic.write_text(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "real" / "fresh.json").read_text() == "made"
    assert sorted(os.listdir(tmp_path / "real")) == ["fresh.json", "out.json"]


def test_atomic_write_to_dev_stdout_reaches_stdout(tmp_path):
    code = ("from mtcnn_cli.base import atomic; atomic.write_text('/dev/stdout', 'to stdout\\n')")
    for stdout in (subprocess.PIPE, "file"):
        if stdout == "file":
            out = tmp_path / "redirected.txt"
            with open(out, "wb") as f:
                subprocess.run([sys.executable, "-c", code], stdout=f, check=True, cwd=ROOT)
            assert out.read_text() == "to stdout\n"
            assert sorted(os.listdir(tmp_path)) == ["redirected.txt"]
        else:
            done = subprocess.run([sys.executable, "-c", code], stdout=stdout, check=True, cwd=ROOT)
            assert done.stdout == b"to stdout\n"


def test_atomic_file_names_the_target_in_a_full_device_error():
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(OutputError, match="/dev/full"):
        atomic.write_bytes("/dev/full", b"x" * 100_000)
