"""Ctrl-C and SIGTERM as a clean stop.

While `Interrupts` is installed, SIGINT and SIGTERM raise KeyboardInterrupt in
the main thread, except inside a `critical()` block (writing one output
record, renaming a finished file): there the stop waits until the block ends,
so no record is ever half-written by our own hand.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    def __init__(self):
        self.depth = 0
        self.pending: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame):
        if self.depth:
            self.pending = signum
            return
        raise KeyboardInterrupt

    def install(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()

    def __enter__(self) -> "Interrupts":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()

    @contextmanager
    def critical(self):
        """A block that a signal does not cut short; a stop requested inside
        it happens when it ends."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending is not None:
            self.pending = None
            raise KeyboardInterrupt
