"""What `mtcnn detect` tells the user on stderr: a progress bar (only on a
terminal: images done of all, faces, failures, images per second, and the
estimated time left, labelled ETA), one line per skipped image, a one-line
summary. Never stdout."""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager

from ..base.text import PREFIX, display, plural, seconds_text


def _progress(console, total: int):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn,
                               TextColumn, TimeRemainingColumn)
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:.1f} img/s")

    return Progress(TextColumn("detecting"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[faces]} faces"), TextColumn("{task.fields[failed]} failed"),
                    Rate(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, transient=True, redirect_stdout=False, redirect_stderr=False)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed, or replaced by something else
        return False


def _write(text: str) -> None:
    """To stderr at once; lost, not fatal, when stderr cannot be written."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Reporter:
    """quiet: no progress, no summary (skips and errors are still reported).
    verbose: timings and one line per image. progress: None = when stderr is
    a terminal; a rich Console may be given (tests)."""

    def __init__(self, quiet: bool = False, verbose: bool = False, progress=None, console=None):
        self.quiet, self.is_verbose = quiet, verbose
        self.want_progress = progress
        self.console = console
        self.bar = self.task = None
        self.images = self.faces = self.failed = 0
        self.frames = 0  # of the images, how many were video frames
        self.already_done = self.retried = self.already_failed = 0
        self.started = time.perf_counter()

    # one line each
    def _line(self, message: str) -> None:
        """A line on stderr; lost, not fatal, when stderr cannot be written
        (closed, a full disk): the exit status still tells."""
        try:
            if self.bar is not None:
                self.bar.console.print(message, markup=False, highlight=False, soft_wrap=True)
            else:
                sys.stderr.write(message + "\n")
                sys.stderr.flush()
        except OSError:
            pass

    def verbose(self, message: str) -> None:
        if self.is_verbose:
            self._line(PREFIX + message)

    def message(self, message: str) -> None:
        """A warning, or why the run ended early (interrupted, stdout closed)."""
        self._line(PREFIX + message)

    @contextmanager
    def working(self, message: str):
        """A long wait said before it starts: `mtcnn: MESSAGE` on stderr, with a
        spinner after it while the block runs when stderr is a terminal (and
        not --quiet; the line itself is said even then)."""
        spin = not self.quiet and _isatty(sys.stderr)
        if not spin:
            self._line(PREFIX + message)
            yield
            return
        done = threading.Event()

        def turn():
            frames, i = "|/-\\", 0
            while not done.wait(0.1):
                _write(f"\b{frames[i % 4]}")
                i += 1

        _write(f"{PREFIX}{message}  ")
        spinner = threading.Thread(target=turn, name="spinner", daemon=True)
        spinner.start()
        try:
            yield
        finally:
            done.set()
            spinner.join()
            _write("\b \n")

    def start(self, total: int, already_done: int = 0, retried: int = 0, already_failed: int = 0) -> None:
        """already_done: images done before (a resumed file, finished parts);
        retried: images of a resumed file that had failed, tried again in
        this run (counted in it too); already_failed: images done before
        that failed and stay failed (finished parts of --out-dir)."""
        self.already_done, self.retried, self.already_failed = already_done, retried, already_failed
        self.started = time.perf_counter()
        show = self.want_progress
        if show is None:
            show = sys.stderr.isatty()
        if show and not self.quiet and total:
            from rich.console import Console

            console = self.console or Console(stderr=True)
            self.bar = _progress(console, total)
            self.bar.start()
            self.task = self.bar.add_task("detect", total=total, faces=0, failed=0)

    def image(self, result, seconds: float, problems=()) -> None:
        self.images += 1
        self.frames += getattr(result, "frame", None) is not None
        self.failed += result.error is not None or bool(problems)
        if result.error is not None:
            self._line(f"{PREFIX}skipped {display(result.path)}: {result.error}")
        else:
            self.faces += len(result.faces)
            self.verbose(f"{display(result.path)}: {plural(len(result.faces), 'face')} in "
                         f"{1000 * seconds:.0f} ms")
        for problem in problems:
            self._line(PREFIX + problem)
        if self.bar is not None:
            self.bar.update(self.task, advance=1, faces=self.faces, failed=self.failed)

    def images_elsewhere(self, images: int, faces: int, skipped=()) -> None:
        """Many images done at once, elsewhere (a part run by a Dask worker):
        skipped holds (path, reason) of each that failed."""
        self.images += images
        self.faces += faces
        self.failed += len(skipped)
        for path, reason in skipped:
            self._line(f"{PREFIX}skipped {display(path)}: {reason}")
        if self.bar is not None:
            self.bar.update(self.task, advance=images, faces=self.faces, failed=self.failed)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def summary(self, failures: int, unknown_files: int = 0) -> None:
        """failures: this run's (images skipped, outputs not written); the
        earlier runs' are in the parenthesis, with the images they did.
        unknown_files: files the folder search skipped for their extension,
        said on a line of their own, before the totals, when there are any."""
        if self.quiet:
            return
        seconds = time.perf_counter() - self.started
        before = f", {self.already_failed} of them failed" if self.already_failed else ""
        parts = [f"{self.already_done} done before{before}"] if self.already_done else []
        parts += [f"{self.retried} retried"] if self.retried else []
        done = f" ({', '.join(parts)})" if parts else ""
        if unknown_files:  # before the totals, which stay the last line
            self._line(f"{PREFIX}skipped {plural(unknown_files, 'file')} of unknown type in the folders "
                       f"searched (--ext adds extensions)")
        pictures = self.images - self.frames
        counted = [plural(pictures, "image")] if pictures or not self.frames else []
        counted += [plural(self.frames, "video frame")] if self.frames else []
        self._line(f"{PREFIX}{' and '.join(counted)}{done}, {plural(self.faces, 'face')}, "
                   f"{plural(failures, 'failure')}, {seconds_text(seconds)}")
