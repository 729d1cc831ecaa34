"""Fuzzing the model reader: property tests (hypothesis) and a seeded mutation
fuzzer over OpenFace's real .dat files.

Every case must end in a ModelError naming the file, a byte offset inside the
file and a problem, or in a network that parses, writes back to the same
bytes, and that validate_mtcnn either accepts or rejects with a ModelError.
Any other exception fails the test. The reader must never allocate much more
than the file's size (checked with tracemalloc on a sample), nor take long.
"""
from __future__ import annotations

import math
import random
import re
import struct
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtcnn_cli.detector.datfile import (Conv, FullyConnected, MaxPool, ModelError, PReLU, Sigmoid,
                                        layer_to_bytes, network_to_bytes, parse_network)
from mtcnn_cli.detector.layers import pooled_size as pooled_side
from mtcnn_cli.detector.models import validate_mtcnn

pytestmark = pytest.mark.slow

NETWORKS = ("PNet", "RNet", "ONet")
SEED = 2016  # MTCNN's year; any fixed seed keeps the run deterministic
MESSAGE = re.compile(r"^(?P<source>[^:]+\.dat): at byte (?P<offset>\d+): (?P<problem>.+)$")
ALLOC_SLACK = 64 * 1024
SAMPLE_EVERY = 61  # cases run again under tracemalloc


@dataclass
class Tally:
    cases: int = 0
    parsed: int = 0
    accepted: int = 0
    messages: Counter = field(default_factory=Counter)
    slowest: float = 0.0
    traced: int = 0
    worst_excess: int = 0   # bytes allocated beyond the file's size, at peak
    per_network: Counter = field(default_factory=Counter)


def normalised(message: str, source: str) -> str:
    return re.sub(r"-?\d+", "N", message.replace(source, "<file>"))


def check_case(data: bytes, name: str, genuine: dict, tally: Tally) -> None:
    """One fuzz case: data as network `name`'s file."""
    source = f"{name}.dat"
    start = time.perf_counter()
    try:
        layers = parse_network(data, source)
    except ModelError as e:
        message = str(e)
        match = MESSAGE.match(message)
        assert match, message
        assert match["source"] == source and "\n" not in message
        assert 0 <= int(match["offset"]) <= len(data), message
        tally.messages[normalised(message, source)] += 1
    else:
        tally.parsed += 1
        assert network_to_bytes(layers) == data
        nets = {**genuine, name: layers}
        try:
            validate_mtcnn(nets["PNet"], nets["RNet"], nets["ONet"], source)
            tally.accepted += 1
        except ModelError as e:
            message = str(e)
            assert message.startswith(f"{source}: ") and "\n" not in message, message
            assert any(n in message for n in NETWORKS), message
            tally.messages[normalised(message, source)] += 1
    tally.slowest = max(tally.slowest, time.perf_counter() - start)
    tally.cases += 1
    tally.per_network[name] += 1
    if tally.cases % SAMPLE_EVERY == 0:
        check_allocation(data, source, tally)


def check_allocation(data: bytes, source: str, tally: Tally) -> None:
    """Parsing allocates at most about the file's size, whatever it declares."""
    tracemalloc.start()
    try:
        parse_network(data, source)
    except ModelError:
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= len(data) + ALLOC_SLACK, (source, len(data), peak)
    tally.traced += 1
    tally.worst_excess = max(tally.worst_excess, peak - len(data))


# --- where the header fields of a real file are -----------------------------------------

def layer_fields(layer, at: int, rng: random.Random, kernels_per_conv: int) -> list[int]:
    """Offsets of the int32 header fields of a layer stored at `at` (kernel
    headers: the first two, the last, and a random sample)."""
    fields = [at]
    if isinstance(layer, Conv):
        n_in, n_out, kh, kw = layer.kernels.shape
        fields += [at + 4, at + 8]
        first = at + 12 + 4 * n_out
        record = 12 + 4 * kh * kw
        count = n_in * n_out
        chosen = {0, min(1, count - 1), count - 1}
        chosen |= set(rng.sample(range(count), min(count, kernels_per_conv)))
        for k in sorted(chosen):
            fields += [first + k * record + 4 * j for j in range(3)]
    elif isinstance(layer, MaxPool):
        fields += [at + 4 * j for j in range(1, 5)]
    elif isinstance(layer, FullyConnected):
        n_out = layer.biases.shape[0]
        fields += [at + 4 + 4 * j for j in range(3)]
        weights = at + 4 + 12 + 4 * n_out
        fields += [weights + 4 * j for j in range(3)]
    elif isinstance(layer, PReLU):
        fields += [at + 4 + 4 * j for j in range(3)]
    return fields


def file_layout(layers, rng: random.Random, kernels_per_conv: int):
    """(layer start offsets, header field offsets) of a network's file."""
    starts, fields = [], [0]
    at = 4
    for layer in layers:
        starts.append(at)
        fields += layer_fields(layer, at, rng, kernels_per_conv)
        at += len(layer_to_bytes(layer))
    return starts, fields


def with_int(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<i", value) + data[at + 4:]


def int_at(data: bytes, at: int) -> int:
    return struct.unpack_from("<i", data, at)[0]


# --- the mutations ----------------------------------------------------------------------

def truncations(data, starts, fields, rng):
    cuts = set(starts) | {f + j for f in fields for j in range(4)}
    cuts |= {rng.randrange(len(data)) for _ in range(300)}
    for cut in sorted(cuts):
        if cut < len(data):
            yield data[:cut]


SPECIAL_VALUES = (0, -1, -(2**31), 2**31 - 1, 1, 2, 5, 65536, 65537, 1 << 24)


def size_changes(data, fields, rng):
    for at in fields:
        value = int_at(data, at)
        for new in {*SPECIAL_VALUES, value + 1, value - 1, value * 2, rng.randrange(-2**31, 2**31)}:
            if new != value:
                yield with_int(data, at, new)


def header_byte_flips(data, fields, rng):
    for at in fields:
        for j in range(4):
            for mask in {0x80, rng.randrange(1, 256)}:
                flipped = bytearray(data)
                flipped[at + j] ^= mask
                yield bytes(flipped)


def type_swaps(data, starts):
    for at in starts:
        current = int_at(data, at)
        for new in (0, 1, 2, 3, 4, 5, -1, 99):
            if new != current:
                yield with_int(data, at, new)


def random_flips(data, rng, count=150):
    for _ in range(count):
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            flipped[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        yield bytes(flipped)


def shifts(data, starts, rng):
    """Bytes inserted or removed at layer boundaries."""
    for at in starts + [len(data)]:
        for n in (1, 3, 4, 8):
            yield data[:at] + bytes(rng.randrange(256) for _ in range(n)) + data[at:]
            yield data[:at] + data[at + n:]


def restructured(layers, others, rng):
    """Whole layers dropped, repeated, swapped, or taken from another network:
    files that often parse and then fail MTCNN's shapes."""
    n = len(layers)
    variants = []
    for i in range(n):
        variants.append(layers[:i] + layers[i + 1:])
        variants.append(layers[:i + 1] + layers[i:])
        if i + 1 < n:
            variants.append(layers[:i] + (layers[i + 1], layers[i]) + layers[i + 2:])
        donor = rng.choice(others)
        variants.append(layers[:i] + (rng.choice(donor),) + layers[i + 1:])
        variants.append(layers[:i + 1] + (Sigmoid(),) + layers[i + 1:])
        variants.append(layers[:i + 1])
    for variant in variants:
        if variant:
            yield network_to_bytes(variant)
    data = network_to_bytes(layers)
    for depth in (n - 1, n + 1, 2 * n):
        yield with_int(data, 0, depth)


# Most cases go to PNet (35 kB, cheap to copy); RNet (455 kB) and ONet (1.7 MB)
# get fewer kernel headers and random flips, to keep the run short.
KERNELS_SAMPLED = {"PNet": 40, "RNet": 8, "ONet": 4}
RANDOM_FLIPS = {"PNet": 400, "RNet": 60, "ONet": 30}


@pytest.fixture(scope="module")
def real(openface_models):
    """{name: (bytes, layers)} of OpenFace's files."""
    found = {}
    for name in NETWORKS:
        data = (openface_models / f"{name}.dat").read_bytes()
        found[name] = (data, parse_network(data, f"{name}.dat"))
    return found


def report(config, title: str, tally: Tally, seconds: float | None = None) -> None:
    """Print what a run reached: counts, then each distinct message (numbers as N)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines = [f"{title}: {tally.cases} cases{took}, {tally.parsed} parsed "
              f"({tally.accepted} accepted by validate_mtcnn), {len(tally.messages)} distinct "
              f"error messages (numbers normalised); slowest case {tally.slowest * 1000:.1f} ms; "
              f"{tally.traced} traced under tracemalloc: peak at most the file's size + "
              f"{max(tally.worst_excess, 0) / 1024:.1f} KiB; cases per network "
              f"{dict(tally.per_network)}"]
    lines += [f"  {count:6d}  {message}"
              for message, count in sorted(tally.messages.items(), key=lambda kv: -kv[1])]
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)


def test_mutation_fuzzer_over_the_real_files(real, pytestconfig):
    rng = random.Random(SEED)
    genuine = {name: layers for name, (_, layers) in real.items()}
    tally = Tally()
    started = time.perf_counter()
    for name in NETWORKS:
        data, layers = real[name]
        others = [genuine[other] for other in NETWORKS if other != name]
        starts, fields = file_layout(layers, rng, kernels_per_conv=KERNELS_SAMPLED[name])
        for case in (*truncations(data, starts, fields, rng),
                     *size_changes(data, fields, rng),
                     *header_byte_flips(data, fields, rng),
                     *type_swaps(data, starts),
                     *random_flips(data, rng, count=RANDOM_FLIPS[name]),
                     *shifts(data, starts, rng),
                     *restructured(layers, others, rng)):
            check_case(case, name, genuine, tally)
    seconds = time.perf_counter() - started
    report(pytestconfig, "mutation fuzzer", tally, seconds)
    assert tally.cases >= 10_000
    # a hang detector, not a speed test (a loaded 2-core machine is noisy; speed is `make bench`'s)
    assert tally.slowest < 20.0
    assert tally.traced >= 100
    # the fuzzer reaches most of the reader's checks and validate_mtcnn's
    assert len(tally.messages) >= 40
    assert tally.parsed > 0 and tally.accepted > 0


# --- property tests ---------------------------------------------------------------------

PROPERTY = settings(derandomize=True, deadline=None, database=None, max_examples=400,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HYPOTHESIS_TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def property_report(pytestconfig):
    """After this module's tests: what the property tests reached."""
    yield
    if HYPOTHESIS_TALLY.cases:
        report(pytestconfig, "property tests", HYPOTHESIS_TALLY)


@st.composite
def layer_lists(draw):
    """Small networks of any of the five layer types (shapes need not fit MTCNN)."""
    floats = st.floats(width=32, allow_nan=False, allow_infinity=False)

    def array(shape):
        values = draw(st.lists(floats, min_size=math.prod(shape), max_size=math.prod(shape)))
        return np.array(values, np.float32).reshape(shape)

    layers = []
    maps = draw(st.integers(1, 3))
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "pool", "fc", "prelu", "sigmoid"]))
        if kind == "conv":
            n_out, kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
            layers.append(Conv(array((maps, n_out, kh, kw)), array((n_out,))))
            maps = n_out
        elif kind == "pool":
            layers.append(MaxPool(*(draw(st.integers(1, 4)) for _ in range(4))))
        elif kind == "fc":
            n_out = draw(st.integers(1, 4))
            layers.append(FullyConnected(array((n_out, 1)), array((maps * draw(st.integers(1, 3)), n_out))))
            maps = n_out
        elif kind == "prelu":
            layers.append(PReLU(array((maps, 1))))
        else:
            layers.append(Sigmoid())
    return tuple(layers)


@pytest.fixture(scope="module")
def genuine(real):
    return {name: layers for name, (_, layers) in real.items()}


@PROPERTY
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes(genuine, data):
    check_case(data, "PNet", genuine, HYPOTHESIS_TALLY)


@PROPERTY
@given(data=st.binary(min_size=4, max_size=200), depth=st.integers(1, 6))
def test_arbitrary_bytes_after_a_plausible_depth(genuine, data, depth):
    check_case(struct.pack("<i", depth) + data, "RNet", genuine, HYPOTHESIS_TALLY)


@PROPERTY
@given(layers=layer_lists())
def test_valid_networks_round_trip(genuine, layers):
    data = network_to_bytes(layers)
    back = parse_network(data, "x.dat")
    assert network_to_bytes(back) == data
    for a, b in zip(layers, back):
        assert type(a) is type(b)
        if isinstance(a, Conv):
            assert np.array_equal(a.kernels, b.kernels) and np.array_equal(a.biases, b.biases)
    HYPOTHESIS_TALLY.cases += 1


@PROPERTY
@given(layers=layer_lists(), where=st.floats(0, 1, exclude_max=True), byte=st.integers(1, 255))
def test_one_changed_byte_in_a_valid_network(genuine, layers, where, byte):
    data = bytearray(network_to_bytes(layers))
    data[int(where * len(data))] ^= byte
    check_case(bytes(data), "ONet", genuine, HYPOTHESIS_TALLY)


@PROPERTY
@given(layers=layer_lists(), where=st.floats(0, 1, exclude_max=True))
def test_every_strict_prefix_ends_inside_something(layers, where):
    data = network_to_bytes(layers)
    cut = int(where * len(data))
    with pytest.raises(ModelError, match=r"^x\.dat: at byte \d+: .*file ends inside "):
        parse_network(data[:cut], "x.dat")
    HYPOTHESIS_TALLY.cases += 1


@PROPERTY
@given(layers=layer_lists(), extra=st.binary(min_size=1, max_size=40))
def test_appended_bytes_are_trailing(layers, extra):
    data = network_to_bytes(layers)
    with pytest.raises(ModelError, match=rf"^x\.dat: at byte {len(data)}: {len(extra)} trailing byte"):
        parse_network(data + extra, "x.dat")
    HYPOTHESIS_TALLY.cases += 1


@PROPERTY
@given(side=st.integers(1, 5000), kernel=st.integers(1, 64), stride=st.integers(1, 64))
def test_pooled_side_is_c_round_of_the_float_quotient(side, kernel, stride):
    quotient = (side - kernel) / stride
    c_round = math.copysign(math.floor(abs(quotient) + 0.5), quotient)
    assert pooled_side(side, kernel, stride) == int(c_round) + 1
    HYPOTHESIS_TALLY.cases += 1


def i32(*values) -> bytes:
    return struct.pack(f"<{len(values)}i", *values)


@pytest.mark.parametrize("declared", [
    i32(1000) + i32(4) * 10,                                     # 1000 layers, 11 present
    i32(1, 0, 65536, 65536) + bytes(64),                         # 2^32 kernels
    i32(1, 0, 1, 65536) + bytes(64),                             # 65536 biases
    i32(1, 0, 1, 1, 0) + i32(4096, 4096, 5) + bytes(64),         # a 4096x4096 kernel
    i32(1, 2) + i32(1 << 24, 1, 5) + bytes(64),                  # 2^24 FC biases
    i32(1, 2, 2, 1, 5) + bytes(8) + i32(1 << 24, 1 << 24, 5),    # a 2^48-element weight matrix
    i32(1, 3) + i32(1 << 24, 1, 5),                              # 2^24 PReLU slopes
])
def test_declared_sizes_are_never_allocated(declared):
    tracemalloc.start()
    with pytest.raises(ModelError, match=r"file ends inside|more than the limit"):
        parse_network(declared, "huge.dat")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < ALLOC_SLACK
