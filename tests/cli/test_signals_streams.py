"""Every interruption, however early, ends with
`mtcnn: interrupted` and 128 + the signal; closed, full or vanishing standard
streams end in one line or (`| head`) quietly. Real processes."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..cli_support import one_line_error

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = "from mtcnn_cli.cli import main; main(prog_name='mtcnn')"
PHOTO = "facerec__obama_small.jpg"


def environment():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MTCNN_MODELS", None)
    return env


def command(*args):
    return [sys.executable, "-c", PROGRAM, *map(str, args)]


def interrupt_after(args, delay, sig, cwd):
    """Start the program, send `sig` after `delay` seconds; (status, stdout, stderr)."""
    process = subprocess.Popen(command(*args), cwd=cwd, env=environment(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return process.returncode, out.decode(), err.decode()


def before_our_code(err) -> bool:
    """The signal landed while the interpreter itself was starting (importing
    its `site` module, or the entry script finding our package), before any
    code of ours could run: beyond our reach (a few ms of a ~1 s start)."""
    return "init_import_site" in err or ("Traceback" in err and "/mtcnn_cli/" not in err)


def check_interrupted(status, err, sig, finished=(0,)):
    """Either the run ended before the signal, or it was interrupted cleanly."""
    if before_our_code(err):
        return False
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Aborted!" not in err, err
    if status in finished or status == -sig:  # ended before the signal (killed by it on exit)
        return False
    assert status == 128 + sig, (status, err)
    lines = err.splitlines()
    assert lines and lines[-1].startswith("mtcnn: interrupted"), err
    return True


# fractions of one whole run: signals land while importing, parsing, loading, detecting
FRACTIONS = [0.05, 0.12, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9]


def run_seconds(args, cwd) -> float:
    """How long one uninterrupted run of the program takes on this machine now."""
    start = time.perf_counter()
    subprocess.run(command(*args), cwd=cwd, env=environment(), stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=120, check=True)
    return time.perf_counter() - start


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_early_signal_is_one_line_and_the_shells_status(tmp_path, corpus, sig):
    landed = 0
    whole = run_seconds(["detect", corpus / PHOTO, "-o", tmp_path / "out.json"], tmp_path)
    (tmp_path / "out.json").unlink()
    delays = [whole * fraction for fraction in FRACTIONS]
    for delay in delays:
        status, out, err = interrupt_after(["detect", corpus / PHOTO, "-o", tmp_path / "out.json"],
                                           delay, sig, tmp_path)
        landed += check_interrupted(status, err, sig)
        assert out == ""
        left = sorted(os.listdir(tmp_path))
        assert left in ([], ["out.json"], [".out.json.journal", "out.json"])
        if ".out.json.journal" in left:
            # stopped after the image's record, before the end: the file holds it, and the
            # journal stays for --resume
            assert status == 128 + sig
            assert len(json.loads((tmp_path / "out.json").read_text())["images"]) == 1
            assert len((tmp_path / ".out.json.journal").read_bytes().splitlines()) == 1
            (tmp_path / ".out.json.journal").unlink()
    assert landed >= len(delays) // 2


def test_an_early_signal_in_compare_and_models(tmp_path):
    for args in (["compare", "--cpp", "/nonexistent.json"], ["models", "info"]):
        for sig in (signal.SIGINT, signal.SIGTERM):
            status, _, err = interrupt_after(args, 0.15, sig, tmp_path)
            check_interrupted(status, err, sig, finished=(0, 2))


# --- streams ----------------------------------------------------------------------------

def run_shell(script, cwd):
    """A shell line with $MTCNN as the program."""
    program = " ".join(shlex.quote(part) for part in command())
    return subprocess.run(["bash", "-c", script.replace("$MTCNN", program)], cwd=cwd, env=environment(),
                          capture_output=True, timeout=300)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_stdout_on_a_full_device_is_one_line(tmp_path, corpus):
    done = run_shell(f"$MTCNN detect '{corpus / PHOTO}' > /dev/full", tmp_path)
    one_line_error(done, "cannot write to stdout", "No space left on device", status=1)
    ref = tmp_path / "ref.json"
    ref.write_text('{"images": [{"path": "a.jpg", "faces": []}]}')
    done = run_shell(f"$MTCNN compare --cpp '{ref}' '{ref}' 2>&1 > /dev/full", tmp_path)
    assert done.returncode == 1 and b"Traceback" not in done.stdout
    assert done.stdout.decode().splitlines()[-1] == "mtcnn: cannot write to stdout: No space left on device"


def test_closed_stdout_is_one_line_or_not_needed(tmp_path, corpus):
    done = run_shell(f"$MTCNN detect '{corpus / PHOTO}' >&-", tmp_path)
    one_line_error(done, "stdout is closed", "-o FILE")
    done = run_shell(f"$MTCNN detect '{corpus / PHOTO}' -o out.json >&-", tmp_path)
    assert done.returncode == 0 and b"Traceback" not in done.stderr
    assert (tmp_path / "out.json").read_text().startswith("{")


def test_closed_stderr_changes_nothing_else(tmp_path, corpus):
    done = run_shell(f"$MTCNN detect '{corpus / PHOTO}' --format jsonl -o out.jsonl 2>&-", tmp_path)
    assert done.returncode == 0
    assert (tmp_path / "out.jsonl").read_text().count("\n") == 1
    done = run_shell(f"$MTCNN detect '{corpus / PHOTO}' --format jsonl 2>&-", tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(b'{"path": ')


def test_a_reader_that_goes_away_ends_the_run_quietly(tmp_path, corpus):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.jpg").symlink_to(corpus / PHOTO)
    done = run_shell(f"$MTCNN detect '{folder}' --format jsonl | head -1; echo status ${{PIPESTATUS[0]}}",
                     tmp_path)
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith('{"path": ') and lines[-1] == "status 141"
    assert done.stderr == b""


# ------------------------------------------------- /dev/stdout as -o (found by trying the merged tool)

def test_dev_stdout_into_a_file_takes_the_default_format_and_appends(tmp_path, corpus):
    photo = corpus / PHOTO
    done = run_shell(f"$MTCNN detect -q '{photo}' -o /dev/stdout > out.jsonl && "
                     f"$MTCNN detect -q '{photo}' -o /dev/stdout >> out.jsonl", tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 2 and lines[0] == lines[1] and lines[0].startswith('{"path": ')


def test_dev_stdout_to_a_reader_that_goes_away_is_quiet(tmp_path, corpus):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.jpg").symlink_to(corpus / PHOTO)
    done = run_shell(f"$MTCNN detect '{folder}' -o /dev/stdout | true; echo status ${{PIPESTATUS[0]}}", tmp_path)
    assert done.stdout.decode().splitlines()[-1] == "status 141", done.stderr
    assert b"Broken pipe" not in done.stderr


def test_dev_stdout_when_stdout_is_closed_is_refused(tmp_path, corpus):
    done = run_shell(f"$MTCNN detect '{corpus / PHOTO}' -o /dev/stdout >&-", tmp_path)
    one_line_error(done, "stdout is closed", "-o FILE")


def test_merge_with_stdout_closed_is_refused(tmp_path, corpus):
    done = run_shell(f"$MTCNN detect -q '{corpus / PHOTO}' --out-dir out && $MTCNN merge out >&-", tmp_path)
    one_line_error(done, "stdout is closed", "-o FILE")
