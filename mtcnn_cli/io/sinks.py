"""Where records go: stdout, a whole file written atomically, a file of
lines appended one record at a time, or a document (JSON, CSV) kept whole
through a journal. Text sinks take write(text) as records come, then
finish() when the run is done, or abort() when it stops early (nothing
half-written is left behind). Record sinks (open_records) take start(),
add(result) per record, then finish() or abort(): an aborted document is
still closed, valid in its format, holding every record added.

The journal of `-o FILE` in JSON or CSV is `.FILE.journal` beside it: each
record appended as a JSONL line (with the run's provenance) the moment it is
done, so a kill (even SIGKILL) loses no finished image and --resume goes on
from it. FILE itself is written whole, atomically, from the journal, in
input order: when the run ends, and when it is interrupted; the journal is
removed once FILE holds the whole run."""
from __future__ import annotations

import hashlib
import os
import sys

from ..base.atomic import AtomicFile, LineAppender, OutputError, OutputLock
from . import records


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class StdoutSink:
    """Records to stdout: streamed and flushed per record, or held until the
    end for a terminal (which the progress bar is drawing on)."""

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


JOURNAL = ".journal"


def journal_path(target: str) -> str:
    """The journal beside a document output: `.NAME.journal` in its folder;
    a name over 60 characters is cut and told apart by a digest of it, so
    that the journal's name stays within a 255-byte limit."""
    folder, name = os.path.split(os.path.abspath(target))
    if len(name) > 60:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        name = f"{name[:40]}-{digest}"
    return os.path.join(folder, "." + name + JOURNAL)


class RecordSink:
    """Records in a format, written to a text sink. abort() closes a
    document (JSON's brackets) so that what was written stays valid."""

    def __init__(self, fmt, text, close_on_abort: bool):
        self.fmt, self.text, self.close_on_abort = fmt, text, close_on_abort
        self.started = False

    def start(self) -> None:
        self.text.write(self.fmt.start())
        self.started = True

    def add(self, result) -> None:
        self.text.write(self.fmt.record(result))

    def finish(self) -> None:
        self.text.write(self.fmt.end())
        self.text.finish()

    def abort(self) -> None:
        if self.close_on_abort and self.started:
            try:
                self.finish()
                return
            except (OSError, OutputError):  # the reader went away, a full disk: nothing more to save
                pass
        self.text.abort()


class JournalSink:
    """-o FILE as a document (JSON, CSV) that no stop can cost a finished
    record (see the module's doc). make_format() gives a fresh document
    format, line_format the JSONL one (with provenance) of the journal;
    order(record) the record's place in the run's input order; resume: go
    on with the journal as it is."""

    def __init__(self, path: str, lock: OutputLock, make_format, line_format, order, resume: bool):
        self.path, self.lock, self.make_format, self.line_format, self.order = \
            path, lock, make_format, line_format, order
        self.journal = journal_path(lock.target)
        self.appender = LineAppender(self.journal, truncate=not resume)

    def start(self) -> None:
        pass

    def add(self, result) -> None:
        self.appender.append(_encode(self.line_format.record(result)))

    def _render(self) -> None:
        """FILE, atomically, from the journal's records in input order; read
        twice (places, then lines) so that memory holds only the places."""
        places, offset = [], 0
        with open(self.journal, "rb") as f:
            for number, line in enumerate(f, 1):
                record = records.read_line(line, number)
                places.append((self.order(record), offset, len(line)))
                offset += len(line)
            places.sort()
            fmt = self.make_format()
            with AtomicFile(self.path, "wb") as out:
                out.write(_encode(fmt.start()))
                for _, at, size in places:
                    f.seek(at)
                    record = records.read_line(f.read(size), 0)
                    out.write(_encode(fmt.record(records.result_of(record))))
                out.write(_encode(fmt.end()))

    def finish(self) -> None:
        self.appender.close()
        try:
            self._render()
            os.unlink(self.journal)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        except records.RecordError as e:  # someone else wrote into the journal
            raise OutputError(f"cannot write {self.path}: its journal {self.journal} {e}") from None
        finally:
            self.lock.release()

    def abort(self) -> None:
        """FILE holds every record so far, as a valid document, and the
        journal stays for --resume; when none was finished, FILE is left as
        it was."""
        self.appender.close()
        if self.appender.size == 0:  # nothing finished: FILE is left as it was, and no journal
            try:
                os.unlink(self.journal)
            except OSError:
                pass
        else:
            try:
                self._render()
            except (OSError, OutputError, records.RecordError):
                pass
        self.lock.abandon()


def open_sink(output: str | None, fmt_name: str, stdout_kind: str, lock: OutputLock | None,
              resume: bool = False):
    """The text sink of -o `output` (None or "-": stdout) in format
    `fmt_name`; stdout_kind: what stdout is ('terminal', 'file', 'pipe')."""
    if output is None or output == "-":
        return StdoutSink(hold=stdout_kind == "terminal")
    if fmt_name == "jsonl":
        return LineSink(output, lock, resume)
    return FileSink(output, lock)


def open_records(output: str | None, fmt, stdout_kind: str, lock: OutputLock | None, resume: bool = False,
                 make_format=None, line_format=None, order=None):
    """The record sink of `mtcnn detect -o output` in the format `fmt`: a
    JSON or CSV file that is not written in place (a device, a FIFO) goes
    through its journal (make_format, line_format and order as JournalSink
    takes them); anything else streams."""
    if output not in (None, "-") and fmt.name != "jsonl" and lock is not None and not lock.in_place:
        return JournalSink(output, lock, make_format, line_format, order, resume)
    to_stdout = output in (None, "-")
    return RecordSink(fmt, open_sink(output, fmt.name, stdout_kind, lock, resume),
                      close_on_abort=to_stdout or fmt.name != "jsonl")
