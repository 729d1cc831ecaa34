"""The program's standard streams: closed ones reopened on /dev/null at
start, a closed stdout refused as an output, a failed stdout silenced."""
from __future__ import annotations

import os
import sys


CLOSED_AT_START: set = set()  # which of stdin (0), stdout (1), stderr (2) the program found closed


def reopen_closed_streams() -> set:
    """Point fds 0, 1 and 2 at /dev/null when the program was started with
    them closed (`>&-`, `2>&-`), so that no file we open takes their place and
    receives messages or data. Returns the fds that were closed."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    for fd in sorted(closed):
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    if 1 in closed:
        sys.stdout = open(1, "w", encoding="utf-8", errors="surrogateescape", closefd=False)
    if 2 in closed:
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    return closed


STDOUT_NAMES = (None, "-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")  # -o values that are stdout


def silence_stdout() -> None:
    """After stdout failed (a closed pipe, a full disk), point it at /dev/null
    so that the interpreter's final flush does not complain."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except (OSError, ValueError):
        pass
