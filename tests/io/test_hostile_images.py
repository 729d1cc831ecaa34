"""Hostile image files cost bounded memory and time.
The size is known before decoding (a JPEG's frame header after large
segments, a TIFF's directory at the end), else the decoder is told the limit;
the format is decided from the first bytes and the file size is capped; a
lack of memory skips one image with a clear reason."""
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtcnn_cli.io import images
from mtcnn_cli.io.images import ImageError, read_image

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]


def jpeg_30000_with_comments(path, comments=5):
    """A 30000x30000 JPEG frame header after `comments` 64 KiB comment segments
    (more than the head we read at first)."""
    ok, data = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(data.tobytes())
    at = 2
    while data[at + 1] != 0xC0:
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    data[at + 5:at + 9] = struct.pack(">HH", 30000, 30000)
    segment = b"\xff\xfe" + struct.pack(">H", 65535) + b"c" * 65533
    path.write_bytes(bytes(data[:2]) + segment * comments + bytes(data[2:]))
    return path


def tiff_with_directory_at_the_end(path, width=30000, height=30000):
    """A deflate TIFF whose directory (IFD) follows 400 KB of strip data, as
    PIL writes them."""
    strip = b"\x78\x9c" + b"\x00" * 400_000
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height),
               (279, 4, 1, len(strip))]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3
                                                        else struct.pack("<I", value))
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8 + len(strip)) + strip + ifd)
    return path


def read_in_a_small_process(path, max_pixels=100_000_000, memory_mb=1200, env=None):
    """read_image in a child limited to `memory_mb` of address space: (reason or
    shape, seconds). Decoding a 30000x30000 image there cannot succeed."""
    code = (f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_mb << 20}, {memory_mb << 20}))\n"
            "from mtcnn_cli.io.images import read_image, ImageError\n"
            f"try:\n    print(read_image({str(path)!r}, {max_pixels}).shape)\n"
            "except ImageError as e:\n    print(e.reason)\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().strip(), time.monotonic() - started


def test_jpeg_frame_header_after_large_segments_is_found_before_decoding(tmp_path):
    path = jpeg_30000_with_comments(tmp_path / "big.jpg")
    with pytest.raises(ImageError, match="too large: 30000x30000"):
        images.read_file(str(path))
    reason, seconds = read_in_a_small_process(path)
    assert reason.startswith("too large: 30000x30000") and seconds < 10


def test_tiff_directory_at_the_end_is_found_before_decoding(tmp_path):
    path = tiff_with_directory_at_the_end(tmp_path / "big.tif")
    with pytest.raises(ImageError, match="too large: 30000x30000"):
        images.read_file(str(path))
    small = tiff_with_directory_at_the_end(tmp_path / "small.tif", 40, 30)
    assert images.read_file(str(small))  # under the limit: read whole


def test_other_formats_are_limited_by_the_decoder(tmp_path):
    """PNM has no header reader of ours: OpenCV's decoder gets the limit."""
    path = tmp_path / "big.ppm"
    path.write_bytes(b"P6\n30000 30000\n255\n" + bytes(1000))
    reason, _ = read_in_a_small_process(path, max_pixels=1_000_000,
                                        env={"OPENCV_IO_MAX_IMAGE_PIXELS": "1000000"})
    assert reason.startswith("too large") and "limit the decoder was given" in reason


def test_detect_tells_the_decoder_its_max_pixels(tmp_path):
    path = tmp_path / "big.ppm"
    path.write_bytes(b"P6\n3000 3000\n255\n" + bytes(1000))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OPENCV_IO_MAX_IMAGE_PIXELS", None)
    done = subprocess.run([sys.executable, "-c", "from mtcnn_cli.cli import main; main(prog_name='mtcnn')",
                           "detect", str(path), "--max-pixels", "1000000", "--format", "jsonl"],
                          capture_output=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert b"too large" in done.stdout and b"limit the decoder was given" in done.stdout


@pytest.mark.parametrize("head,reason", [
    (b"just some text", "not an image"),  # the format is decided from the first bytes
    (b"\xff\xd8\xff\xe0", "too large: 2147483648 bytes"),  # a JPEG's start: the size cap
])
def test_a_2_gb_file_is_refused_without_being_read(tmp_path, head, reason):
    path = tmp_path / "huge.jpg"  # sparse: no disk used
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(2 << 30)
    started = time.monotonic()
    with pytest.raises(ImageError, match=reason):
        read_image(str(path))
    assert time.monotonic() - started < 1
    assert images.max_file_bytes(100_000_000) > 12 * 100_000_000  # room for any honest encoding


@pytest.mark.parametrize("name,head", [
    ("a.gif", b"GIF89a"), ("a.ppm", b"P6\n"), ("a.pgm", b"P5 "), ("a.pfm", b"PF\n"), ("a.ras", b"\x59\xa6\x6a\x95"),
    ("a.hdr", b"#?RADIANCE"), ("a.jp2", b"\x00\x00\x00\x0cjP  \r\n\x87\n"), ("a.avif", b"\x00\x00\x00\x1cftypavif"),
])
def test_opencv_formats_are_recognised_by_their_first_bytes(name, head):
    assert images.opencv_format(head + bytes(32))


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm", ".pgm", ".ras", ".jp2",
                                 ".hdr", ".pfm"])
def test_every_format_opencv_writes_is_still_read(tmp_path, ext):
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    if ext == ".pfm" or ext == ".hdr":
        image = image.astype(np.float32) / 255
    ok, data = cv2.imencode(ext, image)
    if not ok:
        pytest.skip(f"this OpenCV cannot write {ext}")
    path = tmp_path / f"x{ext}"
    path.write_bytes(data.tobytes())
    assert np.array_equal(read_image(str(path)), cv2.imread(str(path), cv2.IMREAD_COLOR))


def test_a_memory_error_while_reading_is_a_reason(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    ok, data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    path.write_bytes(data.tobytes())
    real = images._read_fd

    def short_of_memory(fd, limit):
        if limit > images.HEADER_BYTES:
            raise MemoryError
        return real(fd, limit)

    monkeypatch.setattr(images, "_read_fd", short_of_memory)
    with pytest.raises(ImageError, match="too large for the memory left"):
        read_image(str(path))


def test_a_valid_image_too_large_for_the_memory_left_is_not_called_corrupt(tmp_path):
    path = tmp_path / "valid.png"
    ok, data = cv2.imencode(".png", np.zeros((12000, 12000, 3), np.uint8))
    path.write_bytes(data.tobytes())
    reason, _ = read_in_a_small_process(path, max_pixels=200_000_000, memory_mb=800,
                                        env={"OPENCV_IO_MAX_IMAGE_PIXELS": "200000000"})
    assert reason == "too large for the memory left"


def test_the_batch_goes_on_after_a_memory_error(tmp_path, monkeypatch):
    from mtcnn_cli.run import batch

    class Short:
        calls = 0

        def detect(self, image):
            Short.calls += 1
            if Short.calls == 1:
                raise MemoryError
            return []

    for name in ("a.png", "b.png"):
        ok, data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
        (tmp_path / name).write_bytes(data.tobytes())
    tasks = [batch.Task(str(tmp_path / n)) for n in ("a.png", "b.png")]
    results = [o.result for o in batch.run_tasks(tasks, batch.Settings(), 1, detector=Short())]
    assert results[0].error == "out of memory" and results[1].error is None and results[1].faces == []
