"""Model files that are not regular files are
refused at once, never read forever or waited on; the cache of converted
bundled weights is used only when it holds OpenFace 2.2.0's exact files, is
ours alone, and a damaged entry is replaced. Special files are run in child
processes with a timeout, so that a regression fails instead of hanging."""
import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mtcnn_cli.detector import models
from mtcnn_cli.detector.datfile import ModelError

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
NETWORKS = ("PNet", "RNet", "ONet")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MTCNN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("MTCNN_MODELS", raising=False)


def child(code: str, env=None, timeout=60):
    """Run code in a fresh interpreter; (stdout, stderr, seconds)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    return done, time.monotonic() - started


def model_folder(tmp_path) -> Path:
    folder = tmp_path / "models"
    models.export_models(folder)
    return folder


def special_file(path: Path, kind: str):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "link to a fifo":
        os.mkfifo(path.parent / "elsewhere.fifo")
        path.symlink_to(path.parent / "elsewhere.fifo")
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock
    elif kind == "folder":
        path.mkdir()
    return None


KINDS = ["fifo", "link to /dev/zero", "link to a fifo", "socket", "folder"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["PNet.dat", "ONet.dat", "MTCNN_detector.txt"])
def test_special_model_files_are_refused_at_once(tmp_path, kind, name):
    folder = model_folder(tmp_path)
    (folder / name).unlink()
    keep = special_file(folder / name, kind)
    if name == "MTCNN_detector.txt" and kind in ("folder", "socket", "fifo"):
        # not a file: the folder itself is no longer a model folder
        expected = ""
    else:
        expected = name
    done, seconds = child(f"""
        from mtcnn_cli.detector.models import load_model_folder
        from mtcnn_cli.detector.datfile import ModelError
        try:
            load_model_folder({str(folder)!r})
        except ModelError as e:
            print("refused:", e)
    """, timeout=30)
    assert done.stdout.startswith("refused:") and expected in done.stdout, done
    assert seconds < 20
    if keep is not None:
        keep.close()


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero"])
def test_models_info_and_detect_on_special_files_are_one_line(tmp_path, kind):
    folder = model_folder(tmp_path)
    (folder / "PNet.dat").unlink()
    special_file(folder / "PNet.dat", kind)
    program = "from mtcnn_cli.cli import main; main(prog_name='mtcnn')"
    for args in (["models", "info", str(folder)], ["detect", "--models", str(folder), "x.jpg"]):
        done = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        (line,) = done.stderr.splitlines()
        assert "PNet.dat" in line and "not a regular file" in line


def test_a_network_file_is_read_to_its_limit_only(tmp_path, monkeypatch):
    from mtcnn_cli.detector import datfile

    big = tmp_path / "PNet.dat"
    big.write_bytes(bytes(5000))
    monkeypatch.setattr(datfile, "MAX_FILE_BYTES", 4096)
    with pytest.raises(ModelError, match="5000 bytes, more than any network file"):
        datfile.read_network_bytes(big)


# --- the cache of converted bundled weights (item 9) ---------------------------------------

LOADER = """
    import sys
    from mtcnn_cli.detector.models import load_models
    m = load_models()
    print(m.sha256["ONet"], "joblib" in sys.modules, m.source)
"""


def load_in_a_child(cache: Path):
    done, _ = child(LOADER, env={"MTCNN_CACHE_DIR": str(cache)}, timeout=120)
    assert done.returncode == 0, done.stderr
    digest, converted, *_ = done.stdout.split()
    return digest, converted == "True"


def entry_of(cache: Path) -> Path:
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    return entry


def test_a_poisoned_cache_with_rewritten_sums_is_not_used_and_is_replaced(tmp_path):
    cache = tmp_path / "cache"
    load_in_a_child(cache)
    entry = entry_of(cache)
    onet = bytearray((entry / "ONet.dat").read_bytes())
    onet[-1] ^= 0x40  # a bias changes; the file still parses
    (entry / "ONet.dat").write_bytes(bytes(onet))
    sums = (entry / "SHA256SUMS").read_text().splitlines()
    sums = [f"{hashlib.sha256(bytes(onet)).hexdigest()}  ONet.dat" if line.endswith("ONet.dat") else line
            for line in sums]
    (entry / "SHA256SUMS").write_text("\n".join(sums) + "\n")  # the poisoner covers the tracks
    digest, converted = load_in_a_child(cache)
    assert digest == models.OPENFACE_SHA256["ONet"] and converted
    digest, converted = load_in_a_child(cache)  # the entry was replaced: used again
    assert digest == models.OPENFACE_SHA256["ONet"] and not converted
    assert hashlib.sha256((entry_of(cache) / "ONet.dat").read_bytes()).hexdigest() == models.OPENFACE_SHA256["ONet"]
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # nothing left aside


def test_a_fifo_planted_in_the_cache_does_not_hang(tmp_path):
    cache = tmp_path / "cache"
    load_in_a_child(cache)
    entry = entry_of(cache)
    (entry / "RNet.dat").unlink()
    os.mkfifo(entry / "RNet.dat")
    digest, converted = load_in_a_child(cache)
    assert digest == models.OPENFACE_SHA256["ONet"] and converted
    assert (entry_of(cache) / "RNet.dat").is_file()  # replaced by a regular file


@pytest.mark.parametrize("change", ["file writable by others", "folder writable by others",
                                    "file owned by another user", "folder owned by another user"])
def test_entries_not_ours_alone_are_not_used(tmp_path, change):
    if os.getuid() != 0 and "owned" in change:
        pytest.skip("chown needs root")
    cache = tmp_path / "cache"
    load_in_a_child(cache)
    entry = entry_of(cache)
    target = entry / "ONet.dat" if change.startswith("file") else entry
    if "writable" in change:
        os.chmod(target, 0o777 if target == entry else 0o666)
    else:
        os.chown(target, 12345, 12345)
    digest, converted = load_in_a_child(cache)
    assert digest == models.OPENFACE_SHA256["ONet"] and converted  # not used: converted afresh


def test_the_pinned_digests_are_openface_2_2_0s(openface_models):
    sums = dict(reversed(line.split()) for line in (openface_models / "SHA256SUMS").read_text().splitlines())
    assert models.OPENFACE_SHA256 == {name: sums[f"{name}.dat"] for name in NETWORKS}
