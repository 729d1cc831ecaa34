"""Text for messages: paths as one printable line, counts and durations."""
from __future__ import annotations

import os

PREFIX = "mtcnn: "
_CONTROL = {i: f"\\x{i:02x}" for i in list(range(32)) + [127]}


def display(path) -> str:
    """A path as one printable line: undecodable bytes and control characters
    (a newline in a file name) written as \\xNN escapes."""
    text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.translate(_CONTROL)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def seconds_text(seconds: float) -> str:
    """A duration to the millisecond under 0.01 s, to the hundredth under
    10 s, to the tenth above: '0.004 s', '0.04 s', '4.20 s', '42.0 s'."""
    decimals = 1 if seconds >= 10 else 2 if seconds >= 0.0095 else 3
    return f"{seconds:.{decimals}f} s"
