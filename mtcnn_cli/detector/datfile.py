"""OpenFace's binary CNN model format (`.dat`) and `MTCNN_detector.txt`.

One cohesive thing over 500 lines: the reader of one file format, every
field's bounds checked where it is read; split, the checks would drift from
the fields they guard.

A network file is `int32 depth` followed by `depth` layers, each introduced by an
`int32` type code (little-endian throughout). Matrices are `int32 rows, cols,
opencv_type` followed by row-major data; only CV_32F (type 5) occurs.

The reader trusts nothing in a file: every count is checked against its limit
and against the bytes left *before* anything is allocated, every matrix type
and shape is checked, and any fault raises ModelError naming the file, the
byte offset and the problem. An accepted file is written back byte for byte
by `network_to_bytes`.

This module only describes and (de)serialises networks; it computes nothing.
"""
from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base.atomic import OutputError, write_bytes

CONV, MAX_POOL, FULLY_CONNECTED, PRELU, SIGMOID = 0, 1, 2, 3, 4
CV_32F = 5

LAYER_NAMES = {CONV: "convolution", MAX_POOL: "max pooling", FULLY_CONNECTED: "fully connected",
               PRELU: "PReLU", SIGMOID: "sigmoid"}

# OpenCV's element depths, for naming a matrix type we do not support
_CV_DEPTHS = ("CV_8U", "CV_8S", "CV_16U", "CV_16S", "CV_32S", "CV_32F", "CV_64F", "CV_16F")

# Limits far above any MTCNN network (ONet: 14 layers, 128 maps, 1152x256 FC),
# far below what would make a reader allocate or loop absurdly.
MAX_DEPTH = 1000
MAX_MAPS = 65536            # input/output maps of a convolution, PReLU channels
MAX_KERNEL = 4096           # side of a convolution or pooling kernel, pooling stride
MAX_MATRIX_SIDE = 1 << 24   # rows or columns of any matrix
MAX_FILE_BYTES = 1 << 28    # 256 MiB; ONet.dat is 1.7 MB
MAX_LIST_BYTES = 1 << 16    # MTCNN_detector.txt

_INT32 = struct.Struct("<i")
_MATRIX_HEADER = struct.Struct("<iii")
_FLOAT = np.dtype("<f4")

# the three networks of a detector list, in OpenFace's order
NETWORK_NAMES = ("PNet", "RNet", "ONet")


class ModelError(Exception):
    """A model file or folder that cannot be used. The message names the file,
    the byte offset where relevant, and the problem."""


@dataclass(frozen=True, eq=False)
class Conv:
    """kernels: float32 (n_in, n_out, kh, kw), stored kernel [i][o] as a kh x kw
    matrix; biases: float32 (n_out,)."""
    kernels: np.ndarray
    biases: np.ndarray


@dataclass(frozen=True)
class MaxPool:
    kernel_x: int
    kernel_y: int
    stride_x: int
    stride_y: int


@dataclass(frozen=True, eq=False)
class FullyConnected:
    """biases: float32 (n_out, 1) matrix; weights: float32 (n_in, n_out) matrix,
    both exactly as stored in the file."""
    biases: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True, eq=False)
class PReLU:
    """slopes: float32 (channels, 1) matrix as stored."""
    slopes: np.ndarray


@dataclass(frozen=True)
class Sigmoid:
    pass


Layer = Conv | MaxPool | FullyConnected | PReLU | Sigmoid


def describe_layer(layer: Layer) -> str:
    """One line naming the layer and its sizes, e.g. 'convolution 3 -> 10, 3x3'."""
    if isinstance(layer, Conv):
        n_in, n_out, kh, kw = layer.kernels.shape
        return f"convolution {n_in} -> {n_out}, {kh}x{kw}"
    if isinstance(layer, MaxPool):
        return (f"max pooling {layer.kernel_x}x{layer.kernel_y}, "
                f"stride {layer.stride_x}x{layer.stride_y}")
    if isinstance(layer, FullyConnected):
        n_in, n_out = layer.weights.shape
        return f"fully connected {n_in} -> {n_out}"
    if isinstance(layer, PReLU):
        return f"PReLU {layer.slopes.shape[0]} channels"
    return "sigmoid"


# --- reading ----------------------------------------------------------------------------

def _matrix_type_name(cv_type: int) -> str:
    if 0 <= cv_type < 512:
        depth, channels = cv_type & 7, (cv_type >> 3) + 1
        return f"{cv_type} ({_CV_DEPTHS[depth]}" + (f"C{channels})" if channels > 1 else ")")
    return str(cv_type)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class _Cursor:
    """Reads a network file front to back. Each read is checked against the bytes
    left; `where` names the part being read, for messages."""

    def __init__(self, data: bytes, source: str):
        self.data = data
        self.source = source
        self.pos = 0
        self.where = ""

    def left(self) -> int:
        return len(self.data) - self.pos

    def error(self, problem: str, at: int | None = None) -> ModelError:
        where = f"{self.where}: " if self.where else ""
        return ModelError(f"{self.source}: at byte {self.pos if at is None else at}: {where}{problem}")

    def require(self, size: int, what: str) -> None:
        """Fail unless `size` bytes are left (called before allocating them)."""
        if size > self.left():
            raise self.error(f"file ends inside {what}: needs {_plural(size, 'byte')}, "
                             f"{self.left()} left")

    def int32(self, what: str) -> int:
        self.require(4, what)
        (value,) = _INT32.unpack_from(self.data, self.pos)
        self.pos += 4
        return value

    def count(self, what: str, limit: int) -> int:
        """An int32 that must be in 1..limit."""
        at = self.pos
        value = self.int32(what)
        if value <= 0:
            raise self.error(f"{what} is {value}, must be positive", at)
        if value > limit:
            raise self.error(f"{what} is {value}, more than the limit of {limit}", at)
        return value

    def floats(self, count: int, what: str) -> np.ndarray:
        """count float32 values -> float32 (count,), a copy."""
        self.require(4 * count, what)
        values = np.frombuffer(self.data, _FLOAT, count, self.pos).astype(np.float32)
        self.pos += 4 * count
        return values

    def matrix_header(self, what: str) -> tuple[int, int]:
        """(rows, cols) of a CV_32F matrix whose data must fit in the file."""
        at = self.pos
        self.require(_MATRIX_HEADER.size, f"the header of {what}")
        rows, cols, cv_type = _MATRIX_HEADER.unpack_from(self.data, self.pos)
        for name, side in (("rows", rows), ("columns", cols)):
            if side <= 0:
                raise self.error(f"{what} has {side} {name}, must be positive", at)
            if side > MAX_MATRIX_SIDE:
                raise self.error(f"{what} has {side} {name}, more than the limit of "
                                 f"{MAX_MATRIX_SIDE}", at)
        if cv_type != CV_32F:
            raise self.error(f"{what} has matrix type {_matrix_type_name(cv_type)}, "
                             f"only {CV_32F} (CV_32F) is supported", at)
        self.pos += _MATRIX_HEADER.size
        self.require(4 * rows * cols, f"the data of {what} ({rows}x{cols} floats)")
        return rows, cols

    def matrix(self, what: str) -> np.ndarray:
        """A CV_32F matrix -> float32 (rows, cols)."""
        rows, cols = self.matrix_header(what)
        return self.floats(rows * cols, what).reshape(rows, cols)

    def column(self, what: str) -> np.ndarray:
        """A CV_32F matrix of one column -> float32 (rows, 1)."""
        at = self.pos
        matrix = self.matrix(what)
        if matrix.shape[1] != 1:
            raise self.error(f"{what} is {matrix.shape[0]}x{matrix.shape[1]}, must be one column", at)
        return matrix


class _Channels:
    """What the reader knows of the maps flowing between layers, to catch layers
    that cannot follow each other whatever the input size. The full check, with
    map sizes, is the models module's validate_mtcnn."""

    def __init__(self):
        self.count: int | None = None   # maps (or column rows) the next layer gets
        self.after_fc = False           # a flattening FC leaves a single column

    def conv(self, cur: _Cursor, n_in: int, n_out: int, at: int) -> None:
        if self.count is not None:
            fits = n_in == self.count or (self.after_fc and n_in == 1)
            if not fits:
                raise cur.error(f"takes {_plural(n_in, 'input map')}, but the layer before "
                                f"gives {self.count}", at)
        self.count, self.after_fc = n_out, False

    def fully_connected(self, cur: _Cursor, n_in: int, n_out: int, at: int) -> None:
        # per pixel when n_in equals the maps, else over the flattened maps (a multiple)
        if self.count is not None:
            fits = n_in % self.count == 0 or (self.after_fc and n_in == 1)
            if not fits:
                raise cur.error(f"takes {_plural(n_in, 'input')}, which does not fit the "
                                f"{self.count} maps of the layer before (neither equal nor "
                                f"a multiple)", at)
        self.count, self.after_fc = n_out, True

    def prelu(self, cur: _Cursor, channels: int, at: int) -> None:
        if self.count is not None and channels != self.count:
            raise cur.error(f"has {_plural(channels, 'slope')}, but the layer before gives "
                            f"{self.count} maps", at)


def _read_conv(cur: _Cursor, chain: _Channels) -> Conv:
    at = cur.pos
    n_in = cur.count("the number of input maps", MAX_MAPS)
    n_out = cur.count("the number of output maps", MAX_MAPS)
    n_kernels = n_in * n_out
    smallest = _MATRIX_HEADER.size + 4  # a 1x1 kernel
    cur.require(4 * n_out + n_kernels * smallest,
                f"{n_out} {'bias' if n_out == 1 else 'biases'} and {n_in}x{n_out} kernels")
    chain.conv(cur, n_in, n_out, at)
    biases = cur.floats(n_out, "the biases")                     # (n_out,)
    start = cur.pos
    kh, kw = cur.matrix_header("kernel [0][0]")
    if kh > MAX_KERNEL or kw > MAX_KERNEL:
        raise cur.error(f"kernel [0][0] is {kh}x{kw}, more than the limit of "
                        f"{MAX_KERNEL}x{MAX_KERNEL}", start)
    cur.pos = start
    record = _MATRIX_HEADER.size + 4 * kh * kw
    # every kernel is a header then kh*kw floats: view the ones the file holds as
    # records, find the first whose header differs, then insist on all of them
    complete = min(n_kernels, cur.left() // record)
    layout = np.dtype([("header", "<i4", (3,)), ("values", _FLOAT, (kh, kw))])
    records = np.frombuffer(cur.data, layout, complete, start)
    odd = np.flatnonzero(np.any(records["header"] != (kh, kw, CV_32F), axis=1))
    if odd.size:
        _odd_kernel(cur, int(odd[0]), n_out, start + int(odd[0]) * record, kh, kw)
    cur.require(n_kernels * record,
                f"the kernels ({n_in}x{n_out} matrices of {kh}x{kw} floats)")
    kernels = records["values"].astype(np.float32).reshape(n_in, n_out, kh, kw)
    cur.pos = start + n_kernels * record
    return Conv(kernels, biases)


def _odd_kernel(cur: _Cursor, index: int, n_out: int, at: int, kh: int, kw: int):
    """Raise for kernel `index` whose header differs from kernel [0][0]'s."""
    i, o = divmod(index, n_out)
    name = f"kernel [{i}][{o}]"
    cur.pos = at
    rows, cols = cur.matrix_header(name)  # raises for a bad type or size
    raise cur.error(f"{name} is {rows}x{cols}, but kernel [0][0] is {kh}x{kw}: "
                    f"the kernels of a layer must all have one size", at)


def _read_max_pool(cur: _Cursor) -> MaxPool:
    kernel_x = cur.count("the kernel width", MAX_KERNEL)
    kernel_y = cur.count("the kernel height", MAX_KERNEL)
    stride_x = cur.count("the horizontal stride", MAX_KERNEL)
    stride_y = cur.count("the vertical stride", MAX_KERNEL)
    return MaxPool(kernel_x, kernel_y, stride_x, stride_y)


def _read_fully_connected(cur: _Cursor, chain: _Channels) -> FullyConnected:
    biases = cur.column("the bias matrix")                       # (n_out, 1)
    at_weights = cur.pos
    weights = cur.matrix("the weight matrix")                    # (n_in, n_out)
    if weights.shape[1] != biases.shape[0]:
        raise cur.error(f"the weight matrix is {weights.shape[0]}x{weights.shape[1]}, "
                        f"but there are {biases.shape[0]} biases: it needs one column "
                        f"per output", at_weights)
    chain.fully_connected(cur, weights.shape[0], weights.shape[1], at_weights)
    return FullyConnected(biases, weights)


def _read_prelu(cur: _Cursor, chain: _Channels) -> PReLU:
    at = cur.pos
    slopes = cur.column("the slope matrix")                      # (channels, 1)
    if slopes.shape[0] > MAX_MAPS:
        raise cur.error(f"the slope matrix has {slopes.shape[0]} rows, more than the "
                        f"limit of {MAX_MAPS} channels", at)
    chain.prelu(cur, slopes.shape[0], at)
    return PReLU(slopes)


def parse_network(data: bytes, source: str) -> tuple[Layer, ...]:
    """The layers of a network file's bytes. `source` names the file in messages.
    Raises ModelError for any fault."""
    data = bytes(data)
    cur = _Cursor(data, source)
    cur.where = "network header"
    depth = cur.count("the number of layers", MAX_DEPTH)
    cur.require(4 * depth, f"{depth} layers")
    chain = _Channels()
    layers: list[Layer] = []
    for index in range(1, depth + 1):
        cur.where = f"layer {index} of {depth}"
        at = cur.pos
        kind = cur.int32("the layer type")
        if kind not in LAYER_NAMES:
            raise cur.error(f"unknown layer type {kind} (known: 0 convolution, 1 max pooling, "
                            f"2 fully connected, 3 PReLU, 4 sigmoid)", at)
        cur.where += f" ({LAYER_NAMES[kind]})"
        if kind == CONV:
            layers.append(_read_conv(cur, chain))
        elif kind == MAX_POOL:
            layers.append(_read_max_pool(cur))
        elif kind == FULLY_CONNECTED:
            layers.append(_read_fully_connected(cur, chain))
        elif kind == PRELU:
            layers.append(_read_prelu(cur, chain))
        else:
            layers.append(Sigmoid())
    cur.where = ""
    if cur.left():
        raise cur.error(f"{_plural(cur.left(), 'trailing byte')} after the last of the "
                        f"{depth} layers")
    return tuple(layers)


def _read_bytes(path: Path, limit: int, kind: str) -> bytes:
    """The bytes of a file of `kind` (e.g. "network file"), at most `limit` of
    them. Only a regular file is read: it is opened non-blocking (a FIFO
    cannot hang the open), checked after opening (a link to /dev/zero or a
    FIFO is refused at once), and at most limit + 1 bytes are read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError:
        raise ModelError(f"{path}: is a folder, not a {kind}") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read the {kind}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ModelError(f"{path}: is a folder, not a {kind}")
        if not stat.S_ISREG(info.st_mode):
            raise ModelError(f"{path}: not a regular file (a device, FIFO or socket), not a {kind}")
        if info.st_size > limit:
            raise ModelError(f"{path}: {info.st_size} bytes, more than any {kind} (limit {limit})")
        parts, size = [], 0
        while size <= limit:
            # the whole file in one read (one buffer, not 1 MiB ones joined: fresh memory
            # costs its page faults, 1.3 ms of the 1.7 MB ONet), then 1 MiB at a time if it grew
            chunk = os.read(fd, min(info.st_size + 1 if not parts else 1 << 20, limit + 1 - size))
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while being read
            raise ModelError(f"{path}: more than {limit} bytes, more than any {kind}")
        return b"".join(parts)
    except OSError as e:
        raise ModelError(f"{path}: cannot read the {kind}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def read_network_bytes(path) -> bytes:
    """A network file's bytes, refusing folders and files above MAX_FILE_BYTES."""
    return _read_bytes(Path(path), MAX_FILE_BYTES, "network file")


def read_network(path) -> tuple[Layer, ...]:
    """The layers of a `.dat` network file. Raises ModelError."""
    return parse_network(read_network_bytes(path), str(path))


# --- writing ----------------------------------------------------------------------------

def _float_matrix(array, what: str, columns: int | None = None) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim != 2 or a.shape[0] <= 0 or a.shape[1] <= 0 or (columns and a.shape[1] != columns):
        want = f"a (n, {columns}) matrix" if columns else "a non-empty 2-D matrix"
        raise ModelError(f"cannot write {what}: needs {want}, got shape {a.shape}")
    return a


def _matrix_bytes(matrix: np.ndarray) -> bytes:
    rows, cols = matrix.shape
    return _MATRIX_HEADER.pack(rows, cols, CV_32F) + matrix.astype(_FLOAT).tobytes()


def _conv_bytes(layer: Conv) -> bytes:
    kernels, biases = np.asarray(layer.kernels), np.asarray(layer.biases)
    if kernels.ndim != 4 or 0 in kernels.shape or biases.shape != kernels.shape[1:2]:
        raise ModelError(f"cannot write a convolution with kernels {kernels.shape} and "
                         f"biases {biases.shape}: needs (n_in, n_out, kh, kw) and (n_out,)")
    n_in, n_out, kh, kw = kernels.shape
    layout = np.dtype([("header", "<i4", (3,)), ("values", _FLOAT, (kh, kw))])
    records = np.empty(n_in * n_out, layout)
    records["header"] = (kh, kw, CV_32F)
    records["values"] = kernels.reshape(n_in * n_out, kh, kw)
    return (struct.pack("<iii", CONV, n_in, n_out) + biases.astype(_FLOAT).tobytes()
            + records.tobytes())


def layer_to_bytes(layer: Layer) -> bytes:
    """One layer as stored in a network file, type code first."""
    if isinstance(layer, Conv):
        return _conv_bytes(layer)
    if isinstance(layer, MaxPool):
        return struct.pack("<5i", MAX_POOL, layer.kernel_x, layer.kernel_y,
                           layer.stride_x, layer.stride_y)
    if isinstance(layer, FullyConnected):
        biases = _float_matrix(layer.biases, "fully connected biases", 1)
        weights = _float_matrix(layer.weights, "fully connected weights", biases.shape[0])
        return _INT32.pack(FULLY_CONNECTED) + _matrix_bytes(biases) + _matrix_bytes(weights)
    if isinstance(layer, PReLU):
        return _INT32.pack(PRELU) + _matrix_bytes(_float_matrix(layer.slopes, "PReLU slopes", 1))
    if isinstance(layer, Sigmoid):
        return _INT32.pack(SIGMOID)
    raise ModelError(f"cannot write {layer!r}: not a layer")


def network_to_bytes(layers) -> bytes:
    """A network file's bytes: the inverse of parse_network."""
    layers = tuple(layers)
    if not layers:
        raise ModelError("cannot write a network without layers")
    return _INT32.pack(len(layers)) + b"".join(layer_to_bytes(layer) for layer in layers)


def write_model_file(path, data: bytes) -> None:
    """Replace `path` with `data` (mtcnn_cli.base.atomic: a temporary file in
    the same folder, then os.replace). Raises ModelError."""
    try:
        write_bytes(path, data)
    except OutputError as e:
        raise ModelError(str(e)) from None


def write_network(layers, path) -> None:
    """Write a `.dat` network file atomically. Raises ModelError."""
    write_model_file(path, network_to_bytes(layers))


# --- MTCNN_detector.txt -----------------------------------------------------------------

def parse_detector_list(text: bytes, path: Path) -> dict[str, Path]:
    """`NAME FILE` lines -> {NAME: path of FILE, relative to the list's folder}."""
    try:
        lines = text.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ModelError(f"{path}: at byte {e.start}: not UTF-8 text") from None
    entries: dict[str, Path] = {}
    for number, line in enumerate(lines, 1):
        fields = line.rstrip("\r").split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ModelError(f"{path}: line {number}: expected 'NAME FILE' (e.g. "
                             f"'PNet PNet.dat'), got {line.strip()!r}")
        name, file = fields
        if name not in NETWORK_NAMES:
            raise ModelError(f"{path}: line {number}: unknown network {name!r} "
                             f"(known: {', '.join(NETWORK_NAMES)})")
        if name in entries:
            raise ModelError(f"{path}: line {number}: {name} is listed twice")
        entries[name] = path.parent / file
    return entries


def read_detector_list(path) -> dict[str, Path]:
    """The networks an `MTCNN_detector.txt` names: {"PNet": .../PNet.dat, ...},
    paths relative to the list's folder (a trailing \\r is tolerated)."""
    path = Path(path)
    return parse_detector_list(_read_bytes(path, MAX_LIST_BYTES, "detector list"), path)


def detector_list_text(files: dict[str, str]) -> str:
    """{"PNet": "PNet.dat", ...} -> the list's text, one `NAME FILE` line each."""
    for name, file in files.items():
        if name not in NETWORK_NAMES or not str(file) or any(c.isspace() for c in str(file)):
            raise ModelError(f"cannot list network {name!r} in file {str(file)!r}: names are "
                             f"{', '.join(NETWORK_NAMES)}, files a path without spaces")
    return "".join(f"{name} {file}\n" for name, file in files.items())


def write_detector_list(path, files: dict[str, str] | None = None) -> None:
    """Write `MTCNN_detector.txt` atomically; files defaults to OpenFace's
    {"PNet": "PNet.dat", "RNet": "RNet.dat", "ONet": "ONet.dat"}."""
    if files is None:
        files = {name: f"{name}.dat" for name in NETWORK_NAMES}
    text = detector_list_text({name: os.fspath(file) for name, file in files.items()})
    write_model_file(path, text.encode("utf-8"))
