"""Python's cyclic garbage collector through a command's start.

A start allocates about 40,000 objects that live as long as the process
(modules, classes, click's options, numpy's and OpenCV's own, the models)
and makes no garbage cycles worth finding. At the default threshold the
collector runs about 50 times over them meanwhile: 9-10 ms of a one-image
`mtcnn detect` (measured with gc.callbacks, 2 CPUs), about a sixth of what
the program adds to `python -c "import numpy, cv2"`.

So the program defers it (`defer`, first thing) and takes it back once its
start is over (`resume`): the objects alive then are frozen (left out of
every later collection, so that a long run's full collections do not walk
them again), and the user's thresholds are restored. A command that never
calls resume keeps a high first threshold, not none: the collector still
runs, every DEFERRED_THRESHOLD allocations, so memory stays bounded.
"""
from __future__ import annotations

import gc

DEFERRED_THRESHOLD = 100_000  # net allocations between collections until resume (default: 700)

_saved: tuple | None = None  # the thresholds defer found, until resume


def defer() -> None:
    """Raise the collector's first threshold to DEFERRED_THRESHOLD (never
    lower it), once; resume undoes it."""
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
        gc.set_threshold(max(_saved[0], DEFERRED_THRESHOLD), *_saved[1:])


def resume() -> None:
    """The start is over: what is alive now is frozen (gc.freeze), and the
    thresholds defer found are back. Harmless when defer was not called."""
    global _saved
    gc.freeze()
    if _saved is not None:
        gc.set_threshold(*_saved)
        _saved = None
