"""`mtcnn detect` through click's CliRunner, with the stand-in detector of
detect_support (its answers are known in advance). End-to-end runs with the
real detector, in real processes, are in test_cli_detect_process.py."""
import csv
import io
import json
import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mtcnn_cli.cli import main
from mtcnn_cli.io import images, inputs

from ..cli_support import one_line_error, usage_error
from ..detect_support import StandInDetector, expected_faces, make_image, stand_in  # noqa: F401


def detect(*args, input=None):
    result = CliRunner().invoke(main, ["detect", *map(str, args)], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


def f32(values):
    return [np.float32(float(v)) for v in values]


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """A small tree of images (faces: a 2, b 0, c 1, d 3), cwd at tmp_path."""
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "photos" / "a.png", 2)
    make_image(tmp_path / "photos" / "b.JPG", 0)
    make_image(tmp_path / "photos" / "sub" / "c.jpg", 1)
    make_image(tmp_path / "photos" / "sub" / "deeper" / "d.bmp", 3)
    (tmp_path / "photos" / "notes.txt").write_text("not an image, not taken from a folder")
    return ["photos/a.png", "photos/b.JPG", "photos/sub/c.jpg", "photos/sub/deeper/d.bmp"]


# --- the basic run ---------------------------------------------------------------------

def test_json_to_a_file(photos, stand_in):
    result = detect("photos", "-o", "out.json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    doc = json.loads(open("out.json").read())
    assert doc["detector"] == "mtcnn-cli" and doc["version"]
    assert doc["params"] == {"min_face": 60, "t1": 0.6, "t2": 0.7, "t3": 0.7}
    assert [im["path"] for im in doc["images"]] == photos
    assert [len(im["faces"]) for im in doc["images"]] == [2, 0, 1, 3]
    first = doc["images"][0]
    assert (first["width"], first["height"]) == (64, 48)
    for got, want in zip(first["faces"], expected_faces(2)):
        assert f32([got["x"], got["y"], got["width"], got["height"], got["confidence"]]) == \
            f32([want.x, want.y, want.width, want.height, want.confidence])
        assert f32(np.ravel(got["landmarks"])) == f32(np.ravel(want.landmarks))
    summary = result.stderr.splitlines()
    assert len(summary) == 2 and summary[1].startswith("mtcnn: 4 images, 6 faces, 0 failures, ")
    assert summary[0] == "mtcnn: skipped 1 file of unknown type in the folders searched (--ext adds extensions)"


def test_parameters_reach_the_detector_and_the_output(photos, stand_in, monkeypatch):
    seen = {}
    real_init = StandInDetector.__init__

    def init(self, models=None, min_face=60, t1=0.6, t2=0.7, t3=0.7):
        seen.update(min_face=min_face, t1=t1, t2=t2, t3=t3)
        real_init(self, models, min_face, t1, t2, t3)

    monkeypatch.setattr(StandInDetector, "__init__", init)
    result = detect("photos/a.png", "--min-face", 20, "--t1", 0.5, "--t2", "0.25", "--t3", 1, "--format", "json")
    assert result.exit_code == 0
    assert seen == {"min_face": 20, "t1": 0.5, "t2": 0.25, "t3": 1.0}
    assert json.loads(result.stdout)["params"] == seen


def test_one_default_format_whatever_stdout_is(photos, stand_in):
    """JSONL on a pipe, in a file and on a terminal alike."""
    from mtcnn_cli.run import plan as job

    piped = detect("photos")  # CliRunner's stdout is a pipe
    assert [r["path"] for r in jsonl(piped.stdout)] == photos
    with open("redirected", "w") as f:
        assert job.stream_kind(f) == "file"
    assert job.choose_format(None, None, False) == "jsonl"
    assert job.choose_format(None, "-", False) == "jsonl"
    assert job.choose_format("csv", None, False) == "csv"


@pytest.mark.parametrize("name, fmt", [("out.json", "json"), ("out.JSONL", "jsonl"),
                                       ("out.ndjson", "jsonl"), ("out.csv", "csv")])
def test_the_output_extension_chooses_the_format(photos, stand_in, name, fmt):
    """-o FILE's extension chooses the format, in any case."""
    assert detect("photos", "-o", name, "-q").exit_code == 0
    text = open(name).read()
    if fmt == "json":
        assert [im["path"] for im in json.loads(text)["images"]] == photos
    elif fmt == "jsonl":
        assert [r["path"] for r in jsonl(text)] == photos
    else:
        assert text.startswith("path,face,x,y,")


def test_a_jsonl_output_can_be_resumed(photos, stand_in):
    """-o y.jsonl writes JSONL, so --resume accepts it."""
    detect("photos/a.png", "-o", "y.jsonl")
    result = detect("photos", "--resume", "-o", "y.jsonl")
    assert result.exit_code == 0, result.stderr
    assert [r["path"] for r in jsonl(open("y.jsonl").read())] == photos


@pytest.mark.parametrize("args, fragment", [
    (["-o", "y.csv", "--format", "json"], "--format json contradicts -o y.csv"),
    (["-o", "y.jsonl", "--format", "csv"], "contradicts"),
    (["-o", "y.txt"], "-o y.txt: the extension names no format"),
    (["-o", "y"], "give --format"),
    (["--resume"], "--resume needs -o FILE"),
])
def test_output_extension_usage_errors(photos, stand_in, args, fragment):
    usage_error(detect("photos", *args), "detect", fragment)
    assert not [n for n in os.listdir() if n.startswith("y")]


def test_unknown_extension_with_format_and_special_files(photos, stand_in):
    assert detect("photos/a.png", "-o", "y.txt", "--format", "csv").exit_code == 0
    assert open("y.txt").read().startswith("path,face,")
    from mtcnn_cli.run import plan as job

    assert job.choose_format(None, os.devnull, False) == "jsonl"


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
@pytest.mark.parametrize("paths", [["photos"], ["photos/b.JPG"], ["empty"]])
def test_every_format_ends_with_a_newline(photos, stand_in, fmt, paths):
    """On stdout and in -o files, for many images, one, or none (jsonl then
    writes nothing at all)."""
    os.mkdir("empty")
    piped = detect(*paths, "--format", fmt, "-q")
    detect(*paths, "--format", fmt, "-o", "out")
    written = open("out", encoding="utf-8").read()
    assert written == piped.stdout
    if paths == ["empty"] and fmt == "jsonl":
        assert written == ""
    else:
        assert written.endswith("\n") and not written.endswith("\n\n"), repr(written[-20:])


def test_csv_output(photos, stand_in):
    result = detect("photos", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["path"] for r in rows] == [photos[0]] * 2 + [photos[1]] + [photos[2]] + [photos[3]] * 3
    assert [r["face"] for r in rows] == ["0", "1", "", "0", "0", "1", "2"]
    want = expected_faces(3)[2]
    assert f32([rows[-1][k] for k in ("x", "y", "width", "height", "confidence", "lx3", "ly3")]) == \
        f32([want.x, want.y, want.width, want.height, want.confidence, *want.landmarks[2]])
    assert all(r["error"] == "" for r in rows)


def test_no_landmarks(photos, stand_in):
    doc = jsonl(detect("photos/a.png", "--no-landmarks").stdout)
    assert doc[0]["faces"] and all("landmarks" not in f for f in doc[0]["faces"])
    header = detect("photos/a.png", "--no-landmarks", "--format", "csv").stdout.splitlines()[0]
    assert header == "path,face,x,y,width,height,confidence,error"


def test_order_as_given_and_repeats_processed_once(photos, stand_in):
    result = detect("photos/sub/c.jpg", "photos", "./photos/a.png", "photos/sub/c.jpg")
    assert [r["path"] for r in jsonl(result.stdout)] == ["photos/sub/c.jpg", "photos/a.png", "photos/b.JPG",
                                                         "photos/sub/deeper/d.bmp"]
    assert len(stand_in.calls) == 4


def test_list_on_stdin(photos, stand_in):
    listed = "photos/sub/c.jpg\nphotos/a.png\n\nphotos/sub/c.jpg\n"
    result = detect("-", "photos/b.JPG", input=listed)
    assert [r["path"] for r in jsonl(result.stdout)] == ["photos/sub/c.jpg", "photos/a.png", "photos/b.JPG"]


def test_nul_separated_list_with_odd_names(tmp_path, stand_in, monkeypatch):
    monkeypatch.chdir(tmp_path)
    odd = [b"new\nline.png", b"caf\xe9 \xff.png", b" spaced .png"]
    for name in odd:
        make_image(os.fsdecode(name), 1)
    result = detect("-0", "-", input=b"\0".join(odd) + b"\0")
    assert result.exit_code == 0, result.stderr
    assert [os.fsencode(r["path"]) for r in jsonl(result.stdout)] == odd
    assert all(len(r["faces"]) == 1 for r in jsonl(result.stdout))


def test_non_utf8_names_in_a_folder(tmp_path, stand_in, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image(os.fsdecode(b"dir/\xff\xfe.jpg"), 2)
    result = detect("dir", "--format", "csv", "--bboxdir", "boxes", "--annotate", "drawn")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes.splitlines()[1].startswith(b"dir/\xff\xfe.jpg,0,")  # the name's own bytes
    assert os.path.exists(b"boxes/dir/\xff\xfe.txt") and os.path.exists(b"drawn/dir/\xff\xfe.jpg")
    as_json = detect("dir", "--format", "json").stdout
    assert as_json.isascii() and "\\udcff\\udcfe.jpg" in as_json


def test_stdout_carries_only_data(photos, stand_in):
    open("broken.png", "wb").write(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    result = detect("-v", "photos", "broken.png", "missing.jpg")
    assert [r["path"] for r in jsonl(result.stdout)] == photos + ["broken.png", "missing.jpg"]
    assert "mtcnn: skipped missing.jpg: no such file" in result.stderr.splitlines()


# --- usage errors ----------------------------------------------------------------------

@pytest.mark.parametrize("args,fragment", [
    ([], "no PATH given"),
    (["x.jpg", "--min-face", "11"], "--min-face"),
    (["x.jpg", "--min-face", "sixty"], "--min-face"),
    (["x.jpg", "--t1", "1.5"], "--t1"),
    (["x.jpg", "--t2", "-0.1"], "--t2"),
    (["x.jpg", "--t3", "nan"], "--t3"),
    (["x.jpg", "--format", "xml"], "--format"),
    (["x.jpg", "--jobs", "-1"], "--jobs"),
    (["x.jpg", "--shard", "0/4"], "I counts from 1"),
    (["x.jpg", "--shard", "5/4"], "--shard"),
    (["x.jpg", "--shard", "two"], "I/N"),
    (["x.jpg", "--max-pixels", "0"], "--max-pixels"),
    (["x.jpg", "--no-such-option"], "--no-such-option"),
    (["x.jpg", "-q", "-v"], "exclude each other"),
    (["x.jpg", "--resume"], "--resume needs -o FILE"),
    (["x.jpg", "-0"], "give - as a PATH"),
    (["-", "-"], "only once"),
])
def test_usage_errors_are_one_line_and_exit_2(args, fragment, stand_in, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    usage_error(detect(*args, input=""), "detect", fragment)
    assert os.listdir(tmp_path) == []


def test_unusable_model_folder_is_one_line_exit_2(photos, stand_in, tmp_path):
    result = detect("photos", "--models", tmp_path / "nowhere", "-o", "out.json")
    one_line_error(result, "cannot load the models")
    assert not os.path.exists("out.json")


def test_models_from_the_environment(photos, stand_in, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(StandInDetector, "__init__", lambda self, models=None, **kw: seen.append(models))
    detect("photos/a.png", "--models", "mine")
    assert seen == ["mine"]  # the Detector itself falls back to $MTCNN_MODELS when given None
    seen.clear()
    detect("photos/a.png")
    assert seen == [None]


def test_version(stand_in):
    result = detect("--version")
    assert result.exit_code == 0 and "mtcnn, version " in result.stdout


def test_help_documents_exit_codes_and_formats():
    text = detect("--help").stdout
    for fragment in ("Exit status", "130", "whatever stdout is", "I counting", "--bboxdir"):
        assert fragment in text
    flat = " ".join(text.split())
    assert "1 the run went ahead" in flat and "output failed while being written" in flat
    assert "2 nothing was processed" in flat and "cannot be created (its folder missing)" in flat


# --- bad input -----------------------------------------------------------------------

def test_every_bad_input_is_skipped_with_a_reason(tmp_path, stand_in, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = make_image(tmp_path / "in" / "good.png", 1)
    jpeg = open(make_image(tmp_path / "tmp.jpg", 1), "rb").read()
    png = open(make_image(tmp_path / "tmp.png", 1), "rb").read()
    os.remove("tmp.jpg")
    os.remove("tmp.png")
    (tmp_path / "in" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "in" / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    (tmp_path / "in" / "text.jpg").write_text("hello")
    (tmp_path / "in" / "folder.png").mkdir()  # walked as a folder: it holds one image
    make_image(tmp_path / "in" / "folder.png" / "inner.png", 0)
    (tmp_path / "in" / "locked.png").write_bytes(png)
    make_image(tmp_path / "in" / "locked" / "hidden.png", 1)
    make_image(tmp_path / "in" / "deep16.png", 2, dtype=np.uint16)
    make_image(tmp_path / "in" / "alpha.png", 1, channels=4)
    make_image(tmp_path / "in" / "strip.png", 1, size=(1, 40))
    make_image(tmp_path / "in" / "tiny.png", 0, size=(5, 7))

    real_open, real_scandir = images._open_readonly, os.scandir
    monkeypatch.setattr(images, "_open_readonly", lambda p: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied")) if p.endswith("locked.png") else real_open(p))
    monkeypatch.setattr(inputs.os, "scandir", lambda p: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied")) if p.endswith("locked") else real_scandir(p))

    result = detect("in", "in/gone.jpg", "-o", "out.jsonl", "--format", "jsonl")
    assert result.exit_code == 1
    records = {r["path"]: r for r in jsonl(open("out.jsonl").read())}
    reasons = {p: r.get("error") for p, r in records.items()}
    assert reasons == {
        "in/alpha.png": None, "in/cut.jpg": "truncated JPEG data", "in/cut.png": "truncated PNG data",
        "in/deep16.png": None, "in/empty.png": "empty file", "in/folder.png/inner.png": None,
        "in/good.png": None, "in/locked": "permission denied", "in/locked.png": "permission denied",
        "in/strip.png": None, "in/text.jpg": "not an image (unknown format)", "in/tiny.png": None,
        "in/gone.jpg": "no such file"}
    assert [len(records[p]["faces"]) for p in ("in/deep16.png", "in/alpha.png", "in/strip.png", "in/tiny.png")] \
        == [2, 1, 1, 0]
    assert (records["in/strip.png"]["width"], records["in/strip.png"]["height"]) == (40, 1)
    skipped = [line for line in result.stderr.splitlines() if line.startswith("mtcnn: skipped ")]
    assert skipped == [f"mtcnn: skipped {p}: {reasons[p]}" for p in records if reasons[p]]
    assert "7 failures" in result.stderr.splitlines()[-1]
    assert records["in/good.png"]["faces"]


def test_too_large_images_are_skipped(photos, stand_in):
    result = detect("photos/a.png", "photos/b.JPG", "--max-pixels", 64 * 48 - 1)
    records = jsonl(result.stdout)
    assert result.exit_code == 1
    assert records[0]["error"].startswith("too large: 64x48 is 3072 pixels")
    assert (records[0]["width"], records[0]["height"]) == (64, 48)
    assert stand_in.calls == []
    assert detect("photos/a.png", "--max-pixels", 64 * 48).exit_code == 0


def test_a_crashing_detector_skips_the_image(photos, stand_in, monkeypatch):
    monkeypatch.setattr(StandInDetector, "detect", lambda self, image: 1 / 0)
    result = detect("photos/a.png")
    assert result.exit_code == 1
    assert jsonl(result.stdout)[0]["error"] == "detector failed: ZeroDivisionError: division by zero"


def test_an_empty_folder_is_named_with_what_was_looked_for(tmp_path, stand_in, monkeypatch):
    """Not an error, but the folder and the extensions are named."""
    monkeypatch.chdir(tmp_path)
    os.mkdir("empty")
    make_image(tmp_path / "full" / "a.png", 1)
    result = detect("empty", "full", "empty", "--format", "json")
    assert result.exit_code == 0
    assert [im["path"] for im in json.loads(result.stdout)["images"]] == ["full/a.png"]
    lines = result.stderr.splitlines()
    assert lines[0].startswith("mtcnn: no images in empty: looked in it and its subfolders for ")
    assert (".avi .avif .bmp .dib .flv .gif .hdr .jp2 .jpe .jpeg .jpg .m4v .mkv .mov .mp4 .mpeg .mpg .mts .pbm "
            ".pfm .pgm .pic .png .pnm .ppm .pxm .ras .sr .tif .tiff .ts .webm .webp .wmv files") in lines[0]
    assert len(lines) == 2 and lines[1].startswith("mtcnn: 1 image, ")  # the repeat: one message


def test_an_empty_shard_says_so(photos, stand_in):
    """An empty shard is normal in a job array; it says why it is empty."""
    result = detect("photos/a.png", "photos/b.JPG", "--shard", "5/8")
    assert result.exit_code == 0 and result.stdout == ""
    assert "mtcnn: shard 5/8 is empty: the list has 2 images for 8 shards" in result.stderr


def test_a_nul_separated_list_without_0_suggests_it(photos, stand_in):
    """`find -print0 | mtcnn detect -` is a usage error naming -0."""
    usage_error(detect("-", input=b"photos/a.png\0photos/b.JPG\0"), "detect",
                "holds NUL bytes", "give -0")


@pytest.fixture
def cluttered(tmp_path, monkeypatch):
    """Hidden files and folders, a mask, a subfolder, our own outputs."""
    monkeypatch.chdir(tmp_path)
    for name in ("a.png", "sub/b.png", "._a.png", ".thumbs/t.png", "masks/a_mask.png", "c_mask.png"):
        make_image(tmp_path / "data" / name, 1)
    return tmp_path


def paths_of(result):
    assert result.exit_code == 0, result.stderr
    return [r["path"] for r in jsonl(result.stdout)]


def test_hidden_files_and_folders_are_skipped_unless_named(cluttered, stand_in):
    assert paths_of(detect("data")) == ["data/a.png", "data/c_mask.png", "data/masks/a_mask.png",
                                        "data/sub/b.png"]
    assert paths_of(detect("data/.thumbs", "data/._a.png")) == ["data/.thumbs/t.png", "data/._a.png"]


def test_exclude_patterns(cluttered, stand_in):
    assert paths_of(detect("data", "--exclude", "*_mask.png")) == ["data/a.png", "data/sub/b.png"]
    assert paths_of(detect("data", "--exclude", "masks", "--exclude", "sub")) == \
        ["data/a.png", "data/c_mask.png"]
    assert paths_of(detect("data", "--exclude", "data/sub/*")) == \
        ["data/a.png", "data/c_mask.png", "data/masks/a_mask.png"]


def test_no_recursive_takes_only_the_named_folders_images(cluttered, stand_in):
    assert paths_of(detect("data", "--no-recursive")) == ["data/a.png", "data/c_mask.png"]


def test_the_runs_own_output_folders_are_never_inputs(cluttered, stand_in):
    """The second run of `mtcnn detect . --annotate out` takes the same images."""
    first = detect(".", "--annotate", "out", "--bboxdir", "out/boxes", "-o", "one.json")
    assert first.exit_code == 0, first.stderr
    assert os.path.exists("out/data/a.png")
    second = detect(".", "--annotate", "out", "--bboxdir", "out/boxes", "-o", "two.json")
    assert second.exit_code == 0, second.stderr
    assert [im["path"] for im in json.load(open("two.json"))["images"]] == \
        [im["path"] for im in json.load(open("one.json"))["images"]] == \
        ["./data/a.png", "./data/c_mask.png", "./data/masks/a_mask.png", "./data/sub/b.png"]
    usage_error(detect("out", "--annotate", "out"), "detect", "out is this run's --annotate folder")


# --- bbox files and annotated copies -------------------------------------------------------

def test_bboxdir_files_for_openface(photos, stand_in):
    """Named as --annotate names its copies: the paths as given, mirrored."""
    result = detect("photos", "--bboxdir", "boxes", "-o", "out.json")
    assert result.exit_code == 0
    found = sorted(os.path.relpath(os.path.join(d, f), "boxes") for d, _, fs in os.walk("boxes") for f in fs)
    assert found == ["photos/a.txt", "photos/b.txt", "photos/sub/c.txt", "photos/sub/deeper/d.txt"]
    assert open("boxes/photos/b.txt").read() == ""  # no face: an empty file, as OpenFace expects one per image
    lines = open("boxes/photos/sub/deeper/d.txt").read().splitlines()
    assert len(lines) == 3
    for line, face in zip(lines, expected_faces(3)):
        min_x, min_y, max_x, max_y = map(np.float32, line.split())
        assert (min_x, min_y) == (np.float32(face.x), np.float32(face.y))
        assert np.isclose(max_x - min_x, face.width) and np.isclose(max_y - min_y, face.height)


def test_bboxdir_keeps_one_stem_in_two_folders_apart(photos, stand_in):
    make_image("photos/sub/a.jpg", 1)
    result = detect("photos", "--bboxdir", "boxes", "-o", "out.json")
    assert result.exit_code == 0, result.stderr
    assert len(open("boxes/photos/a.txt").read().splitlines()) == 2
    assert len(open("boxes/photos/sub/a.txt").read().splitlines()) == 1
    plain = detect("photos/a.png", "--bboxdir", "flat", "-o", "one.json")  # a file in the folder named
    assert plain.exit_code == 0 and os.listdir("flat") == ["photos"]
    os.chdir("photos")
    assert detect("a.png", "--bboxdir", "../here").exit_code == 0  # a file of this folder: BOXES/a.txt
    assert os.listdir("../here") == ["a.txt"]


def test_bboxdir_refuses_two_images_of_one_folder_with_one_stem(photos, stand_in):
    make_image("photos/a.jpg", 1)
    result = detect("photos", "--bboxdir", "boxes", "-o", "out.json")
    usage_error(result, "detect", "same name stem in one folder")
    assert "photos/a.png" in result.stderr and "photos/a.jpg" in result.stderr
    assert not os.path.exists("out.json") and not os.path.exists("boxes")
    assert stand_in.calls == []


def test_bboxdir_never_overwrites_an_input(photos, stand_in):
    os.rename("photos/notes.txt", "photos/notes.txt.tmp")
    make_image("photos/notes.png", 1)
    os.rename("photos/notes.png", "photos/notes.txt")  # an image with a .txt name, given explicitly
    before = open("photos/notes.txt", "rb").read()
    result = detect("photos/notes.txt", "--bboxdir", ".")  # its box file would be ./photos/notes.txt
    usage_error(result, "detect", "--bboxdir would overwrite the input image photos/notes.txt")
    assert open("photos/notes.txt", "rb").read() == before


def test_annotate_mirrors_folders_and_keeps_sizes(photos, stand_in):
    result = detect("photos", "--annotate", "drawn", "-o", "out.json")
    assert result.exit_code == 0, result.stderr
    for path in photos:
        copy = cv2.imread(os.path.join("drawn", path))
        original = cv2.imread(path)
        assert copy is not None and copy.shape == original.shape
    a_copy, a_original = cv2.imread("drawn/photos/a.png"), cv2.imread("photos/a.png")
    face = expected_faces(1)[0]
    top_edge = (round(face.y), round(face.x + face.width / 2))
    assert not np.array_equal(a_copy[top_edge], a_original[top_edge])  # a box was drawn there


def test_annotate_places_dotdot_and_absolute_paths_inside(tmp_path, stand_in, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    make_image(tmp_path / "up.png", 1)
    absolute = make_image(tmp_path / "abs" / "x.png", 1)
    result = detect("../up.png", str(absolute), "--annotate", "drawn")
    assert result.exit_code == 0, result.stderr
    assert os.path.exists("drawn/__/up.png")
    assert os.path.exists(os.path.join("drawn", str(absolute).lstrip("/")))
    assert sorted(os.listdir(tmp_path)) == ["abs", "up.png", "work"]  # nothing written outside DIR


def test_annotate_root_shortens_deep_trees(tmp_path, stand_in, monkeypatch):
    """Absolute inputs mirrored relative to a common root."""
    monkeypatch.chdir(tmp_path)
    deep = make_image(tmp_path / "data" / "set" / "x.png", 1)
    other = make_image(tmp_path / "elsewhere" / "y.png", 1)
    result = detect(str(deep), "--annotate", "drawn", "--annotate-root", str(tmp_path / "data"))
    assert result.exit_code == 0, result.stderr
    assert [str(p.relative_to(tmp_path / "drawn")) for p in (tmp_path / "drawn").rglob("*.png")] == ["set/x.png"]
    usage_error(detect(str(deep), str(other), "--annotate", "drawn2", "--annotate-root", "data"),
                "detect", "--annotate-root data: the image", "y.png is outside it")
    usage_error(detect(str(deep), "--annotate-root", "data"), "detect", "give --annotate DIR too")
    assert not os.path.exists("drawn2")


def test_annotate_help_documents_the_colours():
    text = " ".join(detect("--help").stdout.split())
    assert "green box" in text and "eyes blue, nose yellow, mouth corners red" in text


def test_annotate_creates_nothing_through_a_link_leading_outside(photos, stand_in):
    os.makedirs("drawn")
    os.makedirs("elsewhere")
    os.symlink(os.path.abspath("elsewhere"), "drawn/photos")
    result = detect("photos/sub/deeper/d.bmp", "--annotate", "drawn", "-o", "out.json")
    assert result.exit_code == 1
    assert "symbolic link leads outside" in result.stderr
    assert os.listdir("elsewhere") == []


def test_annotate_refuses_to_overwrite_inputs(photos, stand_in):
    before = open("photos/a.png", "rb").read()
    result = detect("photos/a.png", "--annotate", ".")
    usage_error(result, "detect", "--annotate would overwrite the input image photos/a.png")
    assert open("photos/a.png", "rb").read() == before


def test_output_file_refuses_to_overwrite_an_input(photos, stand_in):
    before = open("photos/a.png", "rb").read()
    usage_error(detect("photos", "-o", "photos/a.png", "--format", "json"), "detect",
                "-o would overwrite the input image")
    assert open("photos/a.png", "rb").read() == before


@pytest.mark.parametrize("option, name", [("--bboxdir", "photos/a.txt"), ("--annotate", "photos/a.png")])
def test_output_file_refuses_to_be_a_side_output(photos, stand_in, option, name):
    usage_error(detect("photos/a.png", option, "side", "-o", f"side/{name}", "--format", "json"),
                "detect", "-o", option)
    usage_error(detect("photos/a.png", option, "side", "-o", f"./side/../side/{name}", "--format", "json"),
                "detect", option)
    assert not os.path.exists("side")


def test_output_in_a_missing_folder_is_one_line_exit_2(photos, stand_in):
    one_line_error(detect("photos", "-o", "no/such/folder/out.json"), "no/such/folder/out.json")


# --- shards, resume, interruption -------------------------------------------------------

def test_shards_cover_the_input_once_in_order(photos, stand_in):
    make_image("photos/e.png", 1)
    whole = detect("photos").stdout.splitlines()
    parts = [detect("photos", "--shard", f"{i}/3").stdout.splitlines() for i in (1, 2, 3)]
    assert [len(p) for p in parts] == [1, 2, 2]
    assert sum(parts, []) == whole


def test_resume_completes_a_torn_file(photos, stand_in):
    whole = detect("photos").stdout_bytes
    lines = whole.splitlines(keepends=True)
    open("out.jsonl", "wb").write(lines[0] + lines[1] + lines[2][:15])  # killed while writing line 3
    stand_in.calls.clear()
    result = detect("photos", "--resume", "-o", "out.jsonl")
    assert result.exit_code == 0, result.stderr
    assert open("out.jsonl", "rb").read() == whole
    assert len(stand_in.calls) == 2  # only the two images not yet recorded
    assert "dropped a torn last line" in result.stderr
    assert "(2 done before)" in result.stderr.splitlines()[-1]
    again = detect("photos", "--resume", "-o", "out.jsonl")
    assert again.exit_code == 0 and open("out.jsonl", "rb").read() == whole


def test_resume_of_a_missing_file_starts_it(photos, stand_in):
    assert detect("photos", "--resume", "-o", "new.jsonl").exit_code == 0
    assert [r["path"] for r in jsonl(open("new.jsonl").read())] == photos


def test_resume_retries_earlier_failures(photos, stand_in):
    first = detect("later.png", "photos/a.png", "--resume", "-o", "out.jsonl")
    assert first.exit_code == 1  # later.png does not exist yet
    assert [("error" in r) for r in jsonl(open("out.jsonl").read())] == [True, False]
    make_image("later.png", 1)
    stand_in.calls.clear()
    result = detect("later.png", "photos/a.png", "--resume", "-o", "out.jsonl")
    assert result.exit_code == 0, result.stderr
    assert len(stand_in.calls) == 1  # later.png only
    records = jsonl(open("out.jsonl").read())
    assert sorted(r["path"] for r in records) == ["later.png", "photos/a.png"]
    assert not any("error" in r for r in records)
    assert "retrying 1 image that failed before" in result.stderr
    summary = result.stderr.splitlines()[-1]
    assert summary.startswith("mtcnn: 1 image (1 done before, 1 retried), 1 face, 0 failures, ")


def test_resume_refuses_a_file_that_is_not_jsonl(photos, stand_in):
    detect("photos", "-o", "out.dat", "--format", "json")
    before = open("out.dat").read()
    one_line_error(detect("photos", "--resume", "-o", "out.dat"), "is not a JSONL image record")
    assert open("out.dat").read() == before


def test_resume_leaves_a_file_that_is_not_ours_untouched(photos, stand_in):
    open("notes.txt", "w").write("line one\nmy notes")
    one_line_error(detect("photos/a.png", "--resume", "-o", "notes.txt"), "notes.txt", "line 1")
    assert open("notes.txt").read() == "line one\nmy notes"


def test_resume_refuses_a_tail_that_cannot_be_a_torn_record(photos, stand_in):
    whole = detect("photos/a.png").stdout
    open("out.jsonl", "w").write(whole + "my notes")
    one_line_error(detect("photos/a.png", "--resume", "-o", "out.jsonl"), "out.jsonl", "line 2")
    assert open("out.jsonl").read() == whole + "my notes"


def interrupt_on(call: int):
    def detect(self, image):
        StandInDetector.calls.append(image.shape)
        if len(StandInDetector.calls) == call:
            raise KeyboardInterrupt  # what our SIGINT/SIGTERM handler raises
        return expected_faces(1)
    return detect


def finished_paths(fmt: str, text: str) -> list:
    """The images a JSON or CSV document holds, parsed as a reader would."""
    if fmt == "json":
        return [image["path"] for image in json.loads(text)["images"]]
    return list(dict.fromkeys(row["path"] for row in csv.DictReader(io.StringIO(text))))


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_an_interrupted_document_holds_every_finished_image_and_resume_completes_it(photos, stand_in,
                                                                                    monkeypatch, fmt):
    monkeypatch.setattr(StandInDetector, "detect", lambda self, image: expected_faces(1))
    whole = detect("photos", "--format", fmt, "-o", f"whole.{fmt}")
    assert whole.exit_code == 0
    open(f"out.{fmt}", "w").write("old")
    StandInDetector.calls.clear()
    monkeypatch.setattr(StandInDetector, "detect", interrupt_on(3))
    result = detect("photos", "-o", f"out.{fmt}")
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == "mtcnn: interrupted after 2 images"
    assert "Traceback" not in result.stderr
    assert finished_paths(fmt, open(f"out.{fmt}").read()) == photos[:2]  # a valid document
    assert sorted(os.listdir()) == [f".out.{fmt}.journal", f"out.{fmt}", "photos", f"whole.{fmt}"]
    monkeypatch.setattr(StandInDetector, "detect", lambda self, image: expected_faces(1))
    resumed = detect("photos", "--resume", "-o", f"out.{fmt}")
    assert resumed.exit_code == 0, resumed.stderr
    assert "(2 done before)" in resumed.stderr.splitlines()[-1]
    assert open(f"out.{fmt}", "rb").read() == open(f"whole.{fmt}", "rb").read()  # byte for byte
    assert sorted(os.listdir()) == [f"out.{fmt}", "photos", f"whole.{fmt}"]  # the journal is gone


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_document_whose_run_finished_is_not_resumed(photos, stand_in, fmt):
    assert detect("photos", "-o", f"out.{fmt}").exit_code == 0
    before = open(f"out.{fmt}").read()
    one_line_error(detect("photos", "--resume", "-o", f"out.{fmt}"), f"out.{fmt}", "no journal")
    assert open(f"out.{fmt}").read() == before


def test_a_run_stopped_before_any_image_leaves_the_old_document(photos, stand_in, monkeypatch):
    open("out.json", "w").write("old")
    monkeypatch.setattr(StandInDetector, "detect", interrupt_on(1))
    assert detect("photos", "-o", "out.json").exit_code == 130
    assert open("out.json").read() == "old"
    assert sorted(os.listdir()) == ["out.json", "photos"]


def test_interrupted_jsonl_keeps_completed_lines(photos, stand_in, monkeypatch):
    monkeypatch.setattr(StandInDetector, "detect", interrupt_on(3))
    result = detect("photos", "--format", "jsonl", "-o", "out.jsonl")
    assert result.exit_code == 130
    assert [r["path"] for r in jsonl(open("out.jsonl").read())] == photos[:2]
    assert sorted(os.listdir()) == ["out.jsonl", "photos"]


def test_interrupted_json_to_stdout_is_a_closed_document_of_the_finished_images(photos, stand_in,
                                                                               monkeypatch):
    monkeypatch.setattr(StandInDetector, "detect", interrupt_on(2))
    result = detect("photos", "--format", "json")
    assert result.exit_code == 130
    assert [image["path"] for image in json.loads(result.stdout)["images"]] == photos[:1]


def test_interrupted_annotation_leaves_no_temporary_files(photos, stand_in, monkeypatch):
    monkeypatch.setattr(StandInDetector, "detect", interrupt_on(3))
    detect("photos", "--annotate", "drawn", "--bboxdir", "boxes", "-o", "out.json")
    found = [os.path.join(d, f) for d, _, fs in os.walk(".") for f in fs if f.endswith(".tmp")]
    assert found == []
    assert sorted(os.listdir("boxes/photos")) == ["a.txt", "b.txt"]


def test_interrupted_before_the_models_load(photos, stand_in, monkeypatch):
    def refuse(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(StandInDetector, "__init__", refuse)
    result = detect("photos", "-o", "out.json")
    assert result.exit_code == 130 and not os.path.exists("out.json")


# --- messages -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_an_unexpected_error_is_one_line_and_leaves_no_temporary_file(photos, stand_in, monkeypatch, fmt):
    from mtcnn_cli.run import detect as job

    open("out.txt", "w").write("old")

    def broken(*args):
        raise ValueError("boom")

    monkeypatch.setattr(job, "write_side_outputs", broken)
    one_line_error(detect("photos", "-o", "out.txt", "--format", fmt), "ValueError: boom", status=1)
    assert sorted(os.listdir(".")) == ["out.txt", "photos"]
    if fmt == "json":
        assert open("out.txt").read() == "old"


def test_workers_that_cannot_start_stop_the_run(photos, stand_in, monkeypatch):
    from mtcnn_cli.run import batch

    def pool_outcomes(tasks, settings, processes):
        raise batch.WorkerStartError("a worker process could not start: OSError: no weights")
        yield

    monkeypatch.setattr(batch, "pool_outcomes", pool_outcomes)
    open("out.json", "w").write("old")
    result = detect("photos", "-j", 2, "-o", "out.json")
    one_line_error(result, "could not start: OSError: no weights", status=1)
    assert open("out.json").read() == "old" and sorted(os.listdir(".")) == ["out.json", "photos"]


def test_quiet_and_verbose(photos, stand_in):
    quiet = detect("-q", "photos", "missing.png")
    assert quiet.stderr.splitlines() == ["mtcnn: skipped missing.png: no such file"]
    verbose = detect("-v", "photos/a.png").stderr
    for fragment in ("imported numpy and OpenCV in", "imported the detector in",
                     "loaded the models (bundled weights) in", "photos/a.png: 2 faces in"):
        assert fragment in verbose


def test_progress_bar_on_a_terminal():
    from rich.console import Console

    from mtcnn_cli.io.records import Result
    from mtcnn_cli.run.report import Reporter

    screen = io.StringIO()
    reporter = Reporter(progress=True, console=Console(file=screen, force_terminal=True, width=100))
    reporter.start(4)
    for i in range(3):
        reporter.image(Result(f"{i}.png", 1, 1, expected_faces(i), None), 0.01)
    reporter.image(Result("bad.png", None, None, None, "no such file"), 0.01)
    reporter.stop()
    drawn = screen.getvalue()
    assert "4/4" in drawn and "3 faces" in drawn and "img/s" in drawn
    assert "1 failed" in drawn and "ETA" in drawn


@pytest.mark.parametrize("given, pixels", [("1e6", 10**6), ("10M", 10**7), ("2.5k", 2500), ("7", 7),
                                           ("1G", 10**9)])
def test_max_pixels_takes_exponents_and_suffixes(photos, stand_in, given, pixels):
    """--max-pixels 1e6 and 10M are accepted."""
    result = detect("photos/a.png", "--max-pixels", given)
    if pixels >= 64 * 48:
        assert result.exit_code == 0, result.stderr
    else:
        assert f"more than the limit of {pixels} (--max-pixels)" in result.stderr


@pytest.mark.parametrize("given", ["1.5", "ten", "-1M", "0", "1e-7", "5MP"])
def test_max_pixels_refuses_what_is_no_pixel_count(stand_in, given, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    usage_error(detect("x.jpg", "--max-pixels", given), "detect", "--max-pixels")


def test_thresholds_and_model_folders_read_alike_in_every_command():
    """--t1 and --models are shown the same way by detect and compare."""
    texts = {name: " ".join(CliRunner().invoke(main, [name, "--help"]).stdout.split())
             for name in ("detect", "compare")}
    for text in texts.values():
        assert "--t1 FLOAT" in text and "--models DIR" in text and "[0<=x<=1]" not in text


def test_a_bad_models_variable_is_named(photos, monkeypatch):
    """The message says the folder came from $MTCNN_MODELS."""
    monkeypatch.setenv("MTCNN_MODELS", "nowhere")
    one_line_error(detect("photos/a.png"), "$MTCNN_MODELS=nowhere", "no such model folder")


def test_paths_with_control_characters_stay_on_one_line(tmp_path, stand_in, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = detect("-0", "-", input=b"bad\nname.png\0")
    assert result.stderr.splitlines()[0] == "mtcnn: skipped bad\\x0aname.png: no such file"
