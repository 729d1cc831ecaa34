"""`mtcnn compare` from the command line: exit codes, stdout/stderr, --report.

Tests marked `parity` run the real detector over the C++ reference sets (76 images
each, 10-30 s per set); the others use a stand-in detector or no detector at all."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from mtcnn_cli.cli import main
from mtcnn_cli.run import batch

from ..cli_support import one_line_error, usage_error

SETS = ["mf60", "mf20", "mf40_loose", "mf100_strict"]


def run(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


def fails(result):
    """Exit 1 with the FAIL verdict (not an exception, which CliRunner also reports as 1)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1 and result.stdout.startswith("FAIL: "), (result.stdout, result.stderr)
    return True


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def mf60(reference):
    return json.loads((reference / "mf60.json").read_text())


def first_image_with(data, n):
    return next(i for i, image in enumerate(data["images"]) if len(image.get("faces", [])) >= n)


# --------------------------------------------------------------------------- help


def test_help_documents_exit_codes_and_outputs():
    result = CliRunner().invoke(main, ["compare", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for fragment in ("Exit codes:", "0 every image has the same faces", "1 some image differs",
                     "report FILE could not be written", "2 nothing was compared", "--tolerance PX", "--report FILE", "stderr", "stdout"):
        assert fragment in text


# --------------------------------------------------------------------------- REF against a copy (no detector)


def test_reference_against_itself_passes(reference, tmp_path):
    report = tmp_path / "report.json"
    result = run("--cpp", reference / "mf60.json", reference / "mf60.json", "--report", report)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "PASS: 76 images match (76 identical to the bit, tolerance 0.01 px, 0.0001 confidence)"]
    assert "identical to the bit" in result.stderr and "faces paired" in result.stderr
    data = json.loads(report.read_text())
    assert data["summary"]["images_identical"] == 76 and data["summary"]["faces_missing"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_tampered_face_removed(mf60, reference, tmp_path):
    k = first_image_with(mf60, 2)
    removed = mf60["images"][k]["faces"].pop(1)
    ours = write_json(tmp_path / "ours.json", mf60)
    report = tmp_path / "r.json"
    result = run("--cpp", reference / "mf60.json", ours, "--report", report)
    assert fails(result) and result.stdout.startswith("FAIL: 1 of 76 images")
    n = len(mf60["images"][k]["faces"])
    assert f"{n + 1}/{n}" in result.stderr and "1/0" in result.stderr  # faces REF/ours, missing/extra
    image = json.loads(report.read_text())["images"][k]
    assert image["status"] == "count differs"
    assert [m["x"] for m in image["missing"]] == [removed["x"]] and image["extra"] == []


def test_tampered_box_shifted_half_a_pixel(mf60, reference, tmp_path):
    k = first_image_with(mf60, 1)
    mf60["images"][k]["faces"][0]["y"] += 0.5
    report = tmp_path / "r.json"
    result = run("--cpp", reference / "mf60.json", write_json(tmp_path / "o.json", mf60), "--report", report)
    assert fails(result)
    data = json.loads(report.read_text())
    pair = data["images"][k]["pairs"][0]
    assert pair["dy"] == pytest.approx(0.5, abs=1e-4) and pair["dx"] == 0
    assert data["summary"]["differences"]["y"]["max_abs"] == pytest.approx(0.5, abs=1e-4)
    assert data["summary"]["images_same_count"] == 76
    # the same shift passes with a looser pass mark
    assert run("--cpp", reference / "mf60.json", tmp_path / "o.json", "--tolerance", 0.6).exit_code == 0


def test_tampered_confidence(mf60, reference, tmp_path):
    k = first_image_with(mf60, 1)
    mf60["images"][k]["faces"][0]["confidence"] -= 1e-3
    ours = write_json(tmp_path / "o.json", mf60)
    assert fails(run("--cpp", reference / "mf60.json", ours))
    assert run("--cpp", reference / "mf60.json", ours, "--conf-tolerance", 2e-3).exit_code == 0


def test_difference_below_tolerance_passes_but_is_not_identical(mf60, reference, tmp_path):
    k = first_image_with(mf60, 1)
    mf60["images"][k]["faces"][0]["width"] += 0.004
    result = run("--cpp", reference / "mf60.json", write_json(tmp_path / "o.json", mf60))
    assert result.exit_code == 0
    assert result.stdout.startswith("PASS: 76 images match (75 identical to the bit")


def test_faces_in_another_order_still_pass(mf60, reference, tmp_path):
    for image in mf60["images"]:
        image.get("faces", []).reverse()
    mf60["images"].reverse()
    result = run("--cpp", reference / "mf60.json", write_json(tmp_path / "o.json", mf60))
    assert result.exit_code == 0 and "76 identical to the bit" in result.stdout


def test_ours_as_jsonl_and_csv(mf60, reference, tmp_path):
    lines = [json.dumps(image) for image in mf60["images"]]
    (tmp_path / "o.jsonl").write_text("\n".join(lines) + "\n")
    assert run("--cpp", reference / "mf60.json", tmp_path / "o.jsonl").exit_code == 0
    rows = ["path,face,x,y,width,height,confidence,error"]
    for image in mf60["images"]:
        rows += [f'{image["path"]},{i},{f["x"]},{f["y"]},{f["width"]},{f["height"]},{f["confidence"]},'
                 for i, f in enumerate(image["faces"])] or [f'{image["path"]},,,,,,,']
    (tmp_path / "o.csv").write_text("\n".join(rows) + "\n")
    result = run("--cpp", reference / "mf60.json", tmp_path / "o.csv")
    assert result.exit_code == 0 and "76 identical" in result.stdout


def test_images_only_in_ours_are_listed_not_failures(mf60, reference, tmp_path):
    """OURS covering more images than REF passes; --count-only-ours fails it."""
    ref = dict(mf60, images=mf60["images"][:5])
    ref_path = write_json(tmp_path / "ref.json", ref)
    ours = write_json(tmp_path / "o.json", mf60)
    result = run("--cpp", ref_path, ours, "--report", tmp_path / "r.json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.startswith("PASS: 5 images match (5 identical to the bit")
    assert "71 images only in OURS, not compared" in result.stdout
    assert f"only in OURS: {mf60['images'][5]['path']}" in result.stderr
    assert len(json.loads((tmp_path / "r.json").read_text())["only_in_ours"]) == 71
    counted = run("--cpp", ref_path, ours, "--count-only-ours")
    assert fails(counted) and counted.stdout.startswith("FAIL: 71 of 76 images differ")


def test_different_parameters_are_a_usage_error(mf60, reference, tmp_path):
    """Both files record their parameters; a mismatch names both values."""
    ours = write_json(tmp_path / "o.json", dict(mf60, params=dict(mf60["params"], min_face=20, t3=0.8)))
    usage_error(run("--cpp", reference / "mf60.json", ours), "compare",
                "min_face 60 in REF, 20 in OURS", "t3 0.7 in REF, 0.8 in OURS", "--ignore-params")
    assert run("--cpp", reference / "mf60.json", ours, "--ignore-params").exit_code == 0
    unrecorded = tmp_path / "o.jsonl"  # JSONL records no parameters: nothing to check
    unrecorded.write_text("".join(json.dumps(image) + "\n" for image in mf60["images"]))
    assert run("--cpp", reference / "mf60.json", unrecorded).exit_code == 0


def test_bbox_names_with_dots_pair(tmp_path):
    """OpenFace's own sample names hold dots."""
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "openface__frame_det_000000_112x112_0.7.txt").write_text("10 20 40 60\n")
    (boxes / "a.b.c.txt").write_text("")
    ours = write_json(tmp_path / "o.json", {"images": [
        image("corpus/a.b.c.png"),
        image("corpus/openface__frame_det_000000_112x112_0.7.bmp", (10, 20, 30, 40, 0.99))]})
    result = run("--cpp", boxes, ours)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.startswith("PASS: 2 images match (2 identical to the bit")


def test_image_missing_from_ours(mf60, reference, tmp_path):
    gone = mf60["images"].pop(3)["path"]
    result = run("--cpp", reference / "mf60.json", write_json(tmp_path / "o.json", mf60))
    assert fails(result)
    assert gone in result.stderr and "not in OURS" in result.stderr


def test_images_the_cpp_failed_on_are_listed_not_counted(mf60, tmp_path):
    ref = dict(mf60, images=mf60["images"][:5] + [{"path": "corpus/tiny.png", "width": 30, "height": 30,
                                                   "error": "std::length_error"}])
    ours = dict(mf60, images=mf60["images"][:5])
    result = run("--cpp", write_json(tmp_path / "ref.json", ref), write_json(tmp_path / "o.json", ours))
    assert result.exit_code == 0, result.stderr
    assert "C++ failed on corpus/tiny.png: std::length_error" in result.stderr

    assert result.stdout.startswith("PASS: 5 images match")


# --------------------------------------------------------------------------- bad input: exit 2


CPP = {"detector": "OpenFace 2.2 FaceDetectorMTCNN (C++)", "params": {"min_face": 60, "t1": 0.6, "t2": 0.7, "t3": 0.7},
       "images": [{"path": "a.jpg", "width": 100, "height": 80,
                   "faces": [{"x": 10.5, "y": 12.25, "width": 60, "height": 58, "confidence": 0.99}]}]}


@pytest.mark.parametrize("text, problem", [
    ('{"images": [', "not valid JSON"),
    ('{"pictures": []}', 'wrong schema: no "images" list'),
    ('{"images": [{"path": "a.jpg", "faces": [{"x": 1, "y": 2, "width": 3}]}]}', 'has no "height"'),
    ('{"images": [{"path": "a.jpg", "faces": [{"x": NaN, "y": 2, "width": 3, "height": 4}]}]}', "x is nan"),
    ('{"images": [{"path": "a.jpg", "faces": [{"x": 1, "y": 2, "width": 3, "height": -4}]}]}',
     "height is negative"),
    ('{"images": [{"path": "a.jpg", "width": -1, "height": 80, "faces": []}]}', "width is negative"),
    ("just some text\n", "unknown format"),
])
def test_malformed_ref(tmp_path, text, problem):
    ref = tmp_path / "ref.json"
    ref.write_text(text)
    line = one_line_error(run("--cpp", ref), str(ref), problem)
    assert "Traceback" not in line


def test_unreadable_ref(tmp_path):
    one_line_error(run("--cpp", tmp_path / "nothing.json"), "nothing.json", "no such file")
    one_line_error(run("--cpp", tmp_path), str(tmp_path), "no .txt files")


def test_forced_format_that_does_not_fit(tmp_path):
    ref = write_json(tmp_path / "ref.json", CPP)
    one_line_error(run("--cpp", ref, "--cpp-format", "csv", ref), "wrong CSV header")


def test_malformed_ours(tmp_path):
    ref = write_json(tmp_path / "ref.json", CPP)
    (tmp_path / "o.json").write_text('{"images": [{"path": "a.jpg", "faces": [{"x": "1"}]}]}')
    one_line_error(run("--cpp", ref, tmp_path / "o.json"), "o.json", "x is a string")


def test_click_usage_errors_are_one_line(tmp_path):
    usage_error(run(), "compare", "Missing option '--cpp'")
    usage_error(run("--cpp", tmp_path, "--tolerance", "-1"), "compare", "--tolerance")
    usage_error(run("--cpp", tmp_path, "--cpp-format", "xml"), "compare", "--cpp-format")


def test_run_options_need_no_ours(tmp_path):
    ref = write_json(tmp_path / "ref.json", CPP)
    usage_error(run("--cpp", ref, ref, "--min-face", 30), "compare", "--min-face", "no OURS given")


def test_report_that_cannot_be_written_exits_1(tmp_path, monkeypatch):
    """The comparison ran; only its output failed: 1, as in detect (2 = nothing was compared)."""
    from mtcnn_cli.compare import report, sets

    ref = write_json(tmp_path / "ref.json", CPP)

    def full(path, data):
        raise sets.CompareError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(report, "write_report", full)
    one_line_error(run("--cpp", ref, ref, "--report", tmp_path / "r.json"), "r.json", status=1)


@pytest.mark.parametrize("where, fragment", [("no/r.json", "No such file or directory"),
                                             ("ref.json", "would overwrite")])
def test_a_bad_report_path_is_found_before_the_run(tmp_path, stand_in, where, fragment):
    """Exit 2 before a single image is detected, as detect does for -o."""
    images_tree(tmp_path, ["a.jpg"])
    (tmp_path / "data" / "folder").mkdir()
    ref = write_json(tmp_path / "data" / "ref.json", ref_of([image("imgs/a.jpg", (10, 10, 30, 30, 0.9))]))
    before = ref.read_text()
    fake = stand_in({"a.jpg": [(10, 10, 30, 30, 0.9)]})
    one_line_error(run("--cpp", ref, "--report", tmp_path / "data" / where), "--report", fragment)
    assert fake.calls == [] and ref.read_text() == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["folder", "imgs", "ref.json"]
    usage_error(run("--cpp", ref, "--report", tmp_path / "data" / "folder"), "compare", "is a directory")
    assert fake.calls == []


# --------------------------------------------------------------------------- own run, stand-in detector


class StandIn:
    """Replaces batch.detect_images: answers from a table of faces by file name,
    and records how it was called."""

    def __init__(self, faces_by_name, errors=None):
        self.faces_by_name, self.errors, self.calls = faces_by_name, errors or {}, []

    def __call__(self, paths, **options):
        paths = list(paths)
        self.calls.append(dict(options, paths=paths))
        return iter([self.result(p) for p in paths])

    def result(self, path):
        name = path.rsplit("/", 1)[-1]
        if name in self.errors:
            return batch.Result(path, None, None, None, self.errors[name])
        faces = [SimpleNamespace(x=x, y=y, width=w, height=h, confidence=c, landmarks=())
                 for x, y, w, h, c in self.faces_by_name[name]]
        return batch.Result(path, 100, 80, faces, None)


@pytest.fixture
def stand_in(monkeypatch):
    def install(faces_by_name, errors=None):
        fake = StandIn(faces_by_name, errors)
        monkeypatch.setattr(batch, "detect_images", fake)
        return fake
    return install


def images_tree(tmp_path, names):
    (tmp_path / "data" / "imgs").mkdir(parents=True)
    for name in names:
        (tmp_path / "data" / "imgs" / name).write_bytes(b"not read by the stand-in")


def ref_of(images, params=None):
    return {"detector": "x", "params": params or {"min_face": 40, "t1": 0.5, "t2": 0.6, "t3": 0.65},
            "images": images}


def image(path, *faces):
    return {"path": path, "width": 100, "height": 80,
            "faces": [dict(zip(("x", "y", "width", "height", "confidence"), f)) for f in faces]}


def test_own_run_resolves_images_and_uses_ref_params(tmp_path, stand_in):
    images_tree(tmp_path, ["a.jpg", "b.jpg"])
    ref = write_json(tmp_path / "data" / "sets" / "ref.json",
                     ref_of([image("imgs/a.jpg", (10.5, 12.25, 60, 58, 0.99)), image("imgs/b.jpg")]))
    fake = stand_in({"a.jpg": [(10.5, 12.25, 60, 58, 0.99)], "b.jpg": []})
    result = run("--cpp", ref)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("PASS: 2 images match (2 identical")
    (call,) = fake.calls
    assert call["paths"] == [str(tmp_path / "data" / "imgs" / n) for n in ("a.jpg", "b.jpg")]
    assert (call["min_face"], call["t1"], call["t2"], call["t3"]) == (40, 0.5, 0.6, 0.65)
    assert call["jobs"] == 1 and call["models"] is None


def test_own_run_overrides_root_models_jobs(tmp_path, stand_in):
    images_tree(tmp_path, ["a.jpg"])
    ref = write_json(tmp_path / "elsewhere" / "ref.json", ref_of([image("a.jpg")]))
    fake = stand_in({"a.jpg": []})
    result = run("--cpp", ref, "--root", tmp_path / "data" / "imgs", "--min-face", 20, "--t3", 0.9,
                 "--models", tmp_path / "m", "--jobs", 2)
    assert result.exit_code == 0, result.stderr
    (call,) = fake.calls
    assert call["paths"] == [str(tmp_path / "data" / "imgs" / "a.jpg")]
    assert (call["min_face"], call["t1"], call["t3"], call["jobs"]) == (20, 0.5, 0.9, 2)
    assert str(call["models"]) == str(tmp_path / "m")


def test_own_run_unreadable_and_missing_images_are_per_image(tmp_path, stand_in):
    images_tree(tmp_path, ["a.jpg", "bad.jpg"])
    ref = write_json(tmp_path / "data" / "ref.json", ref_of([
        image("imgs/a.jpg", (1, 2, 30, 30, 0.9)), image("imgs/bad.jpg"), image("imgs/gone.jpg"),
        {"path": "imgs/small.jpg", "error": "too small"}]))
    stand_in({"a.jpg": [(1, 2, 30, 30, 0.9)]}, errors={"bad.jpg": "cannot decode the image"})
    report = tmp_path / "r.json"
    result = run("--cpp", ref, "--report", report)
    assert fails(result) and result.stdout.startswith("FAIL: 2 of 3 images")
    assert "cannot decode the image" in result.stderr and "image not found" in result.stderr
    images = {i["path"]: i for i in json.loads(report.read_text())["images"]}
    assert images["imgs/a.jpg"]["status"] == "identical"
    assert images["imgs/bad.jpg"]["problem"] == "ours: cannot decode the image"
    assert images["imgs/gone.jpg"]["problem"].startswith("ours: image not found")
    assert "imgs/small.jpg" not in images


def test_own_run_on_a_bbox_folder_needs_images(tmp_path, stand_in):
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "a.txt").write_text("10 20 70 80\n")
    one_line_error(run("--cpp", boxes), "--images")
    one_line_error(run("--cpp", boxes, "--images", tmp_path / "nowhere"), "nowhere: not a folder")
    images_tree(tmp_path, ["a.png", "notes.txt"])
    fake = stand_in({"a.png": [(10, 20, 60, 60, 0.97)]})
    result = run("--cpp", boxes, "--images", tmp_path / "data" / "imgs")
    assert result.exit_code == 0, result.stderr
    assert fake.calls[0]["paths"] == [str(tmp_path / "data" / "imgs" / "a.png")]
    assert (fake.calls[0]["min_face"], fake.calls[0]["t1"]) == (60, 0.6)  # a bbox folder has no params


def test_bad_model_folder_is_a_usage_error(tmp_path, monkeypatch):
    from mtcnn_cli.detector.datfile import ModelError

    def refuses(paths, **options):
        raise ModelError(f"{options['models']}: no MTCNN_detector.txt")

    monkeypatch.setattr(batch, "detect_images", refuses)
    images_tree(tmp_path, ["a.jpg"])
    ref = write_json(tmp_path / "data" / "ref.json", ref_of([image("imgs/a.jpg")]))
    one_line_error(run("--cpp", ref, "--models", tmp_path), "no MTCNN_detector.txt")


# --------------------------------------------------------------------------- the real detector


@pytest.mark.parity
@pytest.mark.parametrize("set_name", SETS)
def test_reference_set_passes_with_our_detector(reference, openface_models, set_name, tmp_path):
    report = tmp_path / "r.json"
    result = run("--cpp", reference / f"{set_name}.json", "--models", openface_models, "--report", report)
    summary = json.loads(report.read_text())["summary"] if report.exists() else result.stderr
    assert result.exit_code == 0, (result.stdout, summary)
    assert result.stdout.startswith("PASS: 76 images match")


@pytest.mark.parity
def test_real_run_on_a_tampered_subset(shared, mf60, tmp_path):
    """Three images of mf60 with the reference edited: one face removed (ours finds it:
    extra), one moved by 0.5 px; plus an image file that cannot be decoded. With the
    default models, as `mtcnn compare --cpp REF` runs."""
    subset = mf60["images"][:3]
    k = first_image_with({"images": subset}, 1)
    subset[k]["faces"][0]["x"] += 0.5
    j = next(i for i in range(3) if i != k and subset[i]["faces"])
    subset[j]["faces"].pop()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    subset.append({"path": str(broken), "width": 10, "height": 10, "faces": []})
    ref = write_json(tmp_path / "ref.json", dict(mf60, images=subset))
    report = tmp_path / "r.json"
    result = run("--cpp", ref, "--root", shared, "--report", report)
    assert fails(result)
    images = json.loads(report.read_text())["images"]
    assert images[k]["status"] == "beyond tolerance"
    assert images[k]["pairs"][0]["dx"] == pytest.approx(-0.5, abs=1e-4)
    assert images[j]["status"] == "count differs" and len(images[j]["extra"]) == 1
    assert images[3]["problem"].startswith("ours: ")


def test_bbox_folder_round_trip(reference, corpus, openface_models, tmp_path):
    """`detect --bboxdir`, then compare that folder with our own run on its images, with
    detect's JSON, and with an edited copy."""
    names = [p.split("/")[-1] for p in (i["path"] for i in json.loads((reference / "mf60.json").read_text())["images"][:3])]
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    detected = CliRunner().invoke(main, ["detect", "--models", str(openface_models), "--bboxdir", str(boxes),
                                         "-o", str(tmp_path / "d.json"), "-q", *(str(corpus / n) for n in names)])
    assert detected.exit_code == 0, detected.stderr
    written = sorted(boxes.rglob("*.txt"))  # mirrored: the corpus's own path inside boxes/
    assert [p.relative_to(boxes) for p in written] == \
        sorted(Path(str(corpus / n).lstrip("/")).with_suffix(".txt") for n in names)

    result = run("--cpp", boxes, "--images", corpus, "--models", openface_models)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("PASS: 3 images match")
    assert run("--cpp", boxes, tmp_path / "d.json").exit_code == 0

    edited = next(p for p in written if p.read_text().strip())
    first, *rest = edited.read_text().splitlines()
    x, y, right, bottom = map(float, first.split())
    edited.write_text("\n".join([f"{x} {y} {right + 0.5} {bottom}", *rest]) + "\n")
    result = run("--cpp", boxes, tmp_path / "d.json", "--report", tmp_path / "r.json")
    assert fails(result)
    statuses = {i["path"]: i["status"] for i in json.loads((tmp_path / "r.json").read_text())["images"]}
    assert statuses.pop(edited.relative_to(boxes).with_suffix("").as_posix()) == "beyond tolerance"
    assert set(statuses.values()) <= {"identical", "within tolerance"}


# ------------------------------------------------- found by trying the merged tool

def test_parameters_compare_as_the_float32_the_cpp_keeps(mf60, tmp_path):
    # the reference stores t1 as 0.600000024 (float32); ours writes 0.6: the same parameter
    ref = write_json(tmp_path / "ref.json", {**mf60, "params": {"min_face": 60, "t1": 0.6000000238418579,
                                                                 "t2": 0.699999988079071, "t3": 0.7}})
    ours = write_json(tmp_path / "ours.json", {**mf60, "params": {"min_face": 60, "t1": 0.6, "t2": 0.7, "t3": 0.7}})
    result = run("--cpp", ref, ours)
    assert result.exit_code == 0, result.stderr


def test_jsonl_records_tell_their_parameters(mf60, tmp_path):
    image = mf60["images"][0]
    ours = tmp_path / "ours.jsonl"
    ours.write_text(json.dumps({**image, "run": {"version": "0", "params": {"min_face": 40, "t1": 0.6, "t2": 0.7,
                                                                         "t3": 0.7}, "models_sha256": None}}) + "\n")
    ref = write_json(tmp_path / "ref.json", {**mf60, "images": [image]})
    usage_error(run("--cpp", ref, ours), "compare", "min_face 60 in REF, 40 in OURS")
    assert run("--cpp", ref, ours, "--ignore-params").exit_code == 0


def test_nothing_comparable_is_a_verdict_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ref = write_json(tmp_path / "ref.json", {"params": {"min_face": 60, "t1": 0.6, "t2": 0.7, "t3": 0.7},
                                            "images": [{"path": "nowhere.jpg", "width": 9, "height": 9,
                                                        "faces": []}]})
    assert fails(run("--cpp", ref))


def test_two_runs_of_ours_name_the_side_that_failed_by_its_file(tmp_path):
    ref = write_json(tmp_path / "first.json", {"detector": "mtcnn-cli", "images": [
        image("a.jpg", (10, 20, 30, 40, 0.99)), {"path": "b.jpg", "width": 9, "height": 9, "error": "too small"}]})
    ours = write_json(tmp_path / "second.json", {"detector": "mtcnn-cli", "images": [
        image("a.jpg", (10, 20, 30, 40, 0.99))]})
    result = run("--cpp", ref, ours)
    assert "REF (first.json) failed on b.jpg: too small" in result.stderr
    assert "C++" not in result.stderr
