"""The three MTCNN networks: where they come from, and whether they fit MTCNN.

One cohesive thing over 500 lines: every source of the networks (a folder,
$MTCNN_MODELS, the bundled weights and their cache) ends in the same checks,
which belong beside them.

Two sources:
- a model folder in OpenFace's layout (`MTCNN_detector.txt` naming `PNet.dat`,
  `RNet.dat`, `ONet.dat`), given as DIR or $MTCNN_MODELS, or a checkout or
  install of OpenFace that holds one; read only through our `.dat` parser;
- by default, the weights shipped by the MIT-licensed `mtcnn` package (the
  same float32 values as OpenFace's files, in another layout), rebuilt here
  into OpenFace's networks byte for byte, and kept in the user's cache as a
  model folder (importing joblib takes longer than reading three .dat files).

Trust: the package's weights are pickles (joblib), and unpickling can run
code. Only the files of the installed `mtcnn` package are ever unpickled, and
only after checking them against the package's own install record. Pickled
files in a user's model folder are refused, never loaded.
"""
from __future__ import annotations

import base64
import csv
import functools
import hashlib
import importlib.util
import os
import stat
from dataclasses import dataclass, field
from typing import NamedTuple
from pathlib import Path

import numpy as np

from .datfile import (NETWORK_NAMES, Conv, FullyConnected, Layer, MaxPool, ModelError, PReLU,
                      Sigmoid, describe_layer, network_to_bytes, parse_network,
                      read_detector_list, read_network_bytes, write_detector_list,
                      write_model_file, write_network)
from .layers import pooled_size
from .native import cache_root

DETECTOR_LIST = "MTCNN_detector.txt"

# Where a model folder may sit inside DIR: DIR itself, an OpenFace checkout,
# build or install. A fixed list: DIR is never walked.
MODEL_SUBFOLDERS = (
    ".",
    "mtcnn_detector",
    "model/mtcnn_detector",
    "bin/model/mtcnn_detector",
    "build/bin/model/mtcnn_detector",
    "lib/local/LandmarkDetector/model/mtcnn_detector",
    "etc/OpenFace/model/mtcnn_detector",
    "share/OpenFace/model/mtcnn_detector",
)

# What each network takes and gives (section 3 of the OpenFace notes).
INPUT_SIDE = {"PNet": 12, "RNet": 24, "ONet": 48}   # PNet: its smallest input
INPUT_MAPS = 3
OUTPUTS = {"PNet": 6, "RNet": 6, "ONet": 16}

PICKLE_SUFFIXES = (".lz4", ".pkl", ".pickle", ".joblib", ".npy", ".npz", ".z", ".gz")


@dataclass
class MTCNNModels:
    """The three networks, ready for the detector.

    source: where they came from (a folder, or the bundled weights); files:
    each network's file (None for the bundled weights); sha256: hex SHA-256 of
    each network's `.dat` bytes."""
    pnet: tuple[Layer, ...]
    rnet: tuple[Layer, ...]
    onet: tuple[Layer, ...]
    source: str
    files: dict[str, Path | None] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)

    def networks(self) -> dict[str, tuple[Layer, ...]]:
        return {"PNet": self.pnet, "RNet": self.rnet, "ONet": self.onet}


# --- shapes through a network -----------------------------------------------------------

class Maps(NamedTuple):
    """count feature maps of height x width."""
    count: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.count} maps of {self.height}x{self.width}"


class Column(NamedTuple):
    """A column of values, what a flattening fully connected layer gives."""
    length: int

    def __str__(self) -> str:
        return f"a column of {self.length} values"


Shape = Maps | Column


def next_shape(layer: Layer, shape: Shape, per_pixel_only: bool = False) -> Shape:
    """The shape a layer gives for input `shape`. Raises ValueError naming the misfit.
    per_pixel_only: fully connected layers must act on each pixel (PNet)."""
    if isinstance(layer, Sigmoid):
        return shape
    if isinstance(layer, PReLU):
        channels = layer.slopes.shape[0]
        have = shape.count if isinstance(shape, Maps) else shape.length
        if channels != have:
            raise ValueError(f"has {channels} slopes but gets {shape}")
        return shape
    if isinstance(layer, FullyConnected):
        n_in, n_out = layer.weights.shape
        if isinstance(shape, Column):
            if n_in != shape.length:
                raise ValueError(f"takes {n_in} inputs but gets {shape}")
            return Column(n_out)
        if n_in == shape.count:   # a 1x1 convolution over every pixel
            return Maps(n_out, shape.height, shape.width)
        if per_pixel_only:
            raise ValueError(f"takes {n_in} inputs but gets {shape}: here it must act on "
                             f"each pixel, taking {shape.count} inputs")
        values = shape.count * shape.height * shape.width
        if n_in != values:
            raise ValueError(f"takes {n_in} inputs but gets {shape} = {values} values")
        return Column(n_out)
    if isinstance(shape, Column):
        raise ValueError(f"needs maps but gets {shape} from a fully connected layer")
    if isinstance(layer, Conv):
        n_in, n_out, kh, kw = layer.kernels.shape
        if n_in != shape.count:
            raise ValueError(f"takes {n_in} input maps but gets {shape}")
        if kh > shape.height or kw > shape.width:
            raise ValueError(f"has {kh}x{kw} kernels, larger than its {shape}")
        return Maps(n_out, shape.height - kh + 1, shape.width - kw + 1)
    height = pooled_size(shape.height, layer.kernel_y, layer.stride_y)
    width = pooled_size(shape.width, layer.kernel_x, layer.stride_x)
    if height < 1 or width < 1:
        raise ValueError(f"gets {shape} and would give {height}x{width} maps")
    return Maps(shape.count, height, width)


def network_shapes(layers, name: str, source: str) -> list[Shape]:
    """The shape after each layer of network `name` (PNet, RNet, ONet) on its
    standard input. Raises ModelError naming the network and the layer."""
    side = INPUT_SIDE[name]
    shape: Shape = Maps(INPUT_MAPS, side, side)
    shapes = []
    for index, layer in enumerate(layers, 1):
        try:
            shape = next_shape(layer, shape, per_pixel_only=name == "PNet")
        except ValueError as e:
            raise ModelError(f"{source}: {name} layer {index} ({describe_layer(layer)}) "
                             f"{e}") from None
        shapes.append(shape)
    return shapes


def _check_output(name: str, layers, shapes: list[Shape], source: str) -> None:
    want = OUTPUTS[name]
    last = shapes[-1] if shapes else Maps(INPUT_MAPS, INPUT_SIDE[name], INPUT_SIDE[name])
    if name == "PNet":
        fits = isinstance(last, Maps) and last.count == want
        need = f"{want} maps"
    else:
        fits = isinstance(last, Column) and last.length == want
        need = f"a column of {want} values"
    if not fits:
        raise ModelError(f"{source}: {name} must give {need}, but its last layer "
                         f"(layer {len(layers)}) gives {last}")


def validate_mtcnn(pnet, rnet, onet, source: str) -> None:
    """Reject networks that do not fit MTCNN: PNet takes 3 maps (any size from
    12x12) and gives 6 maps; RNet takes 24x24x3 and gives 6 values; ONet takes
    48x48x3 and gives 16. Raises ModelError naming the network and layer."""
    for name, layers in zip(NETWORK_NAMES, (pnet, rnet, onet)):
        _check_output(name, layers, network_shapes(layers, name, source), source)


def describe_network(layers, name: str, source: str = "") -> list[str]:
    """One line per layer: what it is and the shape it gives."""
    shapes = network_shapes(layers, name, source)
    side = INPUT_SIDE[name]
    lines = [f"input: {Maps(INPUT_MAPS, side, side)}"]
    for index, (layer, shape) in enumerate(zip(layers, shapes), 1):
        lines.append(f"{index:2d}  {describe_layer(layer):34s} -> {shape}")
    return lines


# --- a model folder ---------------------------------------------------------------------

def _pickled_files(folder: Path) -> list[str]:
    """Names of pickled weight files in `folder` (a fixed list of names, no walk)."""
    found = []
    for stem in ("pnet", "rnet", "onet", "PNet", "RNet", "ONet", "weights", "model"):
        for suffix in PICKLE_SUFFIXES:
            if (folder / (stem + suffix)).is_file():
                found.append(stem + suffix)
    return found


def _pickle_refusal(what: str) -> str:
    return (f"{what}: pickled weights are never loaded from a model folder (unpickling can "
            f"run code); give OpenFace .dat files, e.g. from `mtcnn models export DIR`")


def find_model_folder(path) -> Path:
    """The folder holding MTCNN_detector.txt: `path` itself, or one of a fixed
    list of places inside an OpenFace checkout or install (MODEL_SUBFOLDERS).
    `path` may also be the MTCNN_detector.txt file. Raises ModelError."""
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.exists():
        raise ModelError(f"{path}: no such model folder")
    if path.is_file():
        if path.name == DETECTOR_LIST:
            return path.parent
        raise ModelError(f"{path}: not a model folder (a file, not {DETECTOR_LIST} or a folder)")
    for sub in MODEL_SUBFOLDERS:
        folder = path / sub
        if (folder / DETECTOR_LIST).is_file():
            return folder if sub != "." else path
    pickled = _pickled_files(path)
    if pickled:
        raise ModelError(_pickle_refusal(f"{path} holds {', '.join(pickled)} and no "
                                         f"{DETECTOR_LIST}"))
    places = ", ".join(f"{sub}/" for sub in MODEL_SUBFOLDERS[1:])
    raise ModelError(f"{path}: not a model folder: no {DETECTOR_LIST} in it, nor in {places}")


def _looks_pickled(data: bytes) -> bool:
    """A pickle (protocol 2+), or an lz4, zlib or gzip stream as joblib writes:
    none of these can start a valid .dat file (their first int32 is far above
    any layer count)."""
    return ((len(data) >= 3 and data[0] == 0x80 and 2 <= data[1] <= 5 and data[2] != 0)
            or data[:4] == b"\x04\x22\x4d\x18"
            or data[:2] in (b"\x1f\x8b", b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"))


def _read_network_file(path: Path) -> tuple[tuple[Layer, ...], str]:
    """(layers, sha256 hex) of one network file of a model folder."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(_pickle_refusal(str(path)))
    if not path.exists():
        raise ModelError(f"{path}: network file missing (named in {DETECTOR_LIST})")
    data = read_network_bytes(path)
    if _looks_pickled(data):
        raise ModelError(_pickle_refusal(f"{path} is a pickle or compressed stream"))
    return parse_network(data, str(path)), hashlib.sha256(data).hexdigest()


def load_model_folder(path) -> MTCNNModels:
    """The networks of a model folder (or a checkout/install holding one)."""
    folder = find_model_folder(path)
    listed = read_detector_list(folder / DETECTOR_LIST)
    missing = [name for name in NETWORK_NAMES if name not in listed]
    if missing:
        raise ModelError(f"{folder / DETECTOR_LIST}: names no {' and no '.join(missing)}")
    networks, digests = {}, {}
    for name in NETWORK_NAMES:
        networks[name], digests[name] = _read_network_file(listed[name])
    source = str(folder)
    validate_mtcnn(networks["PNet"], networks["RNet"], networks["ONet"], source)
    return MTCNNModels(networks["PNet"], networks["RNet"], networks["ONet"], source,
                       files=dict(listed), sha256=digests)


# --- the bundled weights (the mtcnn package) --------------------------------------------

# How the package's arrays make OpenFace's networks, layer by layer: "conv" takes
# a kernel (kh, kw, in, out) and biases; "prelu" slopes; (k, s) is a k x k max
# pooling of stride s (no weights); "dense" a fully connected layer on the
# flattened maps; "heads" the output layers, in the package's order.
RECIPES = {
    "PNet": ("conv", "prelu", (2, 2), "conv", "prelu", "conv", "prelu",
             ("heads", "box", "class")),
    "RNet": ("conv", "prelu", (3, 2), "conv", "prelu", (3, 2), "conv", "prelu",
             "dense", "prelu", ("heads", "box", "class")),
    "ONet": ("conv", "prelu", (3, 2), "conv", "prelu", (3, 2), "conv", "prelu", (2, 2),
             "conv", "prelu", "dense", "prelu", ("heads", "box", "landmarks", "class")),
}
# OpenFace's outputs: 2 class logits, 4 box corrections, then 10 landmark values
HEAD_ORDER = ("class", "box", "landmarks")
HEAD_SIZES = {"class": 2, "box": 4, "landmarks": 10}
PACKAGE_FILES = {"PNet": "pnet.lz4", "RNet": "rnet.lz4", "ONet": "onet.lz4"}


class _Arrays:
    """The package's arrays of one network, taken in order with shape checks."""

    def __init__(self, arrays, source: str):
        self.arrays, self.source, self.next = arrays, source, 0

    def take(self, ndims: tuple[int, ...], what: str) -> np.ndarray:
        """The next array, which must be float32 with one of `ndims` dimensions."""
        if self.next >= len(self.arrays):
            raise ModelError(f"{self.source}: ends before {what} (array {self.next})")
        a = self.arrays[self.next]
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim not in ndims:
            raise ModelError(f"{self.source}: array {self.next} ({what}) is "
                             f"{getattr(a, 'dtype', type(a).__name__)} "
                             f"{getattr(a, 'shape', '')}, expected a float32 array of "
                             f"{' or '.join(map(str, ndims))} dimensions")
        self.next += 1
        return a

    def bias(self, n: int, what: str) -> np.ndarray:
        b = self.take((1,), f"{what} biases")
        if b.shape != (n,):
            raise ModelError(f"{self.source}: {what} biases are {b.shape}, expected ({n},)")
        return b


def _package_conv(arrays: _Arrays) -> Conv:
    kernel = arrays.take((4,), "convolution kernel")               # (kh, kw, in, out)
    biases = arrays.bias(kernel.shape[3], "convolution")         # (out,)
    return Conv(np.ascontiguousarray(kernel.transpose(2, 3, 0, 1)), biases.copy())


def _package_prelu(arrays: _Arrays) -> PReLU:
    slopes = arrays.take((1, 3), "PReLU slopes")                 # (1, 1, C) or (C,)
    return PReLU(slopes.reshape(-1, 1).copy())                   # (C, 1)


def _package_dense(arrays: _Arrays, maps: int) -> FullyConnected:
    """The package orders a flattened input (x, y, map); OpenFace (map, x, y)."""
    weights = arrays.take((2,), "dense weights")                   # (W*H*maps, out)
    side = int(round((weights.shape[0] / maps) ** 0.5))
    if side * side * maps != weights.shape[0]:
        raise ModelError(f"{arrays.source}: dense weights {weights.shape} do not flatten "
                         f"{maps} square maps")
    n_out = weights.shape[1]
    biases = arrays.bias(n_out, "dense")
    # (x, y, map, out) -> (map, x, y, out) -> (maps*side*side, out)
    reordered = weights.reshape(side, side, maps, n_out).transpose(2, 0, 1, 3)
    return FullyConnected(biases.reshape(n_out, 1).copy(),
                          np.ascontiguousarray(reordered.reshape(-1, n_out)))


def _package_heads(arrays: _Arrays, order: tuple[str, ...]) -> FullyConnected:
    """Separate output layers -> one FC: columns class, box, landmarks."""
    heads = {}
    for head in order:
        weights = arrays.take((2, 4), f"{head} weights")        # (in, n) or (1, 1, in, n)
        if weights.ndim == 4 and weights.shape[:2] == (1, 1):   # a 1x1 convolution
            weights = weights.reshape(weights.shape[2:])
        if weights.ndim != 2 or weights.shape[1] != HEAD_SIZES[head]:
            raise ModelError(f"{arrays.source}: {head} weights are {weights.shape}, "
                             f"expected (n, {HEAD_SIZES[head]})")
        heads[head] = (weights, arrays.bias(HEAD_SIZES[head], head))
    ordered = [heads[h] for h in HEAD_ORDER if h in heads]
    weights = np.concatenate([w for w, _ in ordered], axis=1)   # (in, 6 or 16)
    biases = np.concatenate([b for _, b in ordered])[:, None]   # (6 or 16, 1)
    return FullyConnected(biases, np.ascontiguousarray(weights))


def network_from_package(arrays, name: str, source: str) -> tuple[Layer, ...]:
    """OpenFace's layers of network `name` from the package's list of arrays."""
    taken = _Arrays(list(arrays), source)
    layers: list[Layer] = []
    maps = INPUT_MAPS
    for step in RECIPES[name]:
        if step == "conv":
            layers.append(_package_conv(taken))
            maps = layers[-1].kernels.shape[1]
        elif step == "prelu":
            layers.append(_package_prelu(taken))
        elif step == "dense":
            layers.append(_package_dense(taken, maps))
        elif step[0] == "heads":
            layers.append(_package_heads(taken, step[1:]))
        else:
            kernel, stride = step
            layers.append(MaxPool(kernel, kernel, stride, stride))
    if taken.next != len(taken.arrays):
        raise ModelError(f"{source}: {len(taken.arrays) - taken.next} arrays left over "
                         f"after {name}")
    return tuple(layers)


class PackageWeights(NamedTuple):
    """The installed mtcnn package's weight files, checked against its install
    record: files {"PNet": .../pnet.lz4, ...}, their SHA-256 digests, version."""
    files: dict[str, Path]
    digests: dict[str, bytes]
    version: str


def package_weights(check: bool = True) -> PackageWeights:
    """The installed mtcnn package's weight files, found without importing the
    package (it imports TensorFlow). Each file must match the hash the
    package's install record lists for it (when it lists one).

    check=False: the digests the record lists are taken as they are, without
    reading the files (what looking up the cache of their conversion needs:
    nothing is unpickled then); a file the record lists no digest for is
    still read and hashed."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the bundled weights need the mtcnn package (pip install mtcnn); "
                         "or give a model folder (--models DIR or $MTCNN_MODELS)")
    package = Path(next(iter(spec.submodule_search_locations)))
    files = {name: package / "assets" / "weights" / file for name, file in PACKAGE_FILES.items()}
    version, recorded = _install_record(package)
    digests = {}
    for name, path in files.items():
        listed = recorded.get(path.relative_to(package.parent).as_posix(), "")
        if not check and listed.startswith("sha256="):
            try:
                digest = base64.urlsafe_b64decode(listed[7:] + "=" * (-len(listed[7:]) % 4))
            except ValueError:
                digest = b""  # a record we cannot read: the file is hashed below
            if len(digest) == 32:
                digests[name] = digest
                continue
        try:
            digests[name] = hashlib.sha256(path.read_bytes()).digest()
        except OSError as e:
            raise ModelError(f"{path}: cannot read the mtcnn package's weights: "
                             f"{e.strerror or e}") from None
        listed = recorded.get(path.relative_to(package.parent).as_posix(), "")
        if listed.startswith("sha256="):
            ours = base64.urlsafe_b64encode(digests[name]).rstrip(b"=").decode()
            if ours != listed[len("sha256="):]:
                raise ModelError(f"{path}: differs from the installed mtcnn package's "
                                 f"record; not loaded")
    return PackageWeights(files, digests, version)


def _install_record(package: Path) -> tuple[str, dict[str, str]]:
    """(version, {path relative to the install folder: "sha256=..."}) from the
    package's dist-info beside it; importlib.metadata (slower to import) when
    there is none there."""
    for info in sorted(package.parent.glob("mtcnn-*.dist-info")):
        try:
            record = (info / "RECORD").read_text("utf-8")
            meta = (info / "METADATA").read_text("utf-8", errors="replace")
        except OSError:
            continue
        version = next((line.split(":", 1)[1].strip() for line in meta.splitlines()
                        if line.startswith("Version:")), "unknown version")
        rows = csv.reader(record.splitlines())
        return version, {row[0]: row[1] for row in rows if len(row) >= 2}
    from importlib import metadata

    try:
        dist = metadata.distribution("mtcnn")
    except metadata.PackageNotFoundError:
        raise ModelError(f"{package}: the mtcnn package has no install record; its pickled "
                         f"weights are not loaded") from None
    if Path(dist.locate_file("mtcnn")).resolve() != package.resolve():
        raise ModelError(f"{package}: this mtcnn package is not the installed one "
                         f"({dist.locate_file('mtcnn')}); its pickled weights are not loaded")
    hashes = {str(f): f"{f.hash.mode}={f.hash.value}" for f in dist.files or () if f.hash}
    return dist.version, hashes


def convert_package(weights: PackageWeights) -> MTCNNModels:
    """Unpickle the package's weights (joblib) and rebuild OpenFace's networks."""
    import joblib  # only here: its import is slow, and it unpickles

    networks, digests = {}, {}
    for name, path in weights.files.items():
        try:
            arrays = joblib.load(path)
        except Exception as e:  # a damaged package: any unpickling failure
            raise ModelError(f"{path}: cannot read the mtcnn package's weights: {e}") from None
        if not isinstance(arrays, (list, tuple)):
            raise ModelError(f"{path}: expected a list of arrays, got {type(arrays).__name__}")
        networks[name] = network_from_package(arrays, name, str(path))
        digests[name] = hashlib.sha256(network_to_bytes(networks[name])).hexdigest()
    source = bundled_source(weights.version)
    validate_mtcnn(networks["PNet"], networks["RNet"], networks["ONet"], source)
    return MTCNNModels(networks["PNet"], networks["RNet"], networks["ONet"], source,
                       files={name: None for name in NETWORK_NAMES}, sha256=digests)


def bundled_source(version: str) -> str:
    return f"bundled (mtcnn {version} package weights)"


# --- a cache of the conversion ----------------------------------------------------------
# Importing joblib alone takes longer than reading three .dat files, so the
# converted networks are kept as an OpenFace model folder in the user's cache,
# keyed by the package files' digests, with a SHA256SUMS of its own files. It
# is read through our .dat parser like any model folder, and used only when
# every file matches; anything amiss, and the package is converted again.

def _cache_entry(weights: PackageWeights) -> Path | None:
    root = cache_root()
    if root is None:
        return None
    key = hashlib.sha256(b"".join(weights.digests[name] for name in NETWORK_NAMES))
    return root / f"bundled-{key.hexdigest()[:24]}"


# OpenFace 2.2.0's own network files: the bundled weights convert to exactly
# these bytes (tests/detector/test_models.py checks it against OpenFace's SHA256SUMS). A
# cache entry is used only when its files have these digests, whatever its own
# SHA256SUMS says: an edited entry with a rewritten SHA256SUMS is not used.
OPENFACE_SHA256 = {
    "PNet": "22dfd0a96ec983e99b21c0e214d89d55ea9a471eedd53e5a48203f22bcb4c489",
    "RNet": "95e9c4203ca0a08c84520fa5fd658834213ed2453a7359f4d9514a06762f91e9",
    "ONet": "4c853ae5b461abe4d41f1cd77625895cd71452956c63c622fd75a3b820fb1d31",
}


def _ours_alone(path: Path) -> bool:
    """Whether `path` (not followed if a link) is owned by this user, is no
    link, and cannot be written by its group or others: a cache in a shared,
    world-writable MTCNN_CACHE_DIR may hold entries someone else made."""
    info = os.lstat(path)
    return (not stat.S_ISLNK(info.st_mode) and info.st_uid == os.getuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _read_cache(entry: Path, source: str) -> MTCNNModels | None:
    """The cached networks, or None when the entry is missing, not ours alone
    (see _ours_alone), or not exactly OpenFace 2.2.0's files."""
    try:
        if not _ours_alone(entry):
            return None
        networks, digests = {}, {}
        for name in NETWORK_NAMES:
            path = entry / f"{name}.dat"
            if not _ours_alone(path):
                return None
            networks[name], digests[name] = _read_network_file(path)
            if digests[name] != OPENFACE_SHA256[name]:
                return None
        validate_mtcnn(networks["PNet"], networks["RNet"], networks["ONet"], source)
    except (OSError, ValueError, ModelError):
        return None
    return MTCNNModels(networks["PNet"], networks["RNet"], networks["ONet"], source,
                       files={name: None for name in NETWORK_NAMES}, sha256=digests)


def _write_cache(entry: Path, models: MTCNNModels) -> None:
    """Best effort: a complete entry appears at once (a folder renamed into
    place), or none; another process may win the race. A damaged entry of
    ours is replaced; only OpenFace 2.2.0's exact files are ever cached."""
    import shutil  # only on a cache miss: with tempfile, a few ms of every start
    import tempfile

    if any(models.sha256.get(name) != OPENFACE_SHA256[name] for name in NETWORK_NAMES):
        return
    temp = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=".bundled-", dir=entry.parent))
        export_models(temp, models)
        sums = "".join(f"{models.sha256[name]}  {name}.dat\n" for name in NETWORK_NAMES)
        write_model_file(temp / "SHA256SUMS", sums.encode("ascii"))
        for file in temp.iterdir():
            os.chmod(file, 0o644)
        os.chmod(temp, 0o755)
        if os.path.lexists(entry):
            if not _ours_alone(entry):
                return  # someone else's: left alone, not used
            stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=entry.parent))
            os.rename(entry, stale / "entry")
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(temp, entry)
        temp = None
    except (OSError, ModelError):
        pass
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def bundled_models() -> MTCNNModels:
    """OpenFace's three networks rebuilt from the mtcnn package's weights: from
    the user's cache when it holds them intact, else converted (and cached).
    Once per process; treat the result as read-only."""
    # looked up by the digests the install record lists (2 MB not read and
    # hashed per process): a hit unpickles nothing, and holds OpenFace's exact files
    weights = package_weights(check=False)
    entry = _cache_entry(weights)
    cached = _read_cache(entry, bundled_source(weights.version)) if entry else None
    if cached is not None:
        return cached
    weights = package_weights()  # checked against the record before anything is unpickled
    entry = _cache_entry(weights)
    models = convert_package(weights)
    if entry is not None:
        _write_cache(entry, models)
    return models


def model_files(models=None) -> list[Path]:
    """The files a model folder choice (`models`, else $MTCNN_MODELS) reads:
    its MTCNN_detector.txt and the network files it names; [] for the bundled
    weights or a folder that cannot be used (loading it says why). Used to
    refuse an output that would overwrite one of them."""
    if models is None or os.fspath(models) == "":
        models = os.environ.get("MTCNN_MODELS") or None
    if models is None:
        return []
    try:
        folder = find_model_folder(models)
        listed = read_detector_list(folder / DETECTOR_LIST)
    except ModelError:
        return []
    return [folder / DETECTOR_LIST, *listed.values()]


def load_models(models=None) -> MTCNNModels:
    """The networks from `models` (a model folder, or a checkout/install holding
    one), else from $MTCNN_MODELS, else the bundled weights. Raises ModelError."""
    if models is None or os.fspath(models) == "":
        from_environment = os.environ.get("MTCNN_MODELS") or None
        if from_environment is None:
            return bundled_models()
        try:
            return load_model_folder(from_environment)
        except ModelError as e:  # name where the folder came from: nothing on the command line did
            message = str(e) if str(e).startswith(from_environment) else f"{from_environment}: {e}"
            raise ModelError(f"$MTCNN_MODELS={message}") from None
    return load_model_folder(models)


def export_models(folder, models: MTCNNModels | None = None) -> dict[str, Path]:
    """Write PNet.dat, RNet.dat, ONet.dat and MTCNN_detector.txt into `folder`
    (created if missing), each atomically; by default the bundled weights,
    converted afresh from the package. Returns {file name: path written}."""
    folder = Path(folder)
    models = models or convert_package(package_weights())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"{folder}: cannot create the model folder: {e.strerror or e}") from None
    if not folder.is_dir():
        raise ModelError(f"{folder}: not a folder")
    written = {}
    for name, layers in models.networks().items():
        path = folder / f"{name}.dat"
        write_network(layers, path)
        written[path.name] = path
    write_detector_list(folder / DETECTOR_LIST)
    written[DETECTOR_LIST] = folder / DETECTOR_LIST
    return written
