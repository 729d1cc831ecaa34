"""Ctrl-C and SIGTERM as a clean stop.

While `Interrupts` is installed, SIGINT and SIGTERM raise KeyboardInterrupt in
the main thread, except inside a `critical()` block (writing one output
record, renaming a finished file): there the stop waits until the block ends,
so no record is ever half-written by our own hand.

`program_signals` is installed by the `mtcnn` program itself, before its heavy
imports: outside a command's own work a signal ends the program at once with
`mtcnn: interrupted` and the shell's status for it (130 for SIGINT, 143 for
SIGTERM); inside it (`working()`) it raises KeyboardInterrupt, which the
command turns into a clean stop. `exit_status()` is the status of the last
signal received.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list = []  # the signals received, latest last
_working = [0]  # > 0 while a command runs: signals raise KeyboardInterrupt


def reset() -> None:
    """Forget the signals received (a new run of the program)."""
    _received.clear()


def exit_status() -> int:
    """128 + the last signal received (130 for SIGINT, 143 for SIGTERM);
    130 when none was (a KeyboardInterrupt raised by other means)."""
    return 128 + (_received[-1] if _received else signal.SIGINT)


_UNSAFE_FOLDERS = (os.sep + "llvmlite" + os.sep, os.sep + "numba" + os.sep, os.sep + "ctypes" + os.sep)


def _in_finalizer(frame) -> bool:
    """Whether the signal landed where an exception raised would be lost or
    garbled: a __del__ method or the import system's module-lock callback
    (Python ignores both: "Exception ignored in ..."),
    or numba's and llvmlite's machinery (ctypes callbacks ignore it too, a
    compiled function's dispatcher turns it into a SystemError). The stop is
    then delivered again a moment later."""
    depth = 0
    while frame is not None and depth < 256:
        code = frame.f_code
        if code.co_name == "__del__" or any(folder in code.co_filename for folder in _UNSAFE_FOLDERS):
            return True
        if code.co_name == "cb" and "importlib._bootstrap" in code.co_filename:
            return True  # the import system's weakref callback for a module lock: Python ignores what it raises
        frame, depth = frame.f_back, depth + 1
    return False


def _deliver_again(signum) -> None:
    """Send the signal again in a moment, when the finalizer is done."""
    def later():
        time.sleep(0.01)
        os.kill(os.getpid(), signum)
    threading.Thread(target=later, daemon=True).start()


def _say_interrupted() -> None:
    try:
        os.write(2, b"mtcnn: interrupted\n")
    except OSError:
        pass


def _program_handler(signum, frame):
    if _in_finalizer(frame):
        _deliver_again(signum)
        return
    _received.append(signum)
    if _working[0]:
        raise KeyboardInterrupt
    _say_interrupted()
    raise SystemExit(128 + signum)  # importing or parsing: nothing to clean up, no traceback


@contextmanager
def program_signals():
    """SIGINT and SIGTERM handled as the program's (see the module doc) while
    the block runs; the previous handlers are restored after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, _program_handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextmanager
def working():
    """A command's own work: signals raise KeyboardInterrupt in it."""
    _working[0] += 1
    try:
        yield
    finally:
        _working[0] -= 1


class Interrupts:
    def __init__(self):
        self.depth = 0
        self.pending: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame):
        if not self.depth and _in_finalizer(frame):
            _deliver_again(signum)
            return
        _received.append(signum)
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
