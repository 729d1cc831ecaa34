"""The detector's kernels as machine code, loaded without numba.

One cohesive thing over 500 lines: compiling, caching (checked through file
descriptors) and calling the kernels are one trust boundary, kept in one
place so that no path around its checks exists.

kernels.py holds the loops (numba source). They are compiled once per install
and machine, the machine code is kept in the user's cache, and every later
process loads it with llvmlite alone (a few milliseconds) and calls it through
ctypes: importing numba and its dispatcher cost about 0.6 s per process.

The functions here take and check numpy arrays, then call the machine code
with raw pointers: every shape, type and reach is checked here, because the
loops have no bounds checks.

A cache entry is one file: a header (format, the entry points' symbols, the
symbols to resolve) and the object code. Its name is a digest of what the code
depends on: kernels.py and this module, numba, llvmlite, numpy, Python, numba's
environment settings, and this CPU's name and features. An entry is used only
when it and its folder are the user's own and nobody else can write them (it is
code we run; both are checked on the open descriptors, never followed links),
and only when it is whole (a digest of the code); otherwise, or when it fails
to load, the kernels are compiled again and the entry replaced.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import operator
import os
import stat
import sys
import threading
import time
from pathlib import Path

import numpy as np

from . import elfload

MAGIC = b"mtcnn-cli kernels v1\n"
BLOCK = 16  # positions computed together by kernels.conv_chains
LANES = 16  # kernels.LANES: the 16 interleaved chains of the fully connected layers
_SIZE_LIMIT = 1 << 31  # window sizes, strides and output sizes: no index arithmetic can overflow
_PLACE_LIMIT = 1 << 40  # crop boxes' corners and taps: the same

_P = ctypes.c_void_p
_N = ctypes.c_int64
# ctypes prototypes of kernels.ENTRY_POINTS (pointers as void *, sizes as int64)
_PROTOTYPES = {
    "conv_chains": (_P, _N, _P, _N, _N, _N, _P, _P, _N, _P, _N, _P, _N, _N, _N, _N, _P, _N, _P),
    "gemv_lanes": (_P, _N, _N, _P, _N, _P, _P, _P),
    "sums_double": (_P, _N, _N, _P, _N, _P),
    "max_pool": (_P, _N, _N, _N, _N, _N, _N, _N, _N, _N, _N, _P, _N, _N, _N, _N, _P),
    "crop_linear": (_P, _N, _N, _P, _N, _N, _P, _P, _P, _P, _P, _P, _P, _P, _P),
    "resize_linear": (_P, _N, _N, _P, _P, _P, _P, _P, _N, _P, _P, _P, _P, _N, _P, _N, _N, _P, _P),
    "fma_many": (_P, _P, _P, _P, _N),
    "nms": (_P, _N, _P, _P, _N, _P, _P, _P),
}


class KernelError(RuntimeError):
    """The compiled kernels cannot be made ready, or cannot be trusted, here."""


class _Library:
    """The loaded machine code: the entry points as ctypes functions. The
    execution engine owns the code and lives as long as this object."""

    def __init__(self, engine, functions: dict, source: str, seconds: float, problem: str | None,
                 loader: str = "llvmlite"):
        self.engine = engine
        self.functions = functions
        self.source = source  # "cache" or "compiled"
        self.seconds = seconds
        self.problem = problem  # why compiled code could not be cached, if it could not
        self.loader = loader  # "elf" (elfload.py, no llvmlite) or "llvmlite"


_lock = threading.Lock()
_library: _Library | None = None


# --- the machine, the key, the cache ----------------------------------------------------

def _llvm():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def _package_versions() -> str:
    """numba's, llvmlite's and numpy's versions, from their dist-info folders
    (importing numba to ask would cost what this module saves)."""
    import importlib.util

    names = []
    for package in ("numba", "llvmlite", "numpy"):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            names.append(f"{package}-missing")
            continue
        site = Path(list(spec.submodule_search_locations)[0]).parent
        names += sorted(p.name for p in site.glob(f"{package}-*.dist-info"))
    return " ".join(names)


def cpuinfo_machine() -> tuple[str, str] | None:
    """This CPU as the kernel describes it, for the cache key without llvmlite:
    the first processor of /proc/cpuinfo (vendor, family, model, stepping, name;
    its flags as the features). The flags come from the same CPUID bits, masked
    by what the OS enables, that LLVM reads for the host's CPU and features, so
    one description names one compiled object. None where the object cannot be
    loaded without llvmlite anyway (elfload.supported), or the file says less."""
    if not elfload.supported():
        return None
    try:
        with open("/proc/cpuinfo", "rb") as f:  # the first processor only: a big machine lists hundreds
            text = b""
            while b"\n\n" not in text and len(text) < 1 << 20:
                chunk = f.read(8192)
                if not chunk:
                    break
                text += chunk
    except OSError:
        return None
    fields = {}
    for line in text.split(b"\n\n")[0].decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    if not fields.get("flags") or not fields.get("vendor_id"):
        return None
    described = "; ".join(f"{k}={fields.get(k, '')}" for k in ("vendor_id", "cpu family", "model", "model name",
                                                                "stepping"))
    return f"cpuinfo {described}", fields["flags"]


def cache_key(cpu: str, features: str) -> str:
    """A digest of everything the compiled code depends on (see the module's docstring)."""
    here = Path(__file__)
    settings = "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("NUMBA_"))
    digest = hashlib.sha256()
    for part in (here.with_name("kernels.py").read_bytes(), here.read_bytes(), _package_versions().encode(),
                 sys.version.encode(), settings.encode(), cpu.encode(), features.encode(), MAGIC):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:32]


def cache_root() -> Path | None:
    """Where the package caches what it computes once (the compiled kernels;
    the bundled weights, converted: detector/models.py): $MTCNN_CACHE_DIR
    (empty: no cache), else $XDG_CACHE_HOME/mtcnn-cli, else ~/.cache/mtcnn-cli."""
    configured = os.environ.get("MTCNN_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mtcnn-cli"


def _cache_file(key: str) -> Path | None:
    root = cache_root()
    return None if root is None else root / "kernels" / f"kernels-{key}.bin"


def _private(info: os.stat_result) -> bool:
    """The user's own, and writable by nobody else."""
    if not hasattr(os, "getuid"):
        return True
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _open_folder(folder: Path) -> int:
    """A descriptor of the folder itself (never a link to one). Raises OSError."""
    return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))


def _read_entry(path: Path):
    """(header, object code), or None when the entry is missing, not the
    user's own and private (file and folder), or not whole."""
    folder = None
    try:
        folder = _open_folder(path.parent)
        if not _private(os.fstat(folder)):
            return None
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        if os.open in os.supports_dir_fd:
            fd = os.open(path.name, flags, dir_fd=folder)
        else:
            fd = os.open(path, flags)
        with open(fd, "rb") as f:
            info = os.fstat(fd)
            if not (stat.S_ISREG(info.st_mode) and _private(info) and info.st_nlink == 1):
                return None
            if f.read(len(MAGIC)) != MAGIC:
                return None
            header = json.loads(f.readline(1 << 16))
            code = f.read(int(header["size"]) + 1)
        if len(code) != header["size"] or hashlib.sha256(code).hexdigest() != header["sha256"]:
            return None
        if set(header["symbols"]) != set(_PROTOTYPES):
            return None
        return header, code
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        if folder is not None:
            os.close(folder)


def _write_entry(path: Path, header: dict, code: bytes) -> str | None:
    """Best effort (the cache is an optimisation): the entry appears whole or not
    at all, readable and writable by its owner alone, in a folder only its owner
    may write. Returns why it could not be written, or None."""
    import tempfile  # only after a compile: its import (shutil, random) is a few ms of every start

    temp = folder = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = _open_folder(path.parent)
        info = os.fstat(folder)
        if not _private(info) and hasattr(os, "getuid") and info.st_uid == os.getuid():
            os.fchmod(folder, 0o700)  # our own kernels folder, made with a lax umask
        elif not _private(info):
            return f"{path.parent} is not a private folder of yours"
        fd, temp = tempfile.mkstemp(prefix=".kernels-", suffix=".tmp", dir=path.parent)  # mode 0600
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + json.dumps(header).encode() + b"\n" + code)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        temp = None
        _remove_stale_temporaries(path.parent)
    except OSError as e:
        return f"cannot write {path.parent}: {e.strerror or e}"
    finally:
        if folder is not None:
            os.close(folder)
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
    return None


def _remove_stale_temporaries(folder: Path, age: float = 3600.0) -> None:
    """Temporary files of writes killed midway (an hour old: no write takes that
    long). Entries for other keys stay: a home folder shared by machines of
    several CPU kinds holds one entry for each."""
    for temp in folder.glob(".kernels-*.tmp"):
        try:
            if time.time() - os.lstat(temp).st_mtime > age:
                temp.unlink()
        except OSError:
            pass


# --- compiling (numba) and loading (llvmlite) ------------------------------------------

# The entry points a helper process compiles while this one compiles the rest,
# on a machine with a second core: about half of numba's work each (measured
# alone, in seconds: max_pool 0.9, conv_chains 0.8, crop_linear 0.8,
# resize_linear 0.6, gemv_lanes 0.4, sums_double 0.4, nms 0.4; numba's first compile of
# a process costs a fixed 0.5 s on both sides, and the helper starts later).
COMPILE_SECONDS = 4  # what a first run says it will take (docs/performance.md: 3-4 s on 2 cores)
HELPER_SHARE = ("sums_double", "max_pool", "crop_linear", "nms")
_HELPER = ("import sys; sys.path.insert(0, sys.argv[1]); "
           "from mtcnn_cli.detector import native; native.helper_main(sys.argv[2:])")


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _numba_ir(names) -> dict:
    """{name: (symbol, LLVM IR)} of the entry points named, compiled by numba
    here (kernels.compile_entry_points over those names alone)."""
    from . import kernels  # numba: slow to import, and needed only when compiling

    every = kernels.ENTRY_POINTS
    kernels.ENTRY_POINTS = {name: every[name] for name in every if name in names}
    try:
        entries = kernels.compile_entry_points()
    finally:
        kernels.ENTRY_POINTS = every
    return {name: (entry.native_name, entry.inspect_llvm()) for name, entry in entries.items()}


def helper_main(names) -> None:
    """The helper process: compile the entry points named, write
    {name: [symbol, IR]} as JSON on stdout. A Ctrl-C meant for the program
    ends it at once, quietly (the parent compiles what it did not give)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    json.dump(_numba_ir(names), sys.stdout)


def _start_helper(names):
    """The helper process, or None when it cannot start."""
    import subprocess  # only to compile

    package_parent = str(Path(__file__).resolve().parent.parent.parent)
    try:
        return subprocess.Popen([sys.executable, "-c", _HELPER, package_parent, *names], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError:
        return None


HELPER_TIMEOUT_S = 600  # far beyond any compile: a helper stuck this long is given up


def _numba_bytecode_cached() -> bool:
    """Whether numba's modules have their bytecode cached (as an install
    leaves them); else the helper would compile them from source beside this
    process, twice the work: then numba is imported here before it starts."""
    import importlib.util  # only to compile

    spec = importlib.util.find_spec("numba")
    try:
        return spec is not None and os.path.exists(importlib.util.cache_from_source(spec.origin))
    except (TypeError, ValueError, NotImplementedError):
        return True


def _helper_ir(helper, names) -> dict:
    """What the helper compiled: its {name: (symbol, IR)}, or {} when it failed."""
    import subprocess  # only to compile

    try:  # its stderr read and dropped: when it fails, this process compiles its share
        out, _ = helper.communicate(timeout=HELPER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        helper.kill()
        helper.communicate()
        return {}
    if helper.returncode != 0:
        return {}
    try:
        found = json.loads(out)
        return {name: (str(found[name][0]), str(found[name][1])) for name in names}
    except (ValueError, KeyError, TypeError, IndexError):
        return {}


def _compile(llvm, cpu: str, features: str):
    """(header, object code) for this machine: numba compiles kernels.ENTRY_POINTS
    (a share of them in a helper process when a second core is there), the
    modules are linked into one and emitted as an object file."""
    helper = None
    if _usable_cpus() > 1:
        if not _numba_bytecode_cached() and not sys.dont_write_bytecode:
            from . import kernels  # noqa: F401 (numba imported first: its bytecode compiled once, for both)
        helper = _start_helper(HELPER_SHARE)
    try:
        ir = _numba_ir([name for name in _PROTOTYPES if helper is None or name not in HELPER_SHARE])
        if helper is not None:
            ir.update(_helper_ir(helper, HELPER_SHARE))
    finally:
        if helper is not None and helper.poll() is None:  # stopped here (Ctrl-C): the helper goes too
            helper.kill()
            helper.communicate()
    missing = [name for name in _PROTOTYPES if name not in ir]
    if missing:  # the helper failed: compile its share here
        ir.update(_numba_ir(missing))
    context = llvm.create_context()  # not LLVM's global one, which numba uses under its own lock
    module = None
    for name in _PROTOTYPES:
        part = llvm.parse_assembly(ir[name][1], context=context)
        if module is None:
            module = part
        else:
            module.link_in(part)
    module.verify()
    # the options numba's own JIT uses on this architecture
    x86 = llvm.Target.from_default_triple().name.startswith("x86")
    machine = llvm.Target.from_triple(module.triple).create_target_machine(
        cpu=cpu, features=features, opt=3, reloc="static" if x86 else "default",
        codemodel="jitdefault", jit=True)
    code = machine.emit_object(module)
    undefined = sorted({f.name for f in module.functions if f.is_declaration and not f.name.startswith("llvm.")}
                       | {g.name for g in module.global_variables if g.is_declaration})
    header = {"symbols": {name: ir[name][0] for name in _PROTOTYPES},
              "undefined": undefined, "size": len(code), "sha256": hashlib.sha256(code).hexdigest(),
              "cpu": cpu, "features": features}
    return header, code


def _resolve(llvm, names) -> None:
    """Give LLVM an address for every symbol the object code refers to and LLVM
    does not know: the C library's and Python's from this process; numba's
    runtime helpers (error reporting, reference counts) only appear on error
    paths the kernels never take, and are bound to abort() so that they could
    never run unnoticed."""
    process = ctypes.CDLL(None)
    abort = ctypes.cast(process.abort, ctypes.c_void_p).value
    for name in names:
        if llvm.address_of_symbol(name):
            continue
        try:
            address = ctypes.cast(getattr(process, name), ctypes.c_void_p).value
        except AttributeError:
            address = abort
        llvm.add_symbol(name, address)


def _load(llvm, cpu: str, features: str, header: dict, code: bytes):
    _resolve(llvm, header["undefined"])
    machine = llvm.Target.from_default_triple().create_target_machine(cpu=cpu, features=features)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly("", context=llvm.create_context()), machine)
    engine.add_object_file(llvm.ObjectFileRef.from_data(code))
    engine.finalize_object()
    functions = {}
    for name, argtypes in _PROTOTYPES.items():
        address = engine.get_function_address(header["symbols"][name])
        if not address:
            raise KernelError(f"the compiled kernels lack {name}")
        functions[name] = ctypes.CFUNCTYPE(None, *argtypes)(address)
    return engine, functions


def _process_symbol(name: str) -> int:
    """The address of a symbol of this process (the C library's, Python's), or
    abort()'s for one it lacks (numba's runtime helpers: see _resolve)."""
    process = ctypes.CDLL(None)
    try:
        return ctypes.cast(getattr(process, name), ctypes.c_void_p).value
    except AttributeError:
        return ctypes.cast(process.abort, ctypes.c_void_p).value


def _load_elf(header: dict, code: bytes):
    """(image, functions), placed by elfload without llvmlite. Raises
    elfload.Unloadable for an object it does not take."""
    image = elfload.load(code, _process_symbol)
    functions = {}
    for name, argtypes in _PROTOTYPES.items():
        address = image.address(header["symbols"][name])
        if not address:
            raise elfload.Unloadable(f"the compiled kernels lack {name}")
        functions[name] = ctypes.CFUNCTYPE(None, *argtypes)(address)
    return image, functions


def _load_any(llvm, header: dict, code: bytes):
    """(engine, functions, loader): by elfload where it takes the object, else
    by llvmlite (imported then). Raises what _load raises."""
    if elfload.supported():
        try:
            return (*_load_elf(header, code), "elf")
        except (elfload.Unloadable, KeyError, TypeError):
            pass
    llvm = llvm or _llvm()
    return (*_load(llvm, llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten(), header, code),
            "llvmlite")


def library(while_compiling=None) -> _Library:
    """The kernels, ready to call: loaded from the cache, else compiled (and
    cached). Once per process; the first call also runs the FMA self-check.
    while_compiling: a context manager factory entered around a compile (the
    command line says so on stderr)."""
    global _library
    if _library is not None:
        return _library
    with _lock:
        if _library is None:
            start = time.perf_counter()
            llvm, machine = None, cpuinfo_machine()
            if machine is None:
                llvm = _llvm()
                machine = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
            path = _cache_file(cache_key(*machine))
            entry = _read_entry(path) if path is not None else None
            source, problem, loaded = "cache", None, None
            if entry is not None:
                try:
                    loaded = _load_any(llvm, *entry)
                except (KernelError, KeyError, TypeError, ValueError, RuntimeError):
                    loaded = None  # a damaged header: compile again
            if loaded is None:
                llvm = llvm or _llvm()
                cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
                with (while_compiling or contextlib.nullcontext)():
                    entry, source = _compile(llvm, cpu, features), "compiled"
                problem = _write_entry(path, *entry) if path is not None else "MTCNN_CACHE_DIR is empty"
                loaded = _load_any(llvm, *entry)
            engine, functions, loader = loaded
            loaded = _Library(engine, functions, source, time.perf_counter() - start, problem, loader)
            _check_fma(loaded)
            _library = loaded
    return _library


def _check_fma(loaded: _Library) -> None:
    """Raise KernelError unless the compiled fma rounds once, in scalar and
    vector code alike: (1 + 2^-12)^2 - (1 + 2^-11) is 2^-24 fused, 0 unfused."""
    a = np.full(37, 1 + 2.0 ** -12, np.float32)
    c = np.full(37, -(1 + 2.0 ** -11), np.float32)
    out = np.zeros(37, np.float32)
    loaded.functions["fma_many"](a.ctypes.data, a.ctypes.data, c.ctypes.data, out.ctypes.data, 37)
    if not (out == np.float32(2.0 ** -24)).all():
        raise KernelError("this machine's compiled fused multiply-add does not round once: "
                          "the detector cannot reproduce OpenFace's arithmetic here")


def check_fma() -> None:
    """Make the kernels ready (see library) and check their FMA; raises KernelError."""
    library()


# --- the kernels, with their arguments checked ------------------------------------------

def _need(array: np.ndarray, dtype, ndim: int, what: str, written: bool = False) -> None:
    if (not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != ndim
            or not array.flags.c_contiguous or (written and not array.flags.writeable)):
        raise ValueError(f"{what}: need a C-contiguous {ndim}-D {np.dtype(dtype)} array, got "
                         f"{getattr(array, 'dtype', type(array))} {getattr(array, 'shape', '')}")


def _data(array: np.ndarray) -> int:
    """The address of the array's first element: through the buffer protocol
    when the array is writable, contiguous and not empty (0.3 us), else
    `.ctypes.data` (1 us: it builds a Python object each time)."""
    if array.flags.writeable and array.flags.c_contiguous and array.size:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    return array.ctypes.data


def _frozen(array: np.ndarray) -> np.ndarray:
    """A copy over immutable bytes, which nothing can make writable again: what
    was checked stays true."""
    array = np.ascontiguousarray(array)
    return np.frombuffer(array.tobytes(), array.dtype).reshape(array.shape)


class ConvWeights:
    """A convolution's weights as conv_chains takes them, checked once: matrix
    (K, O) float32, the im2col columns' weights in the C++'s order and the
    biases as the last row; slopes (O,) for a PReLU fused into the write, or
    none. The kernel reads them as `groups` (G, K, 4): outputs four by four,
    the last four padded with copies of the last output. Kept as read-only
    copies, with their addresses."""

    __slots__ = ("matrix", "slopes", "groups", "_addresses")

    def __init__(self, matrix: np.ndarray, slopes: np.ndarray | None = None):
        matrix = _frozen(np.asarray(matrix, np.float32))
        slopes = _frozen(np.zeros(0, np.float32) if slopes is None else np.asarray(slopes, np.float32))
        if matrix.ndim != 2 or 0 in matrix.shape or slopes.shape not in ((0,), (matrix.shape[1],)):
            raise ValueError(f"conv: weights {matrix.shape} with slopes {slopes.shape}")
        n_out = matrix.shape[1]
        columns = np.minimum(np.arange(-(-n_out // 4) * 4), n_out - 1).reshape(-1, 4)  # (G, 4)
        groups = _frozen(matrix[:, columns].transpose(1, 0, 2))  # (G, K, 4)
        self.matrix, self.slopes, self.groups = matrix, slopes, groups
        self._addresses = (groups.ctypes.data, slopes.ctypes.data)

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape


class ConvWindows:
    """Where a convolution's weight columns read and where its chains start,
    checked once: column k reads maps[k] * L + offsets[k] past a window's first
    input, L the length of a map (given with each call): offsets (K - 1,),
    its place in a map (ky*W + kx), maps (K - 1,) its map (c), all zero when
    not given (the offsets then count from the start of the inputs); blocks
    [0, ..., K], strictly increasing. Kept as read-only int64 copies, with
    their addresses."""

    __slots__ = ("offsets", "maps", "blocks", "_n_cols", "_reach", "_last_map", "_addresses")

    def __init__(self, offsets: np.ndarray, blocks: np.ndarray, maps: np.ndarray | None = None):
        offsets = _frozen(np.asarray(offsets, np.int64).reshape(-1))
        maps = _frozen(np.zeros(len(offsets), np.int64) if maps is None else np.asarray(maps, np.int64).reshape(-1))
        blocks = _frozen(np.asarray(blocks, np.int64).reshape(-1))
        n_cols = len(offsets) + 1
        if len(offsets) and (offsets.min() < 0 or maps.min() < 0):
            raise ValueError(f"conv: negative window offsets {offsets.min()} or maps {maps.min()}")
        if maps.shape != offsets.shape or (len(offsets) and max(offsets.max(), maps.max()) >= _SIZE_LIMIT):
            raise ValueError(f"conv: {maps.shape} maps for {offsets.shape} window offsets, or one too large")
        if len(blocks) < 2 or blocks[0] != 0 or blocks[-1] != n_cols or (np.diff(blocks) <= 0).any():
            raise ValueError(f"conv: blocks {blocks.tolist()} do not split {n_cols} columns")
        self.offsets, self.maps, self.blocks, self._n_cols = offsets, maps, blocks, n_cols
        self._reach = int(offsets.max()) if len(offsets) else 0
        self._last_map = int(maps.max()) if len(maps) else 0
        self._addresses = (offsets.ctypes.data, blocks.ctypes.data, maps.ctypes.data)

    @property
    def n_cols(self) -> int:
        return self._n_cols

    def reach(self, plane: int) -> int:
        """At least the farthest read past a window's first input, maps of
        `plane` values (exactly, when every map has the farthest offset)."""
        return self._last_map * plane + self._reach


_scratch = threading.local()


def _scratch_address(n_values: int) -> int:
    """A float32 buffer of at least n_values for this thread (reused)."""
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or buffer[0].size < n_values:
        array = np.empty(max(n_values, 1 << 14), np.float32)
        buffer = _scratch.buffer = (array, array.ctypes.data)
    return buffer[1]


def conv_chains(planes: np.ndarray, weights: ConvWeights, windows: ConvWindows, out: np.ndarray,
                runs: tuple[int, int] | None = None, plane: int = 0):
    """kernels.conv_chains (its docstring states the order): planes (C*L,)
    float32, L = plane; out (O, span) float32, its rows may be strided. runs
    (step, length): only the positions [n * step, n * step + length) are
    wanted (default all). Returns out."""
    if not (isinstance(planes, np.ndarray) and planes.dtype == np.float32 and planes.ndim == 1
            and planes.flags.c_contiguous):
        raise ValueError(f"conv planes: need a contiguous 1-D float32 array, got "
                         f"{getattr(planes, 'dtype', type(planes))} {getattr(planes, 'shape', '')}")
    n_cols, n_out = weights.matrix.shape
    if windows.n_cols != n_cols:
        raise ValueError(f"conv: windows of {windows.n_cols} columns for weights {weights.matrix.shape}")
    if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 2
            and out.shape[0] == n_out and out.strides[1] == 4 and out.strides[0] % 4 == 0
            and out.strides[0] >= 4 * out.shape[1] and out.flags.writeable):
        raise ValueError(f"conv out: need ({n_out}, span) float32 rows, got "
                         f"{getattr(out, 'dtype', type(out))} {getattr(out, 'shape', '')}")
    span = out.shape[1]
    if span == 0:
        return out
    plane = operator.index(plane)
    if plane < 0 or windows.reach(plane) + span > planes.size:
        raise ValueError(f"conv: windows reach past the {planes.size} inputs (span {span}, maps of {plane})")
    step, length = (span, span) if runs is None else (operator.index(v) for v in runs)
    if not 1 <= length <= step <= _SIZE_LIMIT:
        raise ValueError(f"conv: runs of {length} positions every {step}")
    if span < BLOCK:  # the kernel computes BLOCK positions at a time: pad the inputs, then copy out
        reach = windows.reach(plane)
        padded = np.zeros(reach + BLOCK, np.float32)
        padded[:reach + span] = planes[:reach + span]
        whole = np.empty((n_out, BLOCK), np.float32)
        conv_chains(padded, weights, windows, whole, plane=plane)
        out[:] = whole[:, :span]
        return out
    library().functions["conv_chains"](
        _data(planes), planes.size, weights._addresses[0], len(weights.groups), n_cols, n_out,
        windows._addresses[0], windows._addresses[1], len(windows.blocks), weights._addresses[1],
        len(weights.slopes), _data(out), out.strides[0] // 4, span, step, length,
        windows._addresses[2], plane, _scratch_address(4 * BLOCK + 2 * n_cols))
    return out


def gemv_lanes(x, weights, biases, out):
    """kernels.gemv_lanes: x (N, F), weights (F, O) with F a multiple of 16,
    biases (O,), out (N, O), all float32. Returns out."""
    for array, ndim, what in ((x, 2, "fc input"), (weights, 2, "fc weights"), (biases, 1, "fc biases")):
        _need(array, np.float32, ndim, what)
    _need(out, np.float32, 2, "fc out", written=True)
    n_rows, n_in = x.shape
    n_out = weights.shape[1]
    if weights.shape[0] != n_in or n_in % LANES or biases.shape != (n_out,) or out.shape != (n_rows, n_out):
        raise ValueError(f"fc: input {x.shape}, weights {weights.shape}, biases {biases.shape}, out {out.shape}")
    if n_rows and n_out:
        lanes = np.empty((LANES, n_out), np.float32)
        library().functions["gemv_lanes"](_data(x), n_rows, n_in, _data(weights), n_out,
                                          _data(biases), _data(out), _data(lanes))
    return out


def sums_double(columns, weights, out):
    """kernels.sums_double: columns (F, P) float32, weights (F, O) float64,
    out (O, P) float64. Returns out."""
    _need(columns, np.float32, 2, "double sums columns")
    _need(weights, np.float64, 2, "double sums weights")
    _need(out, np.float64, 2, "double sums out", written=True)
    n_in, n_items = columns.shape
    n_out = weights.shape[1]
    if weights.shape[0] != n_in or out.shape != (n_out, n_items):
        raise ValueError(f"double sums: columns {columns.shape}, weights {weights.shape}, out {out.shape}")
    if n_out and n_items:
        library().functions["sums_double"](_data(columns), n_in, n_items, _data(weights),
                                           n_out, _data(out))
    return out


def max_pool(maps, kx: int, ky: int, sx: int, sy: int, oh: int, ow: int):
    """kernels.max_pool: maps (C, N, H, W) float32, rows contiguous, any other
    strides (e.g. the valid part of a convolution's output); every window must
    start inside the maps. Returns (C, N, oh, ow)."""
    if not (isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.ndim == 4):
        raise ValueError(f"max_pool: need (C, N, H, W) float32 maps, got {getattr(maps, 'shape', maps)}")
    kx, ky, sx, sy, oh, ow = (operator.index(v) for v in (kx, ky, sx, sy, oh, ow))
    if not all(1 <= v <= _SIZE_LIMIT for v in (kx, ky, sx, sy, oh, ow)):
        raise ValueError(f"max_pool: window {kx}x{ky}, stride {sx}x{sy}, output {oh}x{ow}: "
                         f"each must be 1 to {_SIZE_LIMIT}")
    c, n, h, w = maps.shape
    steps = [s // 4 for s in maps.strides]
    if (maps.strides[3] != 4 or any(s % 4 or s < 0 for s in maps.strides) or min(kx, ky, sx, sy) < 1
            or oh < 1 or ow < 1 or (oh - 1) * sy >= h or (ow - 1) * sx >= w):
        raise ValueError(f"max_pool: maps {maps.shape} (strides {maps.strides}) do not fit "
                         f"{oh}x{ow} windows of {kx}x{ky}, stride {sx}x{sy}")
    out = np.empty((c, n, oh, ow), np.float32)
    if out.size:
        # the values from the first to one past the last, as the kernel indexes them
        n_values = (c - 1) * steps[0] + (n - 1) * steps[1] + (h - 1) * steps[2] + w
        line = np.empty(w, np.float32)
        library().functions["max_pool"](_data(maps), n_values, steps[0], steps[1], steps[2], h, w,
                                        kx, ky, sx, sy, _data(out), c, n, oh, ow, _data(line))
    return out


def nms(rects: np.ndarray, order: np.ndarray, threshold, minimum: bool) -> np.ndarray:
    """kernels.nms: rects (N, 4) int64, order (N,) int64 (each index once),
    threshold a float32. Returns the kept indices, in the order kept."""
    _need(rects, np.int64, 2, "nms rects")
    _need(order, np.int64, 1, "nms order")
    n = len(order)
    if rects.shape != (n, 4) or (n and (order.min() < 0 or order.max() >= n)):
        raise ValueError(f"nms: rects {rects.shape} with an order of {n} indices in [{order.min(initial=0)}, "
                         f"{order.max(initial=0)}]")
    if not n:
        return np.zeros(0, np.int64)
    scratch = np.empty(2 * n + 1, np.int64)  # dropped (n), kept (n), how many kept
    address = _data(scratch)
    threshold = np.full(1, threshold, np.float32)
    library().functions["nms"](_data(rects), n, _data(order), _data(threshold),
                               int(bool(minimum)), address, address + 8 * n, address + 16 * n)
    return scratch[n:n + int(scratch[2 * n])].copy()


def crop_linear(pixels, boxes, rows0, rows1, wrow0, wrow1, cols0, cols1, wcol0, wcol1):
    """kernels.crop_linear: pixels (H, W, 3) float32, boxes (N, 4) int64, the
    taps (N, size): rows and columns int64, weights float32. Returns
    (N, size, size, 3) float32. Any box and tap is safe: the kernel reads
    only pixels inside the image."""
    _need(pixels, np.float32, 3, "crop image")
    _need(boxes, np.int64, 2, "crop boxes")
    height, width, channels = pixels.shape
    n_boxes, size = rows0.shape
    for array, dtype in ((rows0, np.int64), (rows1, np.int64), (cols0, np.int64), (cols1, np.int64),
                         (wrow0, np.float32), (wrow1, np.float32), (wcol0, np.float32), (wcol1, np.float32)):
        _need(array, dtype, 2, "crop taps")
        if array.shape != (n_boxes, size):
            raise ValueError(f"crop taps: {array.shape} for {n_boxes} boxes of size {size}")
    if channels != 3 or boxes.shape != (n_boxes, 4):
        raise ValueError(f"crops: image {pixels.shape}, boxes {boxes.shape}, taps {rows0.shape}")
    if any(a.size and (a.min() < -_PLACE_LIMIT or a.max() > _PLACE_LIMIT)
           for a in (boxes, rows0, rows1, cols0, cols1)):
        raise ValueError(f"crops: a box or tap lies beyond {_PLACE_LIMIT} pixels")
    out = np.empty((n_boxes, size, size, 3), np.float32)
    if out.size:
        library().functions["crop_linear"](
            _data(pixels), height, width, _data(boxes), n_boxes, size,
            _data(rows0), _data(rows1), _data(wrow0), _data(wrow1),
            _data(cols0), _data(cols1), _data(wcol0), _data(wcol1), _data(out))
    return out


class ResizeTaps:
    """The taps of one resize, as resize_linear takes them, checked once: per
    output value of a row (channels interleaved) the source values cols0,
    cols1 (int64), weights wcol0, wcol1 (float32) and copy (int64, nonzero:
    taken as it is); per output row the source rows rows0, rows1 (int64) and
    weights wrow0, wrow1 (float32). Kept as read-only copies, four arrays
    (shared by the resizes made together by `many`)."""

    __slots__ = ("columns", "column_weights", "rows", "row_weights", "reach", "height", "_addresses")

    def __init__(self, cols0, cols1, wcol0, wcol1, copy, rows0, rows1, wrow0, wrow1):
        (one,) = ResizeTaps.many((cols0, cols1, wcol0, wcol1, copy), (rows0, rows1, wrow0, wrow1),
                                 [len(cols0)], [len(rows0)])
        for name in self.__slots__:
            setattr(self, name, getattr(one, name))

    @classmethod
    def many(cls, columns, rows, col_ends, row_ends) -> list:
        """Several resizes' taps at once: columns (cols0, cols1, wcol0, wcol1,
        copy) and rows (rows0, rows1, wrow0, wrow1) of all of them end to end,
        resize i taking the columns [col_ends[i - 1], col_ends[i]) and the rows
        [row_ends[i - 1], row_ends[i]) (from 0 for the first)."""
        return _resize_taps(columns, rows, col_ends, row_ends)

    @property
    def shape(self) -> tuple[int, int]:
        """(output rows, output values per row)."""
        return self.rows.shape[1], self.columns.shape[1]


def _resize_taps(columns_in, rows_in, col_ends, row_ends) -> list:
    """ResizeTaps.many: checked and frozen once, then cut at col_ends and row_ends."""
    col_ends, row_ends = [operator.index(v) for v in col_ends], [operator.index(v) for v in row_ends]
    n_cols, n_rows = len(columns_in[0]), len(rows_in[0])
    if (len(col_ends) != len(row_ends) or col_ends != sorted(col_ends) or row_ends != sorted(row_ends)
            or min(col_ends + row_ends, default=0) < 0 or col_ends[-1:] not in ([], [n_cols])
            or row_ends[-1:] not in ([], [n_rows])):
        raise ValueError(f"resize taps: {n_cols} columns and {n_rows} rows cut at {col_ends} and {row_ends}")
    columns, rows = np.empty((3, n_cols), np.int64), np.empty((2, n_rows), np.int64)
    column_weights, row_weights = np.empty((2, n_cols), np.float32), np.empty((2, n_rows), np.float32)
    cols0, cols1, wcol0, wcol1, copy = columns_in
    rows0, rows1, wrow0, wrow1 = rows_in
    try:  # each a sequence of its length (numpy casts and checks)
        columns[0], columns[1], columns[2], column_weights[0], column_weights[1] = cols0, cols1, copy, wcol0, wcol1
        rows[0], rows[1], row_weights[0], row_weights[1] = rows0, rows1, wrow0, wrow1
    except ValueError as e:
        raise ValueError(f"resize taps: {n_cols} columns and {n_rows} rows do not fit: {e}") from None
    low = min((int(a.min()) for a in (columns[:2], rows) if a.size), default=0)
    if low < 0 or max(int(columns[:2].max(initial=-1)), int(rows.max(initial=-1))) >= _SIZE_LIMIT:
        raise ValueError(f"resize taps: an index out of range ({low} .. "
                         f"{max(int(columns[:2].max(initial=-1)), int(rows.max(initial=-1)))})")
    furthest = np.maximum(columns[0], columns[1])
    columns, column_weights, rows, row_weights = map(_frozen, (columns, column_weights, rows, row_weights))
    c, cw, r, rw = (a.ctypes.data for a in (columns, column_weights, rows, row_weights))
    col_starts, row_starts = [0] + col_ends[:-1], [0] + row_ends[:-1]
    if all(a < b for a, b in zip(col_starts + row_starts, col_ends + row_ends)):  # no resize is empty
        reaches = (np.maximum.reduceat(furthest, col_starts) + 1).tolist()  # values of a source row needed
        heights = (np.maximum.reduceat(np.maximum(rows[0], rows[1]), row_starts) + 1).tolist()  # rows needed
    else:
        reaches = [int(furthest[a:b].max(initial=-1)) + 1 for a, b in zip(col_starts, col_ends)]
        heights = [int(rows[:, a:b].max(initial=-1)) + 1 for a, b in zip(row_starts, row_ends)]
    made = []
    for c0, c1, r0, r1, reach, height in zip(col_starts, col_ends, row_starts, row_ends, reaches, heights):
        taps = ResizeTaps.__new__(ResizeTaps)
        taps.columns, taps.column_weights = columns[:, c0:c1], column_weights[:, c0:c1]
        taps.rows, taps.row_weights = rows[:, r0:r1], row_weights[:, r0:r1]
        taps.reach, taps.height = reach, height
        taps._addresses = (c + 8 * c0, c + 8 * (n_cols + c0), cw + 4 * c0, cw + 4 * (n_cols + c0),
                           c + 8 * (2 * n_cols + c0), r + 8 * r0, r + 8 * (n_rows + r0), rw + 4 * r0,
                           rw + 4 * (n_rows + r0))
        made.append(taps)
    return made


def resize_linear(src: np.ndarray, taps: ResizeTaps, out: np.ndarray) -> np.ndarray:
    """kernels.resize_linear: src (H, V) float32 source rows, contiguous; out
    (rows, values) float32, its rows may be strided (a place in a mosaic).
    Returns out."""
    _need(src, np.float32, 2, "resize source")
    n_rows, n_cols = taps.shape
    if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 2
            and out.shape == (n_rows, n_cols) and out.strides[1] == 4 and out.strides[0] % 4 == 0
            and out.strides[0] >= 4 * n_cols and out.flags.writeable):
        raise ValueError(f"resize out: need ({n_rows}, {n_cols}) float32 rows, got "
                         f"{getattr(out, 'dtype', type(out))} {getattr(out, 'shape', '')}")
    if taps.reach > src.shape[1] or taps.height > src.shape[0]:
        raise ValueError(f"resize: taps reach {taps.height} rows x {taps.reach} values of a {src.shape} source")
    if n_rows and n_cols:
        lines = np.empty(2 * n_cols, np.float32)  # kept alive through the call
        lines_at = _data(lines)
        a = taps._addresses
        library().functions["resize_linear"](
            _data(src), src.size, src.shape[1], *a[:5], n_cols, *a[5:], n_rows,
            _data(out), (n_rows - 1) * (out.strides[0] // 4) + n_cols, out.strides[0] // 4,
            lines_at, lines_at + 4 * n_cols)
    return out
