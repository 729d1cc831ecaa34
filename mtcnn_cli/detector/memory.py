"""The C library's allocator, asked to keep the detector's working memory.

A detection allocates and frees arrays of a few hundred kB to tens of MB: the
pyramid levels, each layer's maps, the crops. glibc's malloc takes arrays
above its mmap threshold (128 kB at first, raised as such arrays are freed)
fresh from the kernel, and hands freed heap back above its trim threshold,
so the next image pays a page fault for every 4 kB page it touches again.
Measured on the AVX2 machine, one 448x352 photo detected over and over: 1246
faults and 3.2 ms of system time per image, 8.6 ms in all, against no
faults and 5.8 ms with the memory kept; a 1024x680 photo 22.5 ms against 19.5.

keep_working_memory() raises both thresholds, once per process: arrays up to
32 MB (glibc's largest mmap threshold) come from the heap, and free memory at
the top of a heap goes back to the kernel only beyond 128 MB (free memory below
memory still in use stays with the process in any case). Settings the user made
for malloc through glibc's environment variables are left as they are. Other C
libraries have no such settings: it does nothing there.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_lock = threading.Lock()
_outcome: list[bool] = []  # once decided: whether the thresholds were raised


def keep_working_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (see the module doc) unless the
    user set malloc's behaviour. Returns whether this process has them raised."""
    with _lock:
        if not _outcome:
            _outcome.append(_raise_thresholds())
        return _outcome[0]


def _raise_thresholds() -> bool:
    if (not sys.platform.startswith("linux") or any(os.environ.get(name) for name in USER_SETTINGS)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
