"""The compiled kernels' cache and loader (mtcnn_cli/detector/native.py).

Each case runs a fresh Python process with its own MTCNN_CACHE_DIR and asks
where the kernels came from and whether numba was imported: the point of the
cache is that a warm process never imports numba."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mtcnn_cli.detector import elfload, native

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import sys, json; from mtcnn_cli.detector import native; lib = native.library(); "
         "print(json.dumps({'source': lib.source, 'numba': 'numba' in sys.modules}))")
LOADER_PROBE = ("import sys, json; from mtcnn_cli.detector import native; lib = native.library(); "
                "print(json.dumps({'loader': lib.loader, 'llvmlite': 'llvmlite' in sys.modules}))")
ELF = elfload.supported()


def probe(cache_dir, program=PROBE) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MTCNN_CACHE_DIR=str(cache_dir))
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("kernels/kernels-*.bin"))


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory) -> Path:
    """A cache folder holding one entry, made by a first (compiling) process."""
    folder = tmp_path_factory.mktemp("cache")
    assert probe(folder) == {"source": "compiled", "numba": True}
    assert len(entries(folder)) == 1
    return folder


def copy_of(warm_cache: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "cache"
    shutil.copytree(warm_cache, folder)
    return folder


def test_a_warm_process_loads_the_cache_without_numba(warm_cache, tmp_path):
    folder = copy_of(warm_cache, tmp_path)
    assert probe(folder) == {"source": "cache", "numba": False}


@pytest.mark.skipif(not ELF, reason="the object is placed without llvmlite on Linux x86-64 only")
def test_a_warm_process_loads_the_cache_without_llvmlite_either(warm_cache, tmp_path):
    folder = copy_of(warm_cache, tmp_path)
    assert probe(folder, LOADER_PROBE) == {"loader": "elf", "llvmlite": False}


def both_loaders(warm_cache):
    """The warm entry's kernels placed by elfload and by llvmlite: (owner of the
    code, its function table) twice; the code lives as long as its owner."""
    header, code = native._read_entry(entries(warm_cache)[0])
    llvm = native._llvm()
    return [native._load_elf(header, code),
            native._load(llvm, llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten(), header, code)]


@pytest.mark.skipif(not ELF, reason="the object is placed without llvmlite on Linux x86-64 only")
def test_the_two_loaders_run_the_same_code(warm_cache):
    rng = np.random.default_rng(7)
    results, loaded = [], both_loaders(warm_cache)
    for _, functions in loaded:
        a, b, c = (rng.standard_normal(1001).astype(np.float32) for _ in range(3))
        fused = np.zeros(1001, np.float32)
        functions["fma_many"](a.ctypes.data, b.ctypes.data, c.ctypes.data, fused.ctypes.data, 1001)
        columns = rng.standard_normal((40, 7)).astype(np.float32)
        weights = rng.standard_normal((40, 5))
        sums = np.zeros((5, 7))
        functions["sums_double"](columns.ctypes.data, 40, 7, weights.ctypes.data, 5, sums.ctypes.data)
        results.append((fused.tobytes(), sums.tobytes()))
        rng = np.random.default_rng(7)
    assert results[0] == results[1]
    assert results[0][0] == np.float32(np.float64(a) * b + c).tobytes()  # one rounding: fused


def test_the_object_loader_refuses_what_it_does_not_take(warm_cache):
    header, code = native._read_entry(entries(warm_cache)[0])
    for bad in (b"", b"\x7fELF" + bytes(60), code[:200], b"MZ" + code[2:]):
        with pytest.raises(elfload.Unloadable):
            elfload.load(bad, native._process_symbol)
    if ELF:  # a relocation of a kind it does not handle
        import struct

        shoff, shnum = struct.unpack_from("<Q", code, 40)[0], struct.unpack_from("<H", code, 60)[0]
        for i in range(shnum):
            kind, offset = struct.unpack_from("<I", code, shoff + 64 * i + 4)[0], \
                struct.unpack_from("<Q", code, shoff + 64 * i + 24)[0]
            if kind == 4:  # SHT_RELA: its first entry's kind becomes 37 (R_X86_64_IRELATIVE)
                bad = bytearray(code)
                bad[offset + 8:offset + 12] = (37).to_bytes(4, "little")
                with pytest.raises(elfload.Unloadable):
                    elfload.load(bytes(bad), native._process_symbol)
                break
        else:
            pytest.fail("no relocation section in the object")


@pytest.mark.skipif(not ELF, reason="the key is read from /proc/cpuinfo on Linux x86-64 only")
def test_the_key_without_llvmlite_names_this_cpu_and_its_flags():
    cpu, features = native.cpuinfo_machine()
    assert cpu.startswith("cpuinfo vendor_id=") and "model name=" in cpu
    assert "sse2" in features.split()


def test_a_helper_that_fails_gives_nothing_and_is_made_up_for(monkeypatch):
    monkeypatch.setattr(native, "_HELPER", "import sys; sys.stderr.write('boom'); sys.exit(3)")
    helper = native._start_helper(native.HELPER_SHARE)
    assert native._helper_ir(helper, native.HELPER_SHARE) == {}


def test_the_helpers_share_names_entry_points_and_leaves_some_here():
    assert set(native.HELPER_SHARE) < set(native._PROTOTYPES)


def test_the_entry_is_private_to_its_owner(warm_cache):
    mode = entries(warm_cache)[0].stat().st_mode
    assert not mode & 0o022


def test_a_damaged_entry_is_compiled_again_and_replaced(warm_cache, tmp_path):
    folder = copy_of(warm_cache, tmp_path)
    entry = entries(folder)[0]
    data = bytearray(entry.read_bytes())
    data[-100] ^= 0xFF  # inside the object code
    entry.write_bytes(bytes(data))
    assert probe(folder)["source"] == "compiled"
    assert entries(folder)[0].read_bytes() == entries(warm_cache)[0].read_bytes()
    assert probe(folder)["source"] == "cache"


def readable(entry: Path) -> bool:
    """Whether the loader would use this entry (without compiling to find out)."""
    return native._read_entry(entry) is not None


def test_the_warm_entry_is_readable(warm_cache, tmp_path):
    assert readable(entries(copy_of(warm_cache, tmp_path))[0])


@pytest.mark.parametrize("cut", [0, 10, 200, -1])
def test_a_truncated_entry_is_not_used(warm_cache, tmp_path, cut):
    entry = entries(copy_of(warm_cache, tmp_path))[0]
    entry.write_bytes(entry.read_bytes()[:cut])
    assert not readable(entry)


def test_an_entry_others_may_write_is_not_used(warm_cache, tmp_path):
    entry = entries(copy_of(warm_cache, tmp_path))[0]
    entry.chmod(0o620)
    assert not readable(entry)
    entry.chmod(0o602)
    assert not readable(entry)


def test_an_entry_in_a_folder_others_may_write_is_not_used_and_the_folder_is_made_private(warm_cache, tmp_path):
    folder = copy_of(warm_cache, tmp_path)
    (entry,) = entries(folder)
    (folder / "kernels").chmod(0o777)
    assert not readable(entry)
    header, code = native._read_entry(entries(warm_cache)[0])
    assert native._write_entry(entry, header, code) is None  # what a compiling run does next
    assert not (folder / "kernels").stat().st_mode & 0o077
    assert readable(entry)


def test_the_entry_is_private_whatever_the_umask(warm_cache, tmp_path):
    header, code = native._read_entry(entries(warm_cache)[0])
    entry = tmp_path / "cache" / "kernels" / "kernels-x.bin"
    old = os.umask(0)
    try:
        assert native._write_entry(entry, header, code) is None
    finally:
        os.umask(old)
    assert not entry.stat().st_mode & 0o077 and not entry.parent.stat().st_mode & 0o077
    assert readable(entry)


def test_a_write_removes_temporaries_of_killed_writes_only(warm_cache, tmp_path):
    folder = copy_of(warm_cache, tmp_path)
    (entry,) = entries(folder)
    old, fresh = folder / "kernels" / ".kernels-old.tmp", folder / "kernels" / ".kernels-new.tmp"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert native._write_entry(entry, *native._read_entry(entry)) is None
    assert not old.exists() and fresh.exists() and readable(entry)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_an_entry_owned_by_another_user_is_not_used(warm_cache, tmp_path):
    entry = entries(copy_of(warm_cache, tmp_path))[0]
    os.chown(entry, 65534, 65534)
    assert not readable(entry)


def test_a_symlinked_or_hard_linked_entry_is_not_used(warm_cache, tmp_path):
    entry = entries(copy_of(warm_cache, tmp_path))[0]
    elsewhere = tmp_path / "elsewhere.bin"
    entry.rename(elsewhere)
    entry.symlink_to(elsewhere)
    assert not readable(entry)
    entry.unlink()
    os.link(elsewhere, entry)
    assert not readable(entry)


def test_a_kernels_folder_that_is_a_link_is_not_used_nor_written(warm_cache, tmp_path):
    folder = copy_of(warm_cache, tmp_path)
    (entry,) = entries(folder)
    header, code = native._read_entry(entry)
    (folder / "kernels").rename(tmp_path / "real")
    (folder / "kernels").symlink_to(tmp_path / "real")
    assert not readable(entry)
    problem = native._write_entry(entry, header, code)
    assert problem and str(folder / "kernels") in problem


def test_no_cache_compiles_in_the_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MTCNN_CACHE_DIR="", HOME=str(tmp_path),
               XDG_CACHE_HOME=str(tmp_path / "xdg"))
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source"] == "compiled"
    assert list(tmp_path.rglob("kernels-*")) == []


def test_the_key_names_the_cpu():
    assert native.cache_key("znver3", "+avx2,+fma") != native.cache_key("skylake-avx512", "+avx2,+fma")
    assert native.cache_key("znver3", "+avx2,+fma") != native.cache_key("znver3", "+avx2,-fma")


# --- the checks before any raw pointer is passed ----------------------------------------

def conv_arguments(span=5):
    planes = np.zeros(12, np.float32)
    weights = np.zeros((3, 2), np.float32)
    offsets = np.array([0, 1], np.int64)
    blocks = np.array([0, 3], np.int64)
    out = np.zeros((2, span), np.float32)
    return [planes, weights, offsets, blocks, None, out]


def run_conv(planes, weights, offsets, blocks, slopes, out):
    return native.conv_chains(planes, native.ConvWeights(weights, slopes), native.ConvWindows(offsets, blocks), out)


def test_conv_arguments_that_fit_are_accepted():
    args = conv_arguments()
    args[1][-1] = [1.5, -2]  # the biases
    out = run_conv(*args)
    assert (out == np.array([[1.5], [-2]], np.float32)).all()


@pytest.mark.parametrize("index, bad", [
    (0, np.zeros(12, np.float64)),  # planes not float32
    (0, np.zeros(24, np.float32)[::2]),  # planes not contiguous
    (1, np.zeros((2, 3), np.float32)),  # weights for 2 columns, not 3
    (2, np.array([0, 8], np.int64)),  # the last window reaches past the planes
    (2, np.array([-1, 0], np.int64)),  # before them
    (3, np.array([0, 2], np.int64)),  # blocks do not end at K
    (3, np.array([0, 2, 2, 3], np.int64)),  # an empty block
    (3, np.array([1, 3], np.int64)),  # do not start at 0
    (4, np.zeros(3, np.float32)),  # slopes for 3 outputs, not 2
    (5, np.zeros((3, 5), np.float32)),  # out for 3 outputs
    (5, np.zeros((2, 10), np.float32)[:, ::2]),  # out's columns strided
    (5, np.zeros((2, 5), np.float64)),  # out not float32
])
def test_conv_arguments_that_do_not_fit_are_refused(index, bad):
    args = conv_arguments()
    args[index] = bad
    with pytest.raises(ValueError):
        run_conv(*args)


def test_checked_weights_and_windows_cannot_change():
    weights = native.ConvWeights(np.zeros((3, 2), np.float32))
    windows = native.ConvWindows(np.array([0, 1], np.int64), np.array([0, 3], np.int64))
    for array in (weights.matrix, weights.slopes, windows.offsets, windows.blocks):
        with pytest.raises(ValueError):
            array[...] = 7
        with pytest.raises(ValueError):
            array.setflags(write=True)
    with pytest.raises(AttributeError):
        windows.reach = 10**12


def test_max_pool_arguments_that_do_not_fit_are_refused():
    maps = np.zeros((2, 1, 5, 5), np.float32)
    with pytest.raises(ValueError):
        native.max_pool(maps, 3, 3, 2, 2, 4, 3)  # window 3 starts at row 6
    with pytest.raises(ValueError):
        native.max_pool(maps[..., ::2], 2, 2, 2, 2, 2, 2)  # strided columns
    with pytest.raises(ValueError):
        native.max_pool(maps.astype(np.float64), 2, 2, 2, 2, 2, 2)
    with pytest.raises(ValueError):
        native.max_pool(maps, 0, 2, 2, 2, 2, 2)


def resize_taps(cols, rows, copy=None):
    cols, rows = np.asarray(cols), np.asarray(rows)
    return native.ResizeTaps(cols, cols + 1, np.full(len(cols), 0.5), np.full(len(cols), 0.5),
                             np.zeros(len(cols)) if copy is None else copy, rows, rows + 1,
                             np.full(len(rows), 0.25), np.full(len(rows), 0.75))


def test_resize_linear_computes_the_stated_order_and_copies():
    """Two output rows of three values from a 3 x 4 source; the last value copied."""
    src = np.arange(12, dtype=np.float32).reshape(3, 4) * np.float32(1.1)
    taps = resize_taps([0, 1, 2], [0, 1], copy=[0, 0, 1])
    out = native.resize_linear(src, taps, np.full((2, 3), np.nan, np.float32))
    f = np.float32
    for i, r in enumerate([0, 1]):
        h0 = [src[r, c] * f(0.5) + src[r, c + 1] * f(0.5) for c in (0, 1)] + [src[r, 2]]
        h1 = [src[r + 1, c] * f(0.5) + src[r + 1, c + 1] * f(0.5) for c in (0, 1)] + [src[r + 1, 2]]
        want = [f(a * f(0.25)) + f(b * f(0.75)) for a, b in zip(h0, h1)]
        assert out[i].tolist() == np.float32(want).tolist()


def test_resize_arguments_that_do_not_fit_are_refused():
    src = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="reach"):
        native.resize_linear(src, resize_taps([0, 3], [0]), np.zeros((1, 2), np.float32))  # column 4 of 4
    with pytest.raises(ValueError, match="reach"):
        native.resize_linear(src, resize_taps([0], [2]), np.zeros((1, 1), np.float32))  # row 3 of 3
    with pytest.raises(ValueError, match="out"):
        native.resize_linear(src, resize_taps([0], [0]), np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="out"):
        native.resize_linear(src, resize_taps([0, 1], [0]), np.zeros((1, 4), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="index"):
        resize_taps([-1], [0])
    with pytest.raises(ValueError):
        native.resize_linear(src[:, ::2], resize_taps([0], [0]), np.zeros((1, 1), np.float32))
    taps = resize_taps([0], [0])
    with pytest.raises(ValueError):
        taps.columns.setflags(write=True)


def test_fc_arguments_that_do_not_fit_are_refused():
    x, w, b = np.zeros((2, 32), np.float32), np.zeros((32, 4), np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError):
        native.gemv_lanes(x, w[:30].copy(), b, np.zeros((2, 4), np.float32))  # 30 inputs
    with pytest.raises(ValueError):
        native.gemv_lanes(x, w, b, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError):
        native.sums_double(np.zeros((32, 2), np.float32), w, np.zeros((4, 2)))  # float32 weights


def test_crops_read_only_pixels_inside_the_image():
    # taps far outside the image (as a hostile or broken box could give) read zeros, never memory
    image = np.ones((4, 5, 3), np.float32)
    boxes = np.array([[-10**9, 2, 3, 3], [2, 10**12, 3, 3], [1, 1, 3, 3]], np.int64)
    far = np.array([[0, 10**11], [-5, 3], [0, 1]], np.int64)
    half = np.full((3, 2), 0.5, np.float32)
    out = native.crop_linear(image, boxes, far, far, half, half, far, far, half, half)
    assert out.shape == (3, 2, 2, 3)
    assert (out[:2] == 0).all()
    assert out[2, 0, 0, 0] == 1  # patch (0, 0) is image pixel (0, 0): 0.5 * (0.5 + 0.5) * 2


@pytest.mark.parametrize("cache", ["", "/proc/no-such-folder"])
def test_a_cache_that_cannot_be_written_is_said_once_per_run(cache, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MTCNN_CACHE_DIR=cache)
    done = subprocess.run([sys.executable, "-c", "from mtcnn_cli.cli import main; main(prog_name='mtcnn')",
                           "detect", str(ROOT / "fixtures" / "synthetic_faces.png")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count('"faces"') == 1
    notes = [line for line in done.stderr.splitlines() if "not cached" in line]
    assert len(notes) == 1 and "MTCNN_CACHE_DIR" in notes[0], done.stderr


@pytest.mark.parametrize("bad", [np.array([[2**62, 0, 3, 3]], np.int64), np.array([[-2**63, 0, 3, 3]], np.int64)])
def test_crops_refuse_places_whose_arithmetic_could_overflow(bad):
    taps = np.zeros((1, 2), np.int64)
    half = np.full((1, 2), 0.5, np.float32)
    with pytest.raises(ValueError):
        native.crop_linear(np.ones((4, 5, 3), np.float32), bad, taps, taps, half, half, taps, taps, half, half)


@pytest.mark.parametrize("sizes", [(2**63 + 3, 1, 2**65 + 2, 1, 2, 2), (3, 1, np.int64(2**61 + 1), 1, 1, 5),
                                   (2, 2, 2, 2, 0, 2), (2.0, 2, 2, 2, 2, 2)])
def test_max_pool_refuses_sizes_whose_arithmetic_could_overflow(sizes):
    with pytest.raises((ValueError, TypeError)):
        native.max_pool(np.zeros((2, 1, 5, 5), np.float32), *sizes)


def test_outputs_must_be_writable():
    x, w, b = np.zeros((2, 32), np.float32), np.zeros((32, 4), np.float32), np.zeros(4, np.float32)
    out = np.frombuffer(bytes(32), np.float32).reshape(2, 4)
    with pytest.raises(ValueError):
        native.gemv_lanes(x, w, b, out)
    with pytest.raises(ValueError):
        native.sums_double(np.zeros((32, 2), np.float32), w.astype(np.float64),
                           np.frombuffer(bytes(64), np.float64).reshape(4, 2))


def test_the_ctypes_prototypes_match_the_compiled_signatures():
    from numba import types

    from mtcnn_cli.detector import kernels
    assert set(native._PROTOTYPES) == set(kernels.ENTRY_POINTS)
    assert native.LANES == kernels.LANES  # native states it again so as not to import numba
    for name, signature in kernels.ENTRY_POINTS.items():
        kinds = ["pointer" if isinstance(t, types.CPointer) else "int" for t in signature.args]
        want = ["pointer" if p is native._P else "int" for p in native._PROTOTYPES[name]]
        assert kinds == want, name
        assert all(t == types.int64 for t in signature.args if not isinstance(t, types.CPointer)), name


def test_a_header_that_names_no_entry_points_is_compiled_again(warm_cache, tmp_path):
    folder = copy_of(warm_cache, tmp_path)
    entry = entries(folder)[0]
    data = entry.read_bytes()
    magic, header, code = data.split(b"\n", 2)
    fields = json.loads(header)
    fields["symbols"] = {name: "no_such_symbol" for name in fields["symbols"]}
    entry.write_bytes(magic + b"\n" + json.dumps(fields).encode() + b"\n" + code)
    assert probe(folder)["source"] == "compiled"
    assert probe(folder)["source"] == "cache"


@pytest.mark.parametrize("rects, order", [
    (np.zeros((3, 4), np.int64), np.array([0, 1, 3], np.int64)),  # an index past the rects
    (np.zeros((3, 4), np.int64), np.array([0, -1, 2], np.int64)),  # before them
    (np.zeros((3, 4), np.int64), np.array([0, 1], np.int64)),  # fewer indices than rects
    (np.zeros((3, 4), np.float32), np.array([0, 1, 2], np.int64)),  # rects not int64
    (np.zeros((3, 4), np.int64)[:, ::2], np.array([0, 1], np.int64)),  # rects strided
])
def test_nms_arguments_that_do_not_fit_are_refused(rects, order):
    with pytest.raises(ValueError):
        native.nms(rects, order, 0.5, False)


@pytest.mark.parametrize("runs", [(5, 6), (5, 0), (0, 0), (-1, 1)])
def test_conv_runs_that_do_not_fit_are_refused(runs):
    """A run longer than its step, empty, or negative."""
    planes, weights, offsets, blocks, _, out = conv_arguments()
    with pytest.raises(ValueError):
        native.conv_chains(planes, native.ConvWeights(weights), native.ConvWindows(offsets, blocks), out, runs)


def test_resize_taps_made_together_resize_as_each_made_alone():
    """ResizeTaps.many cuts one set of arrays into several resizes' taps: each
    resizes as the same taps made alone, and reaches what they reach."""
    rng = np.random.default_rng(5)
    src = rng.standard_normal((9, 12)).astype(np.float32)
    parts = [(rng.integers(0, 11, n_cols), rng.integers(0, 8, n_rows)) for n_cols, n_rows in ((5, 3), (1, 1), (7, 4))]
    alone = [resize_taps(cols, rows, copy=(cols % 3 == 0).astype(np.int64)) for cols, rows in parts]
    cols = np.concatenate([c for c, _ in parts])
    rows = np.concatenate([r for _, r in parts])
    together = native.ResizeTaps.many(
        (cols, cols + 1, np.full(len(cols), 0.5), np.full(len(cols), 0.5), (cols % 3 == 0).astype(np.int64)),
        (rows, rows + 1, np.full(len(rows), 0.25), np.full(len(rows), 0.75)), [5, 6, 13], [3, 4, 8])
    for one, other in zip(alone, together):
        assert (one.reach, one.height, one.shape) == (other.reach, other.height, other.shape)
        a = native.resize_linear(src, one, np.full(one.shape, np.nan, np.float32))
        b = native.resize_linear(src, other, np.full(other.shape, np.nan, np.float32))
        assert (a.view(np.uint32) == b.view(np.uint32)).all()
    with pytest.raises(ValueError):
        other.columns.setflags(write=True)
    empty = native.ResizeTaps.many((cols[:2], cols[:2] + 1, [0.5] * 2, [0.5] * 2, [0, 0]),
                                   (rows[:1], rows[:1] + 1, [0.25], [0.75]), [0, 2], [1, 1])
    assert [t.shape for t in empty] == [(1, 0), (0, 2)] and [t.reach for t in empty] == [0, int(cols[:2].max()) + 2]


@pytest.mark.parametrize("col_ends, row_ends", [([2], [1]), ([3, 2, 5], [1, 1, 1]), ([5], [1, 1]), ([5], [2])])
def test_resize_taps_cut_where_they_do_not_end_are_refused(col_ends, row_ends):
    """Ends past the columns or rows, not in order, one list longer, or short of the end."""
    cols, rows = np.arange(5), np.zeros(1, np.int64)
    with pytest.raises(ValueError):
        native.ResizeTaps.many((cols, cols + 1, [0.5] * 5, [0.5] * 5, [0] * 5), (rows, rows, [1.0], [0.0]),
                               col_ends, row_ends)


def test_conv_windows_by_map_that_do_not_fit_are_refused():
    planes, weights, offsets, blocks, _, out = conv_arguments()
    with pytest.raises(ValueError):
        native.ConvWindows(offsets, blocks, np.array([0, -1], np.int64))  # a negative map
    with pytest.raises(ValueError):
        native.ConvWindows(offsets, blocks, np.array([0], np.int64))  # a map for one column of two
    windows = native.ConvWindows(offsets, blocks, np.array([0, 1], np.int64))
    with pytest.raises(ValueError):  # map 1 of 7 values: the last window reaches past the 12 inputs
        native.conv_chains(planes, native.ConvWeights(weights), windows, out, plane=7)
    native.conv_chains(planes, native.ConvWeights(weights), windows, out, plane=6)


def test_the_fast_address_is_the_arrays_own():
    """_data: the buffer protocol's address where it may be used, .ctypes.data
    elsewhere, the same address either way: a contiguous array, a contiguous
    view into another, a strided view, a read-only array, an empty one."""
    base = np.arange(60, dtype=np.float32).reshape(6, 10)
    frozen = base.copy()
    frozen.flags.writeable = False
    for array in (base, base[2:], base[:, 3:], base[1:, ::2], frozen, base[:0], np.zeros(0, np.int64)):
        assert native._data(array) == array.ctypes.data
