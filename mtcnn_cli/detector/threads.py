"""One BLAS/OpenMP thread per process.

The bits of a float32 GEMM depend on how OpenBLAS splits it between threads,
and the C++ reference ran OpenBLAS with one thread: so does every process of
`mtcnn detect` (the command itself and its workers). The limit only works
when set before numpy is first imported; this module imports nothing heavy.
"""
import os
import sys
from contextlib import contextmanager

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_this_process() -> bool:
    """Set the limit for this process if numpy is not loaded yet; returns
    whether it could be set."""
    if "numpy" in sys.modules:
        return False
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    return True


_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = tuple(name.replace("_set_", "_get_") for name in _SETTERS)
_openblas_functions = None


def _openblas():
    """(get, set) of the OpenBLAS that numpy loaded, or None if there is none
    (another BLAS, or not on Linux)."""
    global _openblas_functions
    if _openblas_functions is None:
        import ctypes

        _openblas_functions = ()
        try:
            with open("/proc/self/maps") as maps:
                paths = sorted({line.split()[-1] for line in maps
                                if "openblas" in line.lower() and "/" in line})
        except OSError:
            paths = []
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for get, put in zip(_GETTERS, _SETTERS):
                if hasattr(lib, get) and hasattr(lib, put):
                    _openblas_functions = (getattr(lib, get), getattr(lib, put))
                    break
            if _openblas_functions:
                break
    return _openblas_functions or None


@contextmanager
def one_blas_thread():
    """Run the block with numpy's OpenBLAS limited to one thread, the old
    count restored after; a no-op when numpy is not using OpenBLAS."""
    functions = _openblas()
    if functions is None:
        yield
        return
    get, put = functions
    old = get()
    if old == 1:
        yield
        return
    put(1)
    try:
        yield
    finally:
        put(old)
