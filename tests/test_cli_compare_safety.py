"""Issue 11 for `mtcnn compare`: --report never overwrites what compare reads;
hostile REF/OURS files give one clean line, never a traceback."""
import json
import os

import pytest

from .cli_support import one_line_error
from .test_cli_compare import image, images_tree, ref_of, run, stand_in, write_json  # noqa: F401


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
