"""Writing files so that no reader ever sees half of one.

A whole file (a JSON report, an annotated image) is replaced atomically by
`AtomicFile`, `write_bytes` and `write_text`, which live in mtcnn_cli.atomic_file
(the model cache in detector/ uses them too) and are re-exported here.

A growing file of lines (JSONL with --resume) is appended to one complete line
per write() call, and a torn last line left by a crash is cut off before the
file is appended to again.
"""
from __future__ import annotations

import os

from ..atomic_file import AtomicFile, write_bytes, write_text  # noqa: F401 (re-exported)
from ..atomic_file import OutputError, _default_mode


def cut_torn_tail(path) -> int:
    """Truncate `path` after its last newline, dropping a torn last line.

    Returns the number of bytes dropped (0 when the file ends with a newline,
    is empty, or does not exist)."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            # read backwards in blocks until a newline is found
            end, block = size, 65536
            while end > 0:
                start = max(0, end - block)
                f.seek(start)
                chunk = f.read(end - start)
                at = chunk.rfind(b"\n")
                if at >= 0:
                    keep = start + at + 1
                    break
                end = start
            else:
                keep = 0
            if keep < size:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
            return size - keep
    except FileNotFoundError:
        return 0
    except OSError as e:
        raise OutputError(f"cannot repair {os.fsdecode(path)}: {e.strerror or e}") from None


class LineAppender:
    """Appends complete lines to a file, each with a single write() call, so a
    kill leaves whole lines only. A failed (short) write is cut back off."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _default_mode())
            self.size = os.fstat(self.fd).st_size
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def append(self, line: bytes) -> None:
        """line: one record ending with b"\\n"."""
        try:
            written = os.write(self.fd, line)
            if written != len(line):
                raise OSError(0, f"short write ({written} of {len(line)} bytes)")
        except OSError as e:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.size += written

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            os.fsync(self.fd)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1
