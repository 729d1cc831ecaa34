"""Writing a whole file so that no reader ever sees half of it.

The file (an exported or cached model, a JSON report, an annotated image) is
written to a temporary file in the target's own folder, flushed to disk, then
renamed over the target with os.replace: readers see the old file or the new
one, never a mixture, and an interrupted write leaves the target untouched.

Only a regular file (or a new one) is replaced that way. A symbolic link is
followed, and the file it names is replaced (the link stays a link). A target
that is not a regular file (a character device such as /dev/null, a FIFO, a
socket, anything under /dev or /proc such as /dev/stdout) is opened and
written in place: it is never replaced.

A leaf: it imports nothing from the package, so that detector/ (its model
cache) and io/ (the outputs) can both use it.
"""
from __future__ import annotations

import os
import stat
import tempfile

IN_PLACE_ROOTS = ("/dev/", "/proc/")  # special file systems: written in place, never replaced


def write_target(path) -> tuple[str, bool]:
    """(the file a write to `path` lands on, whether it is written in place).

    Symbolic links are followed to the file they name (which may not exist
    yet); a non-regular existing file, or anything under /dev or /proc
    (/dev/stdout is a link into /proc), is written in place."""
    path = os.fspath(path)
    if os.path.abspath(path).startswith(IN_PLACE_ROOTS):
        return path, True
    real = os.path.realpath(path)
    if real.startswith(IN_PLACE_ROOTS):
        return path, True
    try:
        info = os.stat(real)
    except OSError:
        return real, False
    if stat.S_ISDIR(info.st_mode):
        return real, False  # the replacement fails with a clear "is a directory"
    return real, not stat.S_ISREG(info.st_mode)


class OutputError(Exception):
    """A file that could not be written; the message names it and says why."""


def _default_mode() -> int:
    """Permission bits of a newly created file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: str) -> None:
    """Make a rename in `folder` durable; best effort (some filesystems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A temporary file beside `path` that becomes `path` on commit().

    Use as a context manager (commit on success, discard on an exception), or
    call commit()/discard() yourself. `mode` is "wb" or "w"; text mode takes
    `encoding` and `errors` as open() does. The final file gets the target's
    old permission bits, or the umask's for a new file. A symbolic link is
    followed; a target that is not a regular file is written in place
    (see write_target).
    """

    def __init__(self, path, mode: str = "wb", encoding: str | None = None,
                 errors: str | None = None):
        if mode not in ("wb", "w"):
            raise ValueError(f"AtomicFile mode must be 'wb' or 'w', got {mode!r}")
        self.path = os.fspath(path)
        self.target, self.in_place = write_target(self.path)
        self.done = False
        text = {"encoding": encoding, "errors": errors} if mode == "w" else {}
        if self.in_place:
            self.temp_path = None
            try:  # appending: a device or FIFO does not care, and /dev/stdout >> log is not emptied
                self.file = open(self.target, mode.replace("w", "a"), **text)
            except OSError as e:
                raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
            return
        folder, name = os.path.split(os.path.abspath(self.target))
        self.folder = folder
        # keep the temporary name short enough for a 255-byte name limit
        prefix = "." + name[:60] + "."
        try:
            fd, self.temp_path = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.file = os.fdopen(fd, mode, **text)

    def write(self, data):
        try:
            return self.file.write(data)
        except BrokenPipeError:
            raise  # the reader went away (| head): the caller stops quietly
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def flush(self) -> None:
        try:
            self.file.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def commit(self) -> None:
        """Flush, fsync and rename the temporary file over the target."""
        if self.done:
            return
        if self.in_place:
            self.done = True
            try:
                self.file.close()  # flushes
            except BrokenPipeError:
                raise
            except OSError as e:
                raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
            return
        try:
            self.file.flush()
            try:
                mode = os.stat(self.target).st_mode & 0o7777
            except OSError:
                mode = _default_mode()
            os.fchmod(self.file.fileno(), mode)
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp_path, self.target)
        except OSError as e:
            self.discard()
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.done = True
        _fsync_folder(self.folder)

    def discard(self) -> None:
        """Close and remove the temporary file; the target is left as it was."""
        if self.done:
            return
        self.done = True
        try:
            self.file.close()
        except OSError:
            pass
        if self.temp_path is None:
            return
        try:
            os.unlink(self.temp_path)
        except OSError:
            pass

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def write_bytes(path, data: bytes) -> None:
    """Replace `path` with `data`, atomically."""
    with AtomicFile(path, "wb") as f:
        f.write(data)


def write_text(path, text: str, encoding: str = "utf-8", errors: str = "strict") -> None:
    """Replace `path` with `text`, atomically."""
    write_bytes(path, text.encode(encoding, errors))
