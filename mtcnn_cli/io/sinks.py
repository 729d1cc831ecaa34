"""Where records go: stdout, a whole file written atomically, or a file of
lines appended one record at a time. Every sink has the same protocol:
write(text) as records come, then finish() when the run is done, or
abort() when it stops early (nothing half-written is left behind)."""
from __future__ import annotations

import sys

from ..base.atomic import AtomicFile, LineAppender, OutputError, OutputLock


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class StdoutSink:
    """Records to stdout: streamed and flushed per record, or held until the
    end: a JSON document (so that an interrupted run writes nothing), and
    anything for a terminal (which the progress bar is drawing on)."""

    def __init__(self, hold: bool):
        self.hold, self.parts = hold, []
        self.stream = sys.stdout.buffer

    def _emit(self, text: str) -> None:
        if text:
            try:
                self.stream.write(_encode(text))
                self.stream.flush()
            except BrokenPipeError:
                raise
            except OSError as e:  # /dev/full, an I/O error
                raise OutputError(f"cannot write to stdout: {e.strerror or e}") from None

    def write(self, text: str) -> None:
        if self.hold:
            self.parts.append(text)
        else:
            self._emit(text)

    def finish(self) -> None:
        self._emit("".join(self.parts))
        self.parts = []

    def abort(self) -> None:
        self.parts = []


class FileSink:
    """-o FILE as one document (json, csv): a temporary file renamed over FILE
    at the end; when stopped early, FILE is left as it was."""

    def __init__(self, path: str, lock: OutputLock):
        self.file = AtomicFile(path, "wb")
        self.lock = lock

    def write(self, text: str) -> None:
        self.file.write(_encode(text))
        self.file.flush()

    def finish(self) -> None:
        try:
            self.file.commit()
        finally:
            self.lock.release()

    def abort(self) -> None:
        self.file.discard()
        self.lock.abandon()


class LineSink:
    """-o FILE as JSONL: whole lines written to FILE itself, one write() each,
    so a killed run keeps every record it finished (and --resume completes
    it). Without --resume FILE is emptied first."""

    def __init__(self, path: str, lock: OutputLock, resume: bool):
        fd = lock.fd if lock.fd >= 0 and lock.writable else None
        # a device, FIFO or /dev/stdout is never emptied (`-o /dev/stdout >> log` appends)
        self.appender = LineAppender(path, fd=fd, truncate=not resume and not lock.in_place)
        self.lock = lock

    def write(self, text: str) -> None:
        if text:
            self.appender.append(_encode(text))

    def finish(self) -> None:
        self.appender.close()
        self.lock.release()

    def abort(self) -> None:
        self.appender.close()
        self.lock.abandon()


def open_sink(output: str | None, fmt_name: str, stdout_kind: str, lock: OutputLock | None,
              resume: bool = False):
    """The sink of -o `output` (None or "-": stdout) in format `fmt_name`;
    stdout_kind: what stdout is ('terminal', 'file', 'pipe')."""
    if output is None or output == "-":
        return StdoutSink(hold=fmt_name == "json" or stdout_kind == "terminal")
    if fmt_name == "jsonl":
        return LineSink(output, lock, resume)
    return FileSink(output, lock)
