"""For `mtcnn compare`: --report never overwrites what compare reads;
hostile REF/OURS files give one clean line, never a traceback."""
import json
import os

import pytest

from ..cli_support import one_line_error
from .test_compare_command import image, images_tree, ref_of, run, stand_in, write_json  # noqa: F401

pytestmark = pytest.mark.process


def _ref(tmp_path):
    return write_json(tmp_path / "ref.json", ref_of([image("a.jpg", (10, 12, 60, 58, 0.99))]))


def test_report_over_ref_is_refused(tmp_path):
    ref = _ref(tmp_path)
    before = ref.read_bytes()
    one_line_error(run("--cpp", ref, ref, "--report", ref), "--report", "ref.json", "compare reads")
    assert ref.read_bytes() == before
    link = tmp_path / "link.json"
    link.symlink_to(ref)
    one_line_error(run("--cpp", ref, ref, "--report", link), "would overwrite")
    assert ref.read_bytes() == before


def test_report_over_ours_is_refused(tmp_path):
    ref = _ref(tmp_path)
    ours = write_json(tmp_path / "ours.json", json.loads(ref.read_text()))
    before = ours.read_bytes()
    one_line_error(run("--cpp", ref, ours, "--report", ours), "ours.json", "would overwrite")
    assert ours.read_bytes() == before


def test_report_over_a_bbox_file_is_refused(tmp_path):
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "a.txt").write_text("10 20 70 80\n")
    ours = write_json(tmp_path / "ours.json", {"images": [image("a.jpg", (10, 20, 60, 60))]})
    one_line_error(run("--cpp", boxes, ours, "--report", boxes / "a.txt"), "a.txt", "would overwrite")
    assert (boxes / "a.txt").read_text() == "10 20 70 80\n"


def test_report_over_an_image_is_refused(tmp_path, stand_in):
    images_tree(tmp_path, ["a.jpg"])
    ref = write_json(tmp_path / "data" / "ref.json", ref_of([image("imgs/a.jpg")]))
    fake = stand_in({"a.jpg": []})
    target = tmp_path / "data" / "imgs" / "a.jpg"
    one_line_error(run("--cpp", ref, "--report", target), "a.jpg", "would overwrite")
    assert target.read_bytes() == b"not read by the stand-in"
    assert fake.calls == []


def test_report_over_a_model_file_is_refused(tmp_path, stand_in):
    images_tree(tmp_path, ["a.jpg"])
    ref = write_json(tmp_path / "data" / "ref.json", ref_of([image("imgs/a.jpg")]))
    stand_in({"a.jpg": []})
    models = tmp_path / "m"
    models.mkdir()
    (models / "MTCNN_detector.txt").write_text("PNet P.dat\nRNet R.dat\nONet O.dat\n")
    for name in "PRO":
        (models / f"{name}.dat").write_bytes(b"w")
    one_line_error(run("--cpp", ref, "--models", models, "--report", models / "O.dat"), "O.dat",
                   "would overwrite")
    assert (models / "O.dat").read_bytes() == b"w"


# --- item 10: hostile REF/OURS files are one line, exit 2 -----------------------------------

GOOD_IMAGE = '{"path": "a.jpg", "width": 100, "height": 80, "faces": [{"x": 1, "y": 2, "width": 3, "height": 4, "confidence": 0.9}]}'
DEEP = "[" * 100_000 + "]" * 100_000


def hostile_files():
    """(name, content) of files that once gave tracebacks."""
    huge, digits = str(10 ** 400), "9" * 5000
    yield "huge-int-box.json", '{"images": [' + GOOD_IMAGE.replace('"x": 1', f'"x": {huge}') + "]}"
    yield "digits-box.json", '{"images": [' + GOOD_IMAGE.replace('"x": 1', f'"x": {digits}') + "]}"
    yield "huge-int-params.json", '{"params": {"min_face": ' + huge + '}, "images": [' + GOOD_IMAGE + "]}"
    yield "digits-params.json", '{"params": {"t1": ' + digits + '}, "images": [' + GOOD_IMAGE + "]}"
    yield "huge-width.json", '{"images": [' + GOOD_IMAGE.replace('"width": 100', f'"width": {huge}') + "]}"
    yield "deep-top.json", DEEP
    yield "deep-images.json", '{"images": ' + DEEP + "}"
    yield "deep-face.json", '{"images": [' + GOOD_IMAGE.replace('"x": 1', f'"x": {DEEP}') + "]}"
    yield "deep-line.jsonl", GOOD_IMAGE + "\n" + '{"path": "b.jpg", "faces": ' + DEEP + "}\n"
    yield "digits-line.jsonl", GOOD_IMAGE + "\n" + GOOD_IMAGE.replace('"a.jpg"', '"b.jpg"').replace(
        '"x": 1', f'"x": {digits}') + "\n"
    yield "wide-field.csv", "path,face,x,y,width,height,confidence,error\n" + '"' + "a" * 200_000 + '",,,,,,,\n'
    yield "nul.json", "{\0}"


@pytest.mark.parametrize("name,content", list(hostile_files()), ids=[n for n, _ in hostile_files()])
@pytest.mark.parametrize("side", ["REF", "OURS"])
def test_hostile_detection_files_are_one_line(tmp_path, name, content, side):
    bad = tmp_path / name
    bad.write_text(content)
    good = write_json(tmp_path / "good.json", {"images": [json.loads(GOOD_IMAGE)]})
    args = ["--cpp", bad, good] if side == "REF" else ["--cpp", good, bad]
    one_line_error(run(*args), name)


def test_a_path_component_too_long_is_one_line(tmp_path):
    one_line_error(run("--cpp", tmp_path / ("x" * 300)), "x" * 300, "too long")


def test_a_device_as_ref_is_one_line_at_once(tmp_path):
    one_line_error(run("--cpp", "/dev/zero"), "/dev/zero", "not a text file")


def test_a_device_as_ref_under_a_memory_limit(tmp_path):
    """A real process with 1.5 GB of address space: no MemoryError traceback."""
    import subprocess
    import sys

    from .test_detect_process import ROOT
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1500 << 20, 1500 << 20)); "
            "from mtcnn_cli.cli import main; main(['compare', '--cpp', '/dev/zero'], prog_name='mtcnn')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    one_line_error(done, "/dev/zero")


# --- item 1 for --report: special targets written in place, links followed -------------------

def test_report_to_a_device_or_through_a_link(tmp_path):
    import stat

    ref = _ref(tmp_path)
    (tmp_path / "reports").mkdir()
    link = tmp_path / "report.json"
    link.symlink_to(tmp_path / "reports" / "r.json")
    assert run("--cpp", ref, ref, "--report", link).exit_code == 0
    assert link.is_symlink() and json.loads((tmp_path / "reports" / "r.json").read_text())["images"]
    device = tmp_path / "fakedev"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    assert run("--cpp", ref, ref, "--report", device).exit_code == 0
    assert stat.S_ISCHR(os.lstat(device).st_mode)
