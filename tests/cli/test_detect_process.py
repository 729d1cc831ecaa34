"""`mtcnn detect` end to end: real processes, the real detector with the
bundled weights, signals sent at several points of a batch."""
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from ..cli_support import one_line_error

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = "from mtcnn_cli.cli import main; main(prog_name='mtcnn')"
SMALL_FACES = ["facerec__obama_small.jpg", "openface__frame_det_000000_112x112_0.7.bmp",
               "insightface__no_face.png", "dlib__000179_02159509.jpg"]


def environment(marker=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MTCNN_MODELS", None)
    if marker:
        env["MTCNN_TEST_MARKER"] = marker
    return env


def command(*args):
    return [sys.executable, "-c", PROGRAM, "detect", *map(str, args)]


def run(*args, cwd, input=None, timeout=300):
    return subprocess.run(command(*args), cwd=cwd, env=environment(), input=input,
                          capture_output=True, timeout=timeout)


def records(path):
    """The JSONL file's records; fails on a line that is not complete."""
    if not Path(path).exists():  # stopped before the file was opened
        return []
    data = Path(path).read_bytes()
    assert data == b"" or data.endswith(b"\n"), "torn last line"
    return [json.loads(line) for line in data.splitlines()]


def processes_with(marker):
    """Pids of live processes whose environment holds the marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if f"MTCNN_TEST_MARKER={marker}".encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def assert_no_process_left(marker):
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == []


BATCH = SMALL_FACES + ["insightface__mask_green.jpg", "dlib__000310_00470421.jpg", "facenet__paul_rudd_1.png",
                      "ipazc__no-faces.jpg", "openface__frame_det_000001_200x200_0.7.bmp", "opencv__lena.jpg",
                      "dlib__frame_000100.jpg", "insightface__Tom_Hanks_54745.png"]


@pytest.fixture
def batch_folder(tmp_path, corpus):
    """Twelve small corpus images (linked, not copied; tens of milliseconds
    each) and a broken file: 13 records."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(BATCH):
        (folder / f"{i:02d}_{name}").symlink_to(corpus / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    return folder


def test_end_to_end_equals_the_openface_reference(tmp_path, corpus, reference):
    """Through the command, the boxes and confidences are the C++ detector's
    (float32 for float32), and every face has five points near its box."""
    paths = [str(corpus / name) for name in SMALL_FACES]
    done = run(*paths, "--format", "json", "-o", tmp_path / "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    doc = json.loads((tmp_path / "out.json").read_text())
    cpp = {Path(image["path"]).name: image for image in json.loads((reference / "mf60.json").read_text())["images"]}
    assert [image["path"] for image in doc["images"]] == paths
    keys = ("x", "y", "width", "height", "confidence")
    for image, name in zip(doc["images"], SMALL_FACES):
        assert (image["width"], image["height"]) == (cpp[name]["width"], cpp[name]["height"])
        assert [[np.float32(f[k]) for k in keys] for f in image["faces"]] == \
            [[np.float32(f[k]) for k in keys] for f in cpp[name]["faces"]]
        for face in image["faces"]:
            points = np.array(face["landmarks"])
            assert points.shape == (5, 2)
            assert np.all(points >= [face["x"] - face["width"] / 2, face["y"] - face["height"] / 2])
            assert np.all(points <= [face["x"] + 1.5 * face["width"], face["y"] + 1.5 * face["height"]])
    assert sum(len(image["faces"]) for image in doc["images"]) >= 2


def test_the_first_command_a_user_types(tmp_path, corpus):
    """One photo, every output at once, read back."""
    photo = str(corpus / "facerec__obama_small.jpg")
    done = run(photo, "--format", "csv", "--bboxdir", "boxes", "--annotate", "drawn", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.decode().splitlines()
    assert rows[0].startswith("path,face,x,y,width,height,confidence,lx1,ly1")
    assert len(rows) == 2 and rows[1].startswith(photo + ",0,")
    box = (tmp_path / "boxes" / photo.lstrip("/")).with_suffix(".txt").read_text().split()  # mirrored, as drawn
    assert len(box) == 4 and float(box[0]) < float(box[2]) and float(box[1]) < float(box[3])
    drawn = cv2.imread(str(tmp_path / "drawn" / photo.lstrip("/")))
    assert drawn.shape == cv2.imread(photo).shape
    assert done.stderr.decode().startswith("mtcnn: 1 image, 1 face, 0 failures, ")


def test_a_first_run_says_it_compiles_the_kernels_and_a_warm_run_does_not(tmp_path, corpus):
    """An empty cache folder (a machine that never ran the detector): one line
    on stderr before the compile, even with --quiet; the next run reads the
    cache and says nothing of it."""
    photo = str(corpus / "dlib__000179_02159509.jpg")
    env = dict(environment(), MTCNN_CACHE_DIR=str(tmp_path / "cache"))
    said = []
    for _ in range(2):
        done = subprocess.run(command(photo, "--quiet", "-o", tmp_path / "out.json"), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        said.append(done.stderr)
    assert said[0] == "mtcnn: compiling the detector's kernels for this CPU, once (about 4 s)\n"
    assert said[1] == ""


def test_jobs_2_equals_jobs_1(batch_folder, tmp_path):
    one = run(batch_folder, "--format", "jsonl", "--jobs", 1, cwd=tmp_path)
    two = run(batch_folder, "--format", "jsonl", "--jobs", 2, cwd=tmp_path)
    assert one.returncode == two.returncode == 1  # broken.jpg
    assert one.stdout == two.stdout
    lines = one.stdout.decode().splitlines()
    assert len(lines) == 13
    assert [json.loads(line)["path"] for line in lines] == \
        [str(batch_folder / name) for name in sorted(os.listdir(batch_folder))]


def _start(args, cwd, marker):
    # unbuffered: reading stderr line by line must not swallow what communicate() reads later
    return subprocess.Popen(command(*args), cwd=cwd, env=environment(marker), bufsize=0,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stopped(args, cwd, marker, sig, count):
    """A run sent `sig` once `count` images are reported (or when it ends
    first): the finished process and its stderr."""
    process = _start(args, cwd, marker)
    _wait_for_images(process, count)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    return process, err


def _wait_for_images(process, count):
    """Read the -v lines on stderr until the models are loaded and `count`
    images more are reported (or the process ends)."""
    loaded, seen = False, 0
    while True:
        line = process.stderr.readline()
        if not line:
            return
        if b"loaded the models" in line:
            loaded = True
        elif loaded and (b" in " in line or b"skipped" in line):
            seen += 1
        if loaded and seen >= count:
            return


@pytest.mark.parametrize("jobs", [1, 2])
def test_killed_batches_resume_to_exactly_one_record_per_image(batch_folder, tmp_path, jobs):
    reference = tmp_path / "reference.jsonl"
    assert run(batch_folder, "--format", "jsonl", "-o", reference, cwd=tmp_path).returncode == 1
    out = tmp_path / "out.jsonl"
    marker = uuid.uuid4().hex
    args = [batch_folder, "--resume", "-o", out, "--jobs", jobs, "-v"]
    # (signal, images to let through before sending it): stops at several points of the batch
    stops = [(signal.SIGINT, 0), (signal.SIGTERM, 2), (signal.SIGINT, 1), (signal.SIGKILL, 2),
             (signal.SIGTERM, 3), (signal.SIGKILL, 1)]
    expected = records(reference)
    landed = []
    for sig, count in stops:
        process, err = _stopped(args, tmp_path, marker, sig, count)
        if sig == signal.SIGKILL:
            assert process.returncode in (-9, 0, 1)
        else:
            assert process.returncode in (128 + sig, 0, 1), err  # 0/1: the batch ended before the signal
            assert b"Traceback" not in err
            if process.returncode == 128 + sig:
                assert err.decode().splitlines()[-1].startswith("mtcnn: interrupted after ")
        so_far = records(out)  # every line complete
        assert so_far == expected[:len(so_far)]  # each image once, in order, as a whole run writes it
        landed.append((sig.name, count, process.returncode, len(so_far)))
        assert_no_process_left(marker)
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    print(f"--jobs {jobs}: (signal, images let through, exit status, records in the file): {landed}")
    inside = [stop for stop in landed if stop[2] in (130, 143, -9)]
    assert len(inside) >= 4, landed  # the stops did land inside the batch
    finished = run(*args, cwd=tmp_path)
    assert finished.returncode == 1, finished.stderr  # broken.jpg, recorded once
    assert records(out) == expected


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_killed_documents_resume_to_the_bytes_of_a_whole_run(batch_folder, tmp_path, fmt):
    """JSON and CSV: Ctrl-C, SIGTERM and SIGKILL at several points, each run
    resumed, end in the very bytes an uninterrupted run writes."""
    reference = tmp_path / f"reference.{fmt}"
    assert run(batch_folder, "-o", reference, cwd=tmp_path).returncode == 1
    out = tmp_path / f"out.{fmt}"
    marker = uuid.uuid4().hex
    args = [batch_folder, "--resume", "-o", out, "-v"]
    stops = [(signal.SIGINT, 1), (signal.SIGKILL, 2), (signal.SIGTERM, 1), (signal.SIGKILL, 1)]
    landed = []
    for sig, count in stops:
        process, err = _stopped(args, tmp_path, marker, sig, count)
        assert b"Traceback" not in err
        if process.returncode in (130, 143):  # a stop: the file is a valid document of what was done
            text = out.read_text()
            if fmt == "json":
                assert json.loads(text)["images"]
            else:
                assert text.startswith("path,")
        landed.append((sig.name, count, process.returncode))
        assert_no_process_left(marker)
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert len([stop for stop in landed if stop[2] in (130, 143, -9)]) >= 3, landed
    finished = run(*args, cwd=tmp_path)
    assert finished.returncode == 1, finished.stderr  # broken.jpg, recorded once
    assert out.read_bytes() == reference.read_bytes()
    assert not (tmp_path / f".out.{fmt}.journal").exists()


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_stdout_redirected_to_a_file_keeps_every_finished_image(batch_folder, tmp_path, fmt):
    """`mtcnn detect ... > out` stopped by SIGTERM: a valid document of the
    images done; CSV rows are in the file as each image is done."""
    out = tmp_path / f"out.{fmt}"
    with open(out, "wb") as stdout:
        process = subprocess.Popen(command(batch_folder, "--format", fmt, "-v"), cwd=tmp_path,
                                   env=environment(), bufsize=0, stdout=stdout, stderr=subprocess.PIPE)
        _wait_for_images(process, 2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    assert b"Traceback" not in err
    text = out.read_text()
    if process.returncode == 143:
        if fmt == "json":
            assert len(json.loads(text)["images"]) >= 2
        else:
            rows = list(csv.DictReader(io.StringIO(text)))
            assert len({row["path"] for row in rows}) >= 2
    else:
        assert process.returncode in (0, 1), err  # the batch ended first: the whole run
        assert text


def test_an_interrupted_json_run_leaves_a_valid_document(batch_folder, tmp_path):
    out = tmp_path / "out.json"
    out.write_text("old")
    marker = uuid.uuid4().hex
    process = _start([batch_folder, "--format", "json", "-o", out, "--annotate", tmp_path / "drawn"],
                     tmp_path, marker)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "drawn").rglob("*.jpg")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert b"Traceback" not in err
    if process.returncode == 143:  # 128 + SIGTERM: the old file, or a document of the finished images
        assert out.read_text() == "old" or json.loads(out.read_text())["images"]
    else:  # the small batch ended before the signal landed: the whole document, not a part
        assert process.returncode in (0, 1), err
        assert json.loads(out.read_text())["images"]
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    for drawn in (tmp_path / "drawn").rglob("*.*"):
        assert cv2.imread(str(drawn)) is not None  # every annotated copy is whole


def test_ctrl_c_with_workers_leaves_no_process(batch_folder, tmp_path):
    marker = uuid.uuid4().hex
    process = _start([batch_folder, "--jobs", 2, "--format", "jsonl"], tmp_path, marker)
    first = process.stdout.readline()  # a record: the workers are running
    assert first.startswith(b"{")
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=120)
    assert process.returncode in (130, 0, 1), err  # 0/1: the batch ended before the signal landed
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert all(json.loads(line) for line in rest.splitlines())
    assert_no_process_left(marker)


def _children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_the_workers_start_is_kept_and_said_once(batch_folder, tmp_path, sig):
    """The signal goes to the whole process group, as a terminal's Ctrl-C (or
    Slurm's SIGTERM) does, just as the worker processes appear. Through the
    program's script, as the installed `mtcnn` runs: a spawned worker runs it
    too. The stop must end the run (it was once dropped in one run in four,
    and the batch ran to its end) with one line, from the parent only (a
    worker being started printed a traceback, or its own line)."""
    script = tmp_path / "mtcnn"
    script.write_text("import sys\nfrom mtcnn_cli.cli import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    marker = uuid.uuid4().hex
    for _ in range(4):
        process = subprocess.Popen([sys.executable, script, "detect", batch_folder, "--jobs", "2", "-o",
                                    tmp_path / "out.jsonl"], cwd=tmp_path, env=environment(marker),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        # its first child is multiprocessing's resource tracker, then come the workers
        while len(_children_of(process.pid)) < 2 and process.poll() is None:
            time.sleep(0.001)
        os.killpg(process.pid, sig)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 128 + sig, err
        lines = err.decode().splitlines()
        assert [line for line in lines if "interrupted" in line] == [lines[-1]], err
        assert lines[-1].startswith("mtcnn: interrupted after "), err
        assert b"Traceback" not in err and b"Exception ignored" not in err, err
        assert_no_process_left(marker)


def test_closed_stdout_stops_quietly(batch_folder, tmp_path):
    process = _start([batch_folder, "--format", "jsonl"], tmp_path, None)
    process.stdout.readline()
    process.stdout.close()  # `| head -1`
    err = process.stderr.read()
    process.wait(timeout=120)
    assert process.returncode == 141  # 128 + SIGPIPE, as `cmd | head` gives, and no message
    assert err == b""


def test_shards_in_processes(batch_folder, tmp_path):
    whole = run(batch_folder, "--format", "jsonl", cwd=tmp_path).stdout
    parts = [run(batch_folder, "--format", "jsonl", "--shard", f"{i}/2", cwd=tmp_path).stdout for i in (1, 2)]
    assert parts[0] and parts[1] and parts[0] + parts[1] == whole


def _run_on_a_terminal(args, cwd) -> str:
    """stdout and stderr both on one pseudo-terminal, as a user sees them
    (less the escape sequences)."""
    master, slave = os.openpty()
    process = subprocess.Popen(command(*args), cwd=cwd, env=environment(), stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert process.wait(timeout=300) == 0, seen
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode())  # the progress bar's drawing
    return text.replace("\r\n", "\n").replace("\r", "")


@pytest.mark.parametrize("fmt", [None, "jsonl", "csv"])
def test_on_a_terminal_the_summary_gets_its_own_line(tmp_path, corpus, fmt):
    photo = str(corpus / SMALL_FACES[0])
    screen = _run_on_a_terminal([photo] + (["--format", fmt] if fmt else []), tmp_path)
    data, summary = screen.split("mtcnn: 1 image, 1 face, 0 failures, ")
    assert data.endswith("\n"), repr(data[-80:])
    last = data.splitlines()[-1]
    if fmt in (None, "jsonl"):  # one default whatever stdout is
        assert json.loads(last)["path"] == photo
    else:
        assert last.startswith(photo + ",0,")
    assert summary.endswith(" s\n") and "0.0 s" not in summary and "0.00 s" not in summary


def test_verbose_reports_timings(tmp_path, corpus):
    done = run(corpus / SMALL_FACES[0], "-v", cwd=tmp_path)
    err = done.stderr.decode()
    for fragment in ("imported numpy and OpenCV in", "imported the detector in",
                     "loaded the models (bundled weights) in", "1 face in"):
        assert fragment in err
    assert json.loads(done.stdout)["faces"]  # jsonl, one record


def test_the_default_format_is_the_same_into_a_file_a_pipe_and_a_terminal(tmp_path, corpus):
    """`mtcnn detect img.jpg | jq .faces` sees what the terminal showed."""
    photo = corpus / SMALL_FACES[0]
    piped = run(photo, "-q", cwd=tmp_path).stdout
    with open(tmp_path / "redirected", "wb") as f:
        subprocess.run(command(photo, "-q"), cwd=tmp_path, env=environment(), stdout=f, check=True,
                       timeout=300)
    assert (tmp_path / "redirected").read_bytes() == piped
    assert len(json.loads(piped)["faces"]) == 1


def test_model_folders(tmp_path, corpus, openface_models):
    """OpenFace's own .dat files hold the bundled weights' values: same output.
    A folder that is not a model folder, from --models or $MTCNN_MODELS, is a
    one-line error, exit status 2."""
    photo = corpus / SMALL_FACES[0]
    bundled = run(photo, cwd=tmp_path)
    theirs = run(photo, "--models", openface_models, cwd=tmp_path)
    assert bundled.returncode == theirs.returncode == 0
    assert json.loads(theirs.stdout)["faces"] and theirs.stdout == bundled.stdout
    for models in (tmp_path, tmp_path / "missing"):
        refused = run(photo, "--models", models, "-o", tmp_path / "out.json", cwd=tmp_path)
        assert one_line_error(refused).startswith("mtcnn: cannot load the models: ")
    env = dict(environment(), MTCNN_MODELS=str(tmp_path))
    refused = subprocess.run(command(photo), cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert refused.returncode == 2 and b"cannot load the models" in refused.stderr
    assert not (tmp_path / "out.json").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
@pytest.mark.parametrize("setting", [None, "2"])
def test_the_program_starts_no_blas_threads_unless_the_user_asks(setting):
    # numpy's OpenBLAS starts a thread per CPU at import, and they spin on another core
    # for a while: the program, which never calls BLAS, sets one thread, unless told otherwise
    env = environment()
    env.pop("OPENBLAS_NUM_THREADS", None)
    if setting:
        env["OPENBLAS_NUM_THREADS"] = setting
    probe = ("import mtcnn_cli.cli, numpy, os; "
             "print(len(os.listdir('/proc/self/task')), os.environ['OPENBLAS_NUM_THREADS'])")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, kept = done.stdout.split()
    assert kept == (setting or "1")
    if setting is None:
        assert count == "1"  # the main thread alone


@pytest.mark.parametrize("user", [None, (500, 5, 5)])
def test_a_run_gives_the_garbage_collector_back_as_it_found_it(tmp_path, corpus, user):
    # the program defers the collector through its start (base/collector.py), then restores
    # the thresholds it found and freezes what the start made; checked at the process's exit
    photo = corpus / "dlib__000179_02159509.jpg"
    probe = ("import atexit, gc, sys\n"
             + (f"gc.set_threshold(*{user!r})\n" if user else "")
             + "atexit.register(lambda: print(gc.get_threshold(), gc.isenabled(), gc.get_freeze_count() > 0))\n"
             + PROGRAM)
    done = subprocess.run([sys.executable, "-c", probe, "detect", str(photo), "-q", "-o", str(tmp_path / "f.json")],
                          cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{user or (700, 10, 10)} True True"
    assert json.loads((tmp_path / "f.json").read_text())["images"][0]["faces"]
