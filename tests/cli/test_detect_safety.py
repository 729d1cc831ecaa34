"""Outputs never destroy anything, a second run on one output is
refused, a killed JSONL run keeps what it finished. Through CliRunner with the
stand-in detector, and in real processes with the real one where a kill is
the point."""
import json
import os
import signal
import stat
import subprocess
import threading
import time
import uuid

import pytest

from mtcnn_cli.base.atomic import OutputLock

from ..cli_support import one_line_error, usage_error
from ..detect_support import StandInDetector, expected_faces, make_image, stand_in  # noqa: F401
from .test_detect_command import detect, jsonl, photos  # noqa: F401
from .test_detect_process import _start, batch_folder, records, run  # noqa: F401

pytestmark = pytest.mark.process


# --- item 1: what -o names is written, never replaced when it is not a regular file --------

def test_output_to_a_character_device_stays_a_device(photos, stand_in):
    try:
        os.mknod("fakedev", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    for fmt in ("json", "jsonl", "csv"):
        result = detect("photos", "--format", fmt, "-o", "fakedev")
        assert result.exit_code == 0, result.stderr
        assert stat.S_ISCHR(os.lstat("fakedev").st_mode)
    assert sorted(os.listdir()) == ["fakedev", "photos"]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_output_to_a_fifo_reaches_its_reader(photos, stand_in, fmt):
    os.mkfifo("pipe")
    got = []
    reader = threading.Thread(target=lambda: got.append(open("pipe", "rb").read()), daemon=True)
    reader.start()
    result = detect("photos", "--format", fmt, "-o", "pipe")
    reader.join(20)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(os.lstat("pipe").st_mode)
    text = got[0].decode()
    paths = [r["path"] for r in jsonl(text)] if fmt == "jsonl" else \
        [i["path"] for i in json.loads(text)["images"]]
    assert len(paths) == 4


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_output_through_a_symlink_writes_the_file_it_names(photos, stand_in, fmt):
    os.mkdir("results")
    open("results/out", "w").write("old")
    os.symlink("results/out", "link")
    result = detect("photos", "--format", fmt, "-o", "link")
    assert result.exit_code == 0, result.stderr
    assert os.path.islink("link")
    assert open("results/out").read() != "old" and "photos/a.png" in open("results/out").read()
    assert sorted(os.listdir("results")) == ["out"]


# --- item 3: one run per output ------------------------------------------------------------

@pytest.mark.parametrize("args", [["--format", "jsonl"], ["--resume"], ["--format", "json"],
                                  ["--format", "csv"]])
def test_an_output_another_run_holds_is_refused(photos, stand_in, args):
    theirs = "" if "--resume" in args else "theirs\n"
    open("out", "w").write(theirs)
    os.symlink("out", "link")
    held = OutputLock("out")
    try:
        for name in ("out", "link"):
            result = detect("photos", *args, "-o", name)
            line = one_line_error(result, name, "another run")
            assert line.startswith(f"mtcnn: -o {name}: ")
        assert stand_in.calls == []
        assert open("out").read() == theirs
    finally:
        held.release()
    assert detect("photos", *args, "-o", "out").exit_code == 0  # released: free again
    OutputLock("out").release()  # and released again by the run


def test_a_refused_run_leaves_no_file_where_there_was_none(photos, stand_in):
    held = OutputLock("new.jsonl")  # creates it, empty
    try:
        one_line_error(detect("photos", "--resume", "-o", "new.jsonl"), "another run")
    finally:
        held.abandon()
    assert not os.path.exists("new.jsonl")


def test_output_lock_follows_renames_and_links(tmp_path):
    out = tmp_path / "out.json"
    out.write_text("x")
    first = OutputLock(out)
    fresh = tmp_path / "fresh"
    fresh.write_text("y")
    os.replace(fresh, out)  # the path now names another file: that one is free
    second = OutputLock(out)
    assert second.fd >= 0
    with pytest.raises(Exception, match="another run"):
        OutputLock(out)
    first.release()
    second.release()


def test_two_resumed_runs_at_once_give_each_image_once(batch_folder, tmp_path):
    """Real processes: the second run starts while the first holds the output."""
    out = tmp_path / "out.jsonl"
    first = _start([batch_folder, "--resume", "-o", out, "-v"], tmp_path, None)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.02)
    second = run(batch_folder, "--resume", "-o", out, cwd=tmp_path)
    first.communicate(timeout=300)
    if first.returncode is not None and second.returncode == 2:
        assert b"another run" in second.stderr
    paths = [r["path"] for r in records(out)]
    assert len(paths) == len(set(paths)) == 13


# --- item 4: JSONL goes to -o line by line; a killed run keeps its records ------------------

def test_jsonl_records_are_in_the_output_while_the_run_goes_on(photos, stand_in, monkeypatch):
    seen = []

    def detect_and_look(self, image):
        StandInDetector.calls.append(image.shape)
        if len(StandInDetector.calls) == 3:
            seen.append(open("out.jsonl").read())
            seen.append(sorted(os.listdir()))
        return expected_faces(1)

    monkeypatch.setattr(StandInDetector, "detect", detect_and_look)
    assert detect("photos", "--format", "jsonl", "-o", "out.jsonl").exit_code == 0
    assert [r["path"] for r in jsonl(seen[0])] == photos[:2]
    assert seen[1] == ["out.jsonl", "photos"]  # no temporary file beside it


def test_a_plain_jsonl_run_replaces_an_older_file(photos, stand_in):
    open("out.jsonl", "w").write("an older run's records\n" * 100)
    assert detect("photos", "--format", "jsonl", "-o", "out.jsonl").exit_code == 0
    assert [r["path"] for r in jsonl(open("out.jsonl").read())] == photos


def test_resume_adopts_the_temporary_file_of_a_killed_run(photos, stand_in):
    whole = detect("photos", "--format", "jsonl").stdout
    lines = whole.splitlines(keepends=True)
    open(".out.jsonl.k1ll3d_x.tmp", "w").write(lines[0] + lines[1])  # what an older version left
    open(".out.jsonl.0ld3r_xx.tmp", "w").write(lines[0])
    stand_in.calls.clear()
    result = detect("photos", "--resume", "-o", "out.jsonl")
    assert result.exit_code == 0, result.stderr
    assert open("out.jsonl").read() == whole
    assert len(stand_in.calls) == 2
    assert sorted(os.listdir()) == ["out.jsonl", "photos"]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_stale_temporary_files_beside_an_output_are_removed(photos, stand_in, fmt):
    open(".out.abcdefgh.tmp", "w").write("left by a kill")
    open(".other.abcdefgh.tmp", "w").write("not this output's")
    assert detect("photos", "--format", fmt, "-o", "out").exit_code == 0
    assert sorted(os.listdir()) == [".other.abcdefgh.tmp", "out", "photos"]


def test_a_killed_jsonl_run_keeps_its_records_and_resume_finishes_it(batch_folder, tmp_path):
    reference = tmp_path / "reference.jsonl"
    assert run(batch_folder, "--format", "jsonl", "-o", reference, cwd=tmp_path).returncode == 1
    out = tmp_path / "out.jsonl"
    marker = uuid.uuid4().hex
    process = _start([batch_folder, "--format", "jsonl", "-o", out], tmp_path, marker)
    deadline = time.monotonic() + 120
    while len(records(out) if out.exists() and out.read_bytes().endswith(b"\n") else []) < 2 \
            and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    kept = records(out)
    assert len(kept) >= 2 and kept == records(reference)[:len(kept)]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    finished = run(batch_folder, "--resume", "-o", out, cwd=tmp_path)
    assert finished.returncode == 1  # broken.jpg
    assert f"({len(kept)} done before" in finished.stderr.decode()
    assert records(out) == records(reference)


# --- item 2: no output is ever one of the run's inputs -----------------------------------

def _model_folder(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "MTCNN_detector.txt").write_text("PNet PNet.dat\nRNet RNet.dat\nONet ONet.dat\n")
    for name in ("PNet", "RNet", "ONet"):
        (folder / f"{name}.dat").write_bytes(b"weights of " + name.encode())
    return folder


@pytest.mark.parametrize("option", ["-o", "--bboxdir"])
def test_an_output_over_a_model_file_is_refused(photos, stand_in, tmp_path, option):
    folder = _model_folder(tmp_path)
    target = ["-o", folder / "ONet.dat", "--format", "json"] if option == "-o" else ["--bboxdir", folder]
    if option == "--bboxdir":
        (folder / "photos").mkdir()
        (folder / "photos" / "a.txt").symlink_to(folder / "ONet.dat")  # photos/a.png's box file
    result = detect("photos", "--models", folder, *target)
    line = result.stderr.strip()
    assert result.exit_code == 2 and "would overwrite the model file" in line and "ONet.dat" in line, line
    assert (folder / "ONet.dat").read_bytes() == b"weights of ONet"
    assert stand_in.calls == []


def test_an_output_over_a_model_file_from_the_environment_is_refused(photos, stand_in, tmp_path,
                                                                       monkeypatch):
    folder = _model_folder(tmp_path)
    monkeypatch.setenv("MTCNN_MODELS", str(folder))
    result = detect("photos", "-o", folder / "MTCNN_detector.txt", "--format", "json")
    assert result.exit_code == 2 and "would overwrite the model file" in result.stderr
    assert (folder / "MTCNN_detector.txt").read_text().startswith("PNet PNet.dat")


def test_an_output_over_the_list_read_from_stdin_is_refused(photos, tmp_path):
    """A real process: stdin is the list file itself."""
    (tmp_path / "list.txt").write_text("photos/a.png\nphotos/b.JPG\n")
    with open(tmp_path / "list.txt", "rb") as listing:
        done = subprocess.run(command_line("-", "-o", "list.txt", "--format", "json"), stdin=listing, cwd=tmp_path, env=process_environment(),
                              capture_output=True, timeout=300)
    usage_error(done, "detect", "-o would overwrite the list read from stdin (as list.txt)")
    assert (tmp_path / "list.txt").read_text() == "photos/a.png\nphotos/b.JPG\n"


def command_line(*args):
    from .test_detect_process import command
    return command(*args)


def process_environment():
    from .test_detect_process import environment
    return environment()


# --- item 5: --resume checks what it finds ---------------------------------------------------

def test_one_image_under_three_spellings_is_one_image(photos, stand_in, tmp_path):
    absolute = str(tmp_path / "photos" / "a.png")
    result = detect("photos/a.png", "./photos/a.png", absolute, "photos/sub/../a.png")
    assert result.exit_code == 0 and len(jsonl(result.stdout)) == 1


def test_resume_knows_an_image_under_another_spelling(photos, stand_in, tmp_path):
    assert detect("./photos/a.png", "photos/b.JPG", "--resume", "-o", "out.jsonl").exit_code == 0
    stand_in.calls.clear()
    absolute = str(tmp_path / "photos" / "b.JPG")
    result = detect("photos/a.png", absolute, "photos/sub/c.jpg", "--resume", "-o", "out.jsonl")
    assert result.exit_code == 0, result.stderr
    assert len(stand_in.calls) == 1  # c.jpg only
    assert len(jsonl(open("out.jsonl").read())) == 3


@pytest.mark.parametrize("line", [
    '{"path": 5}',
    '{"path": "photos/a.png", "label": "cat"}',
    '{"path": "photos/a.png"}',
    '{"path": "photos/a.png", "width": 1, "height": 1, "faces": "none"}',
    '{"path": "photos/a.png", "width": 1, "height": 1, "faces": [{"x": 1}]}',
    '{"path": "photos/a.png", "width": true, "height": 1, "faces": []}',
    '{"path": "photos/a.png", "width": 1, "height": 1, "error": 3}',
    '{"path": "photos/a.png", "width": 1, "height": 1, "faces": [], "error": "x"}',
    '[1, 2]',
    '{"path": "a.png", "width": 1, "height": 1, "faces": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"path": "photos/a.png", "width": ' + "9" * 5000 + ', "height": 1, "faces": []}',
])
def test_resume_refuses_lines_that_are_not_our_records(photos, stand_in, line):
    open("out.jsonl", "w").write(line + "\n")
    one_line_error(detect("photos", "--resume", "-o", "out.jsonl"), "out.jsonl", "line 1")
    assert open("out.jsonl").read() == line + "\n"
    assert stand_in.calls == []


@pytest.mark.parametrize("option,value,named", [
    ("--min-face", 20, "min_face 60 there, 20 now"), ("--t1", 0.5, "t1 0.6 there, 0.5 now"),
    ("--t3", 0.9, "t3 0.7 there, 0.9 now"), ("--every", 2, "--every 1 there, 2 now"),
    ("--no-landmarks", None, "landmarks on there, off (--no-landmarks) now")])
def test_resume_with_other_parameters_is_refused(photos, stand_in, option, value, named):
    assert detect("photos/a.png", "--resume", "-o", "out.jsonl").exit_code == 0
    before = open("out.jsonl").read()
    assert json.loads(before)["run"]["params"] == {"min_face": 60, "t1": 0.6, "t2": 0.7, "t3": 0.7}
    given = [option] if value is None else [option, value]
    line = one_line_error(detect("photos", *given, "--resume", "-o", "out.jsonl"), "out.jsonl")
    assert named in line and "other settings" in line
    assert open("out.jsonl").read() == before


def test_resume_with_other_models_is_refused(photos, stand_in, monkeypatch):
    from types import SimpleNamespace

    digests = {"PNet": "1" * 64, "RNet": "2" * 64, "ONet": "3" * 64}
    monkeypatch.setattr(StandInDetector, "models", SimpleNamespace(sha256=dict(digests)), raising=False)
    assert detect("photos/a.png", "--resume", "-o", "out.jsonl").exit_code == 0
    made_with = json.loads(open("out.jsonl").read())["run"]
    assert made_with["models_sha256"] and made_with["version"]
    digests["ONet"] = "4" * 64  # ONet changed
    monkeypatch.setattr(StandInDetector, "models", SimpleNamespace(sha256=digests), raising=False)
    line = one_line_error(detect("photos", "--resume", "-o", "out.jsonl"), "out.jsonl", "models")
    assert "SHA-256" in line


def test_resume_refuses_a_file_with_records_of_other_inputs(photos, stand_in):
    """The wrong -o (another run's file): its images are not this run's."""
    assert detect("photos/a.png", "--resume", "-o", "out.jsonl").exit_code == 0
    before = open("out.jsonl").read()
    stand_in.calls.clear()
    line = one_line_error(detect("photos/b.JPG", "--resume", "-o", "out.jsonl"), "out.jsonl", "line 1")
    assert "photos/a.png" in line and "not among this run's inputs" in line
    assert open("out.jsonl").read() == before
    assert stand_in.calls == []
    # the whole list counts, not this shard's part of it
    result = detect("photos/a.png", "photos/b.JPG", "--shard", "2/2", "--resume", "-o", "out.jsonl")
    assert result.exit_code == 0, result.stderr
    assert [r["path"] for r in jsonl(open("out.jsonl").read())] == ["photos/a.png", "photos/b.JPG"]


def test_resume_refuses_a_file_that_records_an_image_twice(photos, stand_in):
    assert detect("photos/a.png", "--resume", "-o", "out.jsonl").exit_code == 0
    record = open("out.jsonl").read()
    open("out.jsonl", "w").write(record + record)
    line = one_line_error(detect("photos", "--resume", "-o", "out.jsonl"), "out.jsonl", "lines 1 and 2")
    assert "photos/a.png" in line
    assert open("out.jsonl").read() == record + record


def test_resume_counts_a_failure_retried_since_as_done(photos, stand_in):
    """An error record then a record of the same image (a retry whose file
    could not be rewritten): the image is done, the error line goes."""
    assert detect("photos/a.png", "--resume", "-o", "out.jsonl").exit_code == 0
    done = open("out.jsonl").read()
    failed = json.loads(done)
    failed.pop("faces")
    failed["error"] = "truncated"
    open("out.jsonl", "w").write(json.dumps(failed) + "\n" + done)
    stand_in.calls.clear()
    result = detect("photos/a.png", "--resume", "-o", "out.jsonl")
    assert result.exit_code == 0, result.stderr
    assert stand_in.calls == []
    assert open("out.jsonl").read() == done


def test_resume_refuses_records_without_provenance(photos, stand_in):
    open("out.jsonl", "w").write('{"path": "photos/a.png", "width": 64, "height": 48, "faces": []}\n')
    one_line_error(detect("photos", "--resume", "-o", "out.jsonl"), "out.jsonl", "provenance")


# --- item 14: --jobs is bounded ---------------------------------------------------------------

def test_too_many_jobs_are_refused_with_the_reason(photos, stand_in):
    from mtcnn_cli.run import batch

    limit = batch.MAX_JOBS_PER_CPU * batch.usable_cpus()
    line = usage_error(detect("photos", "--jobs", limit + 1, "-o", "out.json"), "detect", f"--jobs {limit + 1}")
    assert "per CPU" in line and "memory" in line
    assert not os.path.exists("out.json") and stand_in.calls == []


def test_compare_refuses_too_many_jobs(tmp_path):
    from mtcnn_cli.run import batch

    from .test_compare_command import image, ref_of, run as compare, write_json

    (tmp_path / "a.jpg").write_bytes(b"x")
    ref = write_json(tmp_path / "ref.json", ref_of([image("a.jpg")]))
    limit = batch.MAX_JOBS_PER_CPU * batch.usable_cpus()
    one_line_error(compare("--cpp", ref, "--jobs", limit + 1), "per CPU")


def test_never_more_workers_than_images(monkeypatch):
    from mtcnn_cli.run import batch

    started = []

    def pool_outcomes(tasks, settings, processes):
        started.append(processes)
        for task in tasks:
            yield batch.Outcome(batch.Result(task.path, 1, 1, [], None), 0.0)

    monkeypatch.setattr(batch, "pool_outcomes", pool_outcomes)
    limit = batch.MAX_JOBS_PER_CPU * batch.usable_cpus()
    tasks = [batch.Task(f"{i}.png") for i in range(3)]
    assert len(list(batch.run_tasks(tasks, batch.Settings(), limit, detector=object()))) == 3
    assert started == [min(3, limit)]


# --- item 12: non-finite network outputs ----------------------------------------------------

def _strict_json(text):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_a_face_with_non_finite_values_is_dropped_with_one_warning(photos, stand_in, monkeypatch, fmt):
    import dataclasses

    import numpy as np

    def detect_badly(self, image):
        StandInDetector.calls.append(image.shape)
        faces = expected_faces(2)
        np.float32(3e38) * np.float32(10)  # the overflow numpy warns about
        bad = dataclasses.replace(faces[1], x=float("inf"), landmarks=((float("nan"), 1.0),) * 5)
        return [faces[0], bad]

    monkeypatch.setattr(StandInDetector, "detect", detect_badly)
    result = detect("photos/a.png", "--format", fmt, "-o", "out")
    assert result.exit_code == 0, result.stderr
    text = open("out").read()
    assert "nan" not in text.lower() and "inf" not in text.lower()
    if fmt == "json":
        assert len(_strict_json(text)["images"][0]["faces"]) == 1
    elif fmt == "jsonl":
        assert len(_strict_json(text.splitlines()[0])["faces"]) == 1
    else:
        assert len(text.splitlines()) == 2  # header, one face
    warnings = [line for line in result.stderr.splitlines() if "non-finite" in line]
    assert warnings == ["mtcnn: photos/a.png: dropped 1 face with non-finite values (infinite or NaN "
                        "network outputs: are the models sound?)"]
    assert "RuntimeWarning" not in result.stderr and "overflow" not in result.stderr


def test_a_real_onet_with_infinite_box_offsets_gives_valid_json(tmp_path, corpus):
    import dataclasses

    import numpy as np

    from mtcnn_cli.detector import models

    bundled = models.convert_package(models.package_weights())
    last = bundled.onet[-1]
    biases = last.biases.copy()
    biases[2:6] = np.float32(3e38)  # box offsets: the box arithmetic overflows
    broken = dataclasses.replace(bundled, onet=bundled.onet[:-1] + (dataclasses.replace(last, biases=biases),))
    models.export_models(tmp_path / "models", broken)
    photo = corpus / "facerec__obama_small.jpg"
    done = run(photo, "--models", tmp_path / "models", "--format", "jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = _strict_json(done.stdout.decode())
    assert record["faces"] == []
    err = done.stderr.decode()
    assert "Traceback" not in err and "Warning" not in err
    assert f"mtcnn: {photo}: dropped" in err and "non-finite" in err
