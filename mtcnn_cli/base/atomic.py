"""Writing files so that no reader ever sees half of one.

A whole file (an exported or cached model, a JSON report, an annotated image)
is written to a temporary file in the target's own folder, flushed to disk,
then renamed over the target with os.replace (`AtomicFile`, `write_bytes`,
`write_text`): readers see the old file or the new one, never a mixture, and
an interrupted write leaves the target untouched. Many small files a kill
must not tear but a power cut may cost (face crops) take `write_small`: the
same, without the fsyncs and with fewer system calls.

Only a regular file (or a new one) is replaced that way. A symbolic link is
followed, and the file it names is replaced (the link stays a link). A target
that is not a regular file (a character device such as /dev/null, a FIFO, a
socket, anything under /dev or /proc such as /dev/stdout) is opened and
written in place: it is never replaced.

A growing file of lines (JSONL) is appended to one complete line per write()
call (`LineAppender`), and a torn last line left by a crash is cut off before
the file is appended to again (`cut_torn_tail`).

An output a run writes is held with an exclusive, non-blocking lock
(`OutputLock`, flock on the file itself) for the whole run, so that a second
run on the same output stops at once instead of mixing records into it.

The ground layer: it imports nothing from the package.
"""
from __future__ import annotations

import os
import re
import stat

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
                 errors: str | None = None, durable: bool = True):
        if mode not in ("wb", "w"):
            raise ValueError(f"AtomicFile mode must be 'wb' or 'w', got {mode!r}")
        self.path = os.fspath(path)
        self.target, self.in_place = write_target(self.path)
        self.done = False
        self.durable = durable  # fsync file and folder (against power loss, not only kills)
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
        try:  # the temporary name keeps 60 characters of the name: short enough for a 255-byte limit
            fd, self.temp_path = temp_file(folder, name)
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
            if self.durable:
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp_path, self.target)
        except OSError as e:
            self.discard()
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.done = True
        if self.durable:
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


def write_bytes(path, data: bytes, durable: bool = True) -> None:
    """Replace `path` with `data`, atomically; durable=False leaves out the
    fsyncs: still whole or absent after a kill, for many small files whose
    loss to a power cut costs only a re-run (face crops)."""
    with AtomicFile(path, "wb", durable=durable) as f:
        f.write(data)


_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def temp_file(folder: str, name: str, mode: int = 0o600) -> tuple[int, str]:
    """(descriptor, path) of a new temporary file `.NAME.XXXXXXXX.tmp` in
    folder (NAME cut to 60 characters, XXXXXXXX random hex), opened for
    writing, created with `mode` less the umask (0o600: the user's alone, as
    tempfile.mkstemp makes them; tempfile itself, with shutil and random
    behind it, costs a few milliseconds of every run's start). Raises
    OSError (FileExistsError when 100 random names were all taken)."""
    for _ in range(100):
        temp = os.path.join(folder, f".{name[:60]}.{os.urandom(4).hex()}.tmp")
        try:
            return os.open(temp, _NEW, mode), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {name} in {folder}")


def write_small(path: str, data: bytes) -> None:
    """write_bytes(path, data, durable=False) for one of many small files in a
    folder the caller has made (face crops), in a few system calls: a new
    name or a regular file is written to `.NAME.XXXXXXXX.tmp` beside it, then
    renamed over it. A new file gets the umask's permission bits from the
    kernel itself, a replaced one keeps its own. A symbolic link or a special
    file, or anything under /dev or /proc, goes through write_bytes. Raises
    OutputError."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    if (info is not None and not stat.S_ISREG(info.st_mode)) or os.path.abspath(path).startswith(IN_PLACE_ROOTS):
        return write_bytes(path, data, durable=False)
    folder, name = os.path.split(path)
    try:
        fd, temp = temp_file(folder, name, 0o666)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        try:
            if info is not None:
                os.fchmod(fd, info.st_mode & 0o7777)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as e:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None


def write_text(path, text: str, encoding: str = "utf-8", errors: str = "strict") -> None:
    """Replace `path` with `text`, atomically."""
    write_bytes(path, text.encode(encoding, errors))

try:
    import fcntl  # POSIX: flock
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt  # Windows: a lock on the file's first byte
except ImportError:
    msvcrt = None


def lock_exclusive(fd: int) -> None:
    """An exclusive, non-blocking lock on the open file `fd`: flock on POSIX,
    msvcrt.locking on Windows. Raises BlockingIOError when another process
    holds it, OSError when the file system or platform has no locks."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    elif msvcrt is not None:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except PermissionError:
            raise BlockingIOError("locked by another process") from None
    else:
        raise OSError("no file locks on this platform")


class OutputBusy(OutputError):
    """Another run holds the output's lock."""


def _identity(info) -> tuple:
    return info.st_dev, info.st_ino


def stale_temps(target: str) -> list[str]:
    """Our own temporary files beside `target` (AtomicFile's `.NAME.XXXXXXXX.tmp`,
    left by a killed run), largest (the one holding most records) first."""
    folder, name = os.path.split(os.path.abspath(target))
    if len(name) > 60:  # the temporary names keep 60 characters: they could be another output's
        return []
    pattern = re.compile(re.escape("." + name[:60] + ".") + r"[a-z0-9_]{8}\.tmp")
    try:
        names = [n for n in os.listdir(folder) if pattern.fullmatch(n)]
    except OSError:
        return []
    found = []
    for n in names:
        path = os.path.join(folder, n)
        try:
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                found.append((info.st_size, info.st_mtime, path))
        except OSError:
            pass
    return [path for _, _, path in sorted(found, reverse=True)]


class OutputLock:
    """An exclusive, non-blocking flock on an output file, held until
    release(). A missing file is created (empty) to be locked; abandon()
    removes it again if the run stops before writing anything. Targets that
    are not regular files (devices, FIFOs, /dev/stdout) are not locked.
    Raises OutputBusy when another run holds the lock."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.target, self.in_place = write_target(self.path)
        self.fd, self.created, self.writable = -1, False, False
        self.unlocked = False  # held without a lock: the file system or platform has none
        if self.in_place:
            return
        for _ in range(20):  # the file can be renamed over between open and flock
            fd = self._open()
            if fd is None:
                continue
            try:
                lock_exclusive(fd)
            except BlockingIOError:
                os.close(fd)
                raise OutputBusy(f"{self.path}: another run is writing this output (it holds its lock); "
                                 f"wait for it to finish or choose another -o") from None
            except OSError:  # a file system without locks: go on unlocked (hold_output says so)
                self.fd, self.unlocked = fd, True
                return
            try:
                same = _identity(os.fstat(fd)) == _identity(os.stat(self.target))
            except OSError:
                same = False
            if same:
                self.fd = fd
                return
            os.close(fd)
            self.created = False
        else:
            raise OutputError(f"cannot lock {self.path}: it keeps being replaced")

    def _open(self):
        try:
            fd = os.open(self.target, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self.writable = True
            return fd
        except FileNotFoundError:
            try:
                fd = os.open(self.target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _default_mode())
                self.created = self.writable = True
                return fd
            except FileExistsError:
                return None
            except OSError as e:
                raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        except PermissionError:
            try:
                return os.open(self.target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        except IsADirectoryError:
            raise OutputError(f"cannot write {self.path}: is a folder") from None
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def adopt(self, temp: str) -> None:
        """Make our temporary file `temp` the output (a JSONL file a killed run
        left there), keeping the lock: the temp is locked before it is renamed."""
        fd = os.open(temp, os.O_RDWR | os.O_CLOEXEC)
        try:
            lock_exclusive(fd)
            os.rename(temp, self.target)
        except OSError:
            os.close(fd)
            raise
        old, self.fd, self.created, self.writable = self.fd, fd, False, True
        if old >= 0:
            os.close(old)

    def rewrite(self, data: bytes) -> None:
        """Replace the output's content with `data`, atomically (a locked
        temporary file renamed over it), keeping the lock."""
        folder, name = os.path.split(os.path.abspath(self.target))
        fd, temp = temp_file(folder, name)
        try:
            lock_exclusive(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, os.fstat(self.fd).st_mode & 0o7777 if self.fd >= 0 else _default_mode())
            os.fsync(fd)
            os.rename(temp, self.target)
        except OSError as e:
            os.close(fd)
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise OutputError(f"cannot rewrite {self.path}: {e.strerror or e}") from None
        old, self.fd, self.created, self.writable = self.fd, fd, False, True
        if old >= 0:
            os.close(old)

    def remove_stale_temps(self) -> int:
        """Remove our temporary files a killed run left beside the output."""
        removed = 0
        for temp in stale_temps(self.target):
            try:
                os.unlink(temp)
                removed += 1
            except OSError:
                pass
        return removed

    def abandon(self) -> None:
        """Release; remove the file if this lock created it and it is still empty."""
        if self.fd >= 0 and self.created:
            try:
                info = os.fstat(self.fd)
                if info.st_size == 0 and _identity(info) == _identity(os.stat(self.target)):
                    os.unlink(self.target)
            except OSError:
                pass
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor releases the flock
            self.fd = -1


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
    kill leaves whole lines only. A failed (short) write is cut back off.
    `fd`: write through this descriptor (an OutputLock's) instead of opening
    path; truncate: empty the file first."""

    def __init__(self, path, fd: int | None = None, truncate: bool = False):
        self.path = os.fspath(path)
        try:
            if fd is None:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | (os.O_TRUNC if truncate else 0)
                self.fd = os.open(self.path, flags, _default_mode())
            else:
                self.fd = os.dup(fd)
                if truncate:
                    os.ftruncate(self.fd, 0)
                os.lseek(self.fd, 0, os.SEEK_END)
            info = os.fstat(self.fd)
            self.seekable = stat.S_ISREG(info.st_mode)
            self.size = info.st_size if self.seekable else 0
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
                if self.seekable:
                    os.ftruncate(self.fd, self.size)
                    os.lseek(self.fd, self.size, os.SEEK_SET)
            except OSError:
                pass
            if isinstance(e, BrokenPipeError):
                raise  # the reader went away (| head): the caller stops quietly
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
