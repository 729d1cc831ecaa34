"""The `mtcnn` command: one module per subcommand."""
import _signal  # the C module: importing it imports nothing, so the handler is in place at once
import atexit as _atexit
import gc as _gc
import os as _os
import sys as _sys

# The detector never calls BLAS (its kernels are its own), but numpy's OpenBLAS
# starts a thread per CPU when numpy is imported, and they spin for about
# 0.1 s: 0.12-0.2 s of another core's time in every process (the workers of
# --jobs N too, which inherit this), measured with 2 CPUs. A user's own
# setting is kept.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# At exit the interpreter collects every object numpy, OpenCV and the detector
# made (about 40 ms of a warm one-image run); nothing the program leaves needs
# it: outputs are closed and renamed by then, and later exit handlers (run
# before this one) still run. Frozen objects are left to the process's end.
_atexit.register(_gc.freeze)


def _starting(signum, frame):
    """Ctrl-C or SIGTERM while the program starts: nothing to clean up yet."""
    try:
        _os.write(2, b"mtcnn: interrupted\n")
    except OSError:
        pass
    raise SystemExit(128 + signum)


# A worker process of the pool (multiprocessing's spawn) runs the program's
# script too, as __mp_main__ beside the real __main__: its signals are its
# parent's to decide (see run/batch.py), and its stop says nothing. (In any
# process that imported multiprocessing, __mp_main__ is __main__ itself.)
_WORKER = "__mp_main__" in _sys.modules and _sys.modules["__mp_main__"] is not _sys.modules.get("__main__")
_before = {} if _WORKER else {sig: _signal.signal(sig, _starting) for sig in (_signal.SIGINT, _signal.SIGTERM)}
try:
    import contextlib

    from ..base import collector as _collector
    from ..base import signals

    _collector.defer()  # the garbage collector, until the start is over (load_detector): base/collector.py

    # then the program's own handler, also while importing
    _importing = contextlib.nullcontext() if _WORKER else signals.program_signals()
    _importing.__enter__()
except BaseException:
    for _sig, _handler in _before.items():
        _signal.signal(_sig, _handler)
    raise
try:
    import click

    from ..base.defaults import VERSION
    from .program import CONTEXT, Program

    @click.group(cls=Program, context_settings=CONTEXT)
    @click.version_option(VERSION, prog_name="mtcnn")
    def main():
        """OpenFace 2.2's MTCNN face detector, bit for bit, in numpy."""

    # the subcommands, each imported when it is run or listed (see Program.get_command)
    main.lazy_commands.update(("compare", "detect", "merge", "models"))
finally:
    _importing.__exit__(None, None, None)  # Program.main installs them again for the run
    for _sig, _handler in _before.items():
        _signal.signal(_sig, _handler)
