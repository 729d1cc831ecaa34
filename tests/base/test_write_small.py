"""atomic.write_small, the crops' writer: real files, links, modes and a
FIFO, in a real folder."""
import os
import stat
import threading

import pytest

from mtcnn_cli.base import atomic


def leftovers(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_a_new_file_gets_the_umask_bits_and_no_temporary_file_is_left(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.write_small(str(tmp_path / "a.png"), b"crop")
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").read_bytes() == b"crop"
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_a_regular_file_is_replaced_and_keeps_its_own_bits(tmp_path):
    target = tmp_path / "a.png"
    target.write_bytes(b"old, and longer than the new")
    target.chmod(0o600)
    inode = target.stat().st_ino
    atomic.write_small(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_ino != inode  # renamed over, not written in place
    assert leftovers(tmp_path) == []


def test_a_link_stays_a_link_and_the_file_it_names_is_replaced(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    real = tmp_path / "elsewhere" / "real.png"
    real.write_bytes(b"old")
    link = tmp_path / "a.png"
    link.symlink_to(real)
    atomic.write_small(str(link), b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "a.png"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    atomic.write_small(str(fifo), b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_folder_that_cannot_be_written_is_one_error_naming_the_file(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(atomic.OutputError, match=r"cannot write .*a\.png: Permission denied"):
            atomic.write_small(str(tmp_path / "a.png"), b"crop")
    finally:
        tmp_path.chmod(0o700)
    assert os.listdir(tmp_path) == []


def test_a_missing_folder_is_one_error_and_leaves_nothing(tmp_path):
    with pytest.raises(atomic.OutputError, match=r"cannot write .*a\.png: No such file or directory"):
        atomic.write_small(str(tmp_path / "missing" / "a.png"), b"crop")
    assert os.listdir(tmp_path) == []


def test_the_temporary_names_are_the_ones_stale_temps_recognises(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(os.path.basename(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    atomic.write_small(str(tmp_path / "a.png"), b"crop")
    # a killed write's leftover of this name is what stale_temps finds beside the target
    (tmp_path / seen[0]).write_bytes(b"half")
    assert atomic.stale_temps(str(tmp_path / "a.png")) == [str(tmp_path / seen[0])]
