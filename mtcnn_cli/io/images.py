"""Reading images as OpenFace reads them, with a reason for every failure.

OpenFace calls cv2.imread(path, IMREAD_COLOR): 8-bit BGR, alpha dropped, grey
expanded, 16-bit samples scaled down, EXIF orientation applied. We read the
file's bytes ourselves and decode them with cv2.imdecode(IMREAD_COLOR), which
gives the same pixels and also works for any byte string as a file name.

Before decoding we check what is cheap to check: that the path is a regular
file, that it is not empty, that its first bytes are those of a format OpenCV
decodes (else nothing more is read), that its size is below a cap that
follows from the pixel limit, the pixel count written in its header (PNG,
JPEG, BMP, TIFF, WebP; a JPEG's segments and a TIFF's directory are looked up
wherever they are in the file) against the limit, and that a JPEG or PNG is
not cut short. For every other format OpenCV's decoder itself is told the
limit (OPENCV_IO_MAX_IMAGE_PIXELS, read once when OpenCV loads: `mtcnn detect`
sets it from --max-pixels before that; worker processes inherit it).
"""
from __future__ import annotations

import errno
import os
import re
import stat
import struct
from contextlib import contextmanager

from ..base import defaults

# the decoder's own pixel limit, read when OpenCV loads (unless already set)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(defaults.MAX_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

# What a folder search takes: every extension cv2.imread documents whose decoder
# OpenCV's wheels carry (checked against OpenCV 5.1: each decodes). A fixed
# list, not probed per machine, so that every node of a cluster walks the
# same list; a file that this OpenCV cannot decode after all is a skipped
# image, with its reason. .exr is left out: OpenCV's wheels build no OpenEXR
# (and turn it off at run time where built); --ext .exr takes such files.
IMAGE_EXTENSIONS = frozenset({
    ".bmp", ".dib", ".gif", ".jpeg", ".jpg", ".jpe", ".jp2", ".png", ".webp", ".avif",
    ".pbm", ".pgm", ".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".tif", ".tiff", ".hdr", ".pic",
})
DEFAULT_MAX_PIXELS = defaults.MAX_PIXELS
HEADER_BYTES = 256 * 1024  # enough for the header of nearly every file


class ImageError(Exception):
    """An image that cannot be used. `reason` is a short phrase for messages
    ("no such file", "truncated JPEG data", ...); width and height are set when
    the header gave them; `path` is the file's path as given (None for bytes).
    The message is "PATH: reason" (just the reason without a path)."""

    def __init__(self, reason: str, width: int | None = None, height: int | None = None, path=None):
        super().__init__(reason)
        self.reason, self.width, self.height, self.path = reason, width, height, path

    def __str__(self) -> str:
        if self.path is None:
            return self.reason
        return f"{printable(self.path)}: {self.reason}"


def printable(path) -> str:
    """A path as text that can be printed: undecodable bytes as \\xNN."""
    text = os.fsdecode(path) if isinstance(path, bytes) else str(os.fspath(path))
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_WINDOWS = re.compile(r"([A-Za-z]:[\\/]|\\\\[^\\]+\\)")  # C:\..., C:/..., \\server\...


def not_a_file_reason(path) -> str | None:
    """Why a PATH that names no file is not one, when it is plainly something
    else: a URL (never fetched: the decision is that a file is downloaded
    first), a Windows path on a POSIX system, or a shell pattern the shell
    passed through because it matched nothing. None when it may just be a
    missing file (or when it exists)."""
    try:
        text = os.fsdecode(os.fspath(path))
        if os.path.lexists(path):
            return None
    except (TypeError, ValueError):
        return None
    if _URL.match(text):
        return "URLs are not read: download the file first"
    if os.sep == "/" and _WINDOWS.match(text):
        return ("a Windows path, which is not a path on this system: give the file's path as this "
                "system names it (under WSL, C:\\ is /mnt/c/)")
    if any(c in text for c in "*?["):
        return f"no file matches the pattern {printable(text)} (the shell passed it through unexpanded)"
    return None


# --- what the bytes say -------------------------------------------------------

def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's first bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8"):
        return "JPEG"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


# Formats OpenCV decodes beyond those above (its decoders are chosen by these
# same signatures): GIF, JPEG 2000 (file or codestream), AVIF, Radiance HDR,
# Sun raster, PNM/PAM (P1-P7), PFM, BigTIFF, and OpenEXR where it is built in.
EXR_SIGNATURE = b"\x76\x2f\x31\x01"
_OTHER_SIGNATURES = (b"GIF87a", b"GIF89a", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51",
                     b"#?RADIANCE", b"#?RGBE", b"\x59\xa6\x6a\x95", b"II+\x00", b"MM\x00+", EXR_SIGNATURE)


def opencv_format(data: bytes) -> bool:
    """Whether the first bytes of a file are those of a format OpenCV decodes."""
    if sniff_format(data) is not None or data.startswith(_OTHER_SIGNATURES):
        return True
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis", b"mif1", b"msf1"):
        return True
    return len(data) >= 3 and data[0:1] == b"P" and data[1:2] in b"1234567Ff" and data[2:3].isspace()


def max_file_bytes(max_pixels: int) -> int:
    """The largest file an image of max_pixels pixels can need: 16 bytes a
    pixel (four float32 channels, uncompressed) and 16 MiB of metadata."""
    return 16 * max_pixels + (16 << 20)


def _png_size(data: bytes):
    if len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


# JPEG start-of-frame markers: C0..CF except DHT (C4), JPG (C8) and DAC (CC)
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xDA)) | {0x01}  # RSTn, SOI, EOI, TEM


def _jpeg_size(data: bytes):
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE_MARKERS:
            at += 2
            continue
        if marker == 0xDA:  # scan data before any frame header
            return None
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        if marker in _SOF_MARKERS:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        at += 2 + length
    return None


def _bmp_size(data: bytes):
    if len(data) < 26:
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def _tiff_size(data: bytes):
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return None
    (ifd,) = struct.unpack(order + "I", data[4:8])
    if ifd + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    found = {}
    for i in range(count):
        entry = data[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
        if len(entry) < 12:
            return None
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            if kind == 3:  # SHORT
                found[tag] = struct.unpack(order + "H", entry[8:10])[0]
            elif kind == 4:  # LONG
                found[tag] = struct.unpack(order + "I", entry[8:12])[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _webp_size(data: bytes):
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


_SIZE_READERS = {"PNG": _png_size, "JPEG": _jpeg_size, "BMP": _bmp_size,
                 "TIFF": _tiff_size, "WebP": _webp_size}


class _FileView:
    """A file's bytes as `data[a:b]` and `len(data)`, read with pread where
    they are beyond the head already read: so that the size readers find a
    JPEG's frame header after 300 KB of comments, or a TIFF's directory at
    the end of the file, without reading the file."""

    def __init__(self, fd: int, size: int, head: bytes):
        self.fd, self.size, self.head, self.reads = fd, size, head, 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key):
        if isinstance(key, int):
            return self[key:key + 1][0]
        start, stop = key.start or 0, self.size if key.stop is None else min(key.stop, self.size)
        if stop <= len(self.head):
            return self.head[start:stop]
        self.reads += 1
        if self.reads > 100_000:  # a file of nothing but tiny segments: left to the decoder's limit
            raise struct.error("too many segments")
        return os.pread(self.fd, max(0, stop - start), start)


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header at the start of `data`, or None when the
    format is unknown or the header is not within `data`."""
    reader = _SIZE_READERS.get(sniff_format(data))
    try:
        return reader(data) if reader else None
    except struct.error:
        return None


# in entropy-coded data, the next marker: 0xFF then neither a stuffed 0x00,
# a restart marker (D0-D7) nor another fill byte
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # markers without a length
_EOI, _SOS = 0xD9, 0xDA


def jpeg_cut_short(data: bytes) -> bool:
    """Walk the JPEG's segments and scans from the start: True when the data
    ends before the end-of-image marker. Anything after that marker (the
    video of a phone's motion photo, ...) is not looked at; a structure that
    does not parse is left to the decoder (False)."""
    size, pos = len(data), 2  # after the start-of-image marker
    while True:
        while pos + 1 < size and data[pos] == 0xFF and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > size:
            return True
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == _EOI:
            return False
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 4 > size:
            return True
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")  # the length counts itself
        if pos > size:
            return True
        if marker == _SOS:
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                return True
            pos = found.start()


def cut_short(data: bytes, fmt: str | None) -> bool:
    """True when a JPEG ends before its end-of-image marker, or a PNG has no
    IEND chunk: the file was cut short (an interrupted copy or download).
    Other formats are left to the decoder."""
    if fmt == "JPEG":
        return jpeg_cut_short(data)
    if fmt == "PNG":
        return data.rfind(b"IEND") < 0
    return False


# --- reading ------------------------------------------------------------------

_REASONS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a directory",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOTDIR: "no such file (a parent is not a folder)",
}


def os_reason(e: OSError) -> str:
    """A short lower-case reason for an OSError."""
    reason = _REASONS.get(e.errno)
    if reason:
        return reason
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:]


def _open_readonly(path) -> int:
    """An fd for reading; O_NONBLOCK so that a FIFO named like an image cannot
    block the batch (it is then rejected as not a regular file)."""
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


def _read_fd(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes from the current position of fd."""
    parts, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 24))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(f"too large: {width}x{height} is {width * height} pixels, "
                         f"more than the limit of {max_pixels} (--max-pixels)", width, height)


def _check_head(head: bytes, size: int, max_pixels: int, view) -> None:
    """The checks made before decoding, on a file's first bytes (head), its
    size and its bytes (view: the whole data, or a _FileView of the file):
    a format OpenCV decodes, a size an image of max_pixels pixels can have,
    the header's pixel count. Raises ImageError."""
    if not opencv_format(head):
        raise ImageError("not an image (unknown format)")
    if size > max_file_bytes(max_pixels):
        raise ImageError(f"too large: {size} bytes, more than an image of "
                         f"{max_pixels} pixels (--max-pixels) can need")
    fmt = sniff_format(head)
    try:
        dims = _SIZE_READERS[fmt](view) if fmt else None
    except (struct.error, IndexError, OSError):
        dims = None
    if dims is not None:
        _check_pixels(*dims, max_pixels)


def read_file(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes of an image file, after the checks that need no decoding.
    Raises ImageError (its path not set: read_image sets it)."""
    try:
        fd = _open_readonly(path)
    except OSError as e:
        if e.errno == errno.ENOENT:
            reason = not_a_file_reason(path)
            if reason:
                raise ImageError(reason) from None
        raise ImageError(os_reason(e)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError("is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError("not a regular file")
        if info.st_size == 0:
            raise ImageError("empty file")
        data = _read_fd(fd, HEADER_BYTES)
        _check_head(data, info.st_size, max_pixels, _FileView(fd, info.st_size, data))
        data += _read_fd(fd, 1 << 62)
    except OSError as e:
        raise ImageError(os_reason(e)) from None
    except MemoryError:
        raise ImageError("too large for the memory left") from None
    finally:
        os.close(fd)
    if not data:
        raise ImageError("empty file")
    return data


@contextmanager
def _silenced_stderr():
    """Send file descriptor 2 to /dev/null: libpng and libjpeg print their
    complaints there, and our stderr carries one line per skipped image."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def decode(data: bytes) -> np.ndarray:
    """Image file bytes -> uint8 (H, W, 3) BGR, as cv2.imread(IMREAD_COLOR).
    Raises ImageError."""
    fmt = sniff_format(data)
    if cut_short(data, fmt):
        raise ImageError(f"truncated {fmt} data")
    try:
        with _silenced_stderr():
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:
        if "validateInputImageSize" in str(e):
            raise ImageError(f"too large: more than {os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS')} "
                             f"pixels, the limit the decoder was given (--max-pixels)") from None
        if "memory" in str(e).lower() or "allocate" in str(e).lower():
            raise ImageError("too large for the memory left") from None
        image = None
    except MemoryError:
        raise ImageError("too large for the memory left") from None
    if image is None or image.size == 0:
        if data.startswith(EXR_SIGNATURE):
            raise ImageError("corrupt or unsupported OpenEXR data (OpenCV's own wheels decode no OpenEXR)")
        if fmt is None:
            raise ImageError("not an image (unknown format)")
        raise ImageError(f"corrupt or unsupported {fmt} data")
    return image


def _decoded(data: bytes, max_pixels: int) -> np.ndarray:
    image = decode(data)
    height, width = image.shape[:2]
    _check_pixels(width, height, max_pixels)
    return image


def read_image(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image at `path` as OpenFace reads it: uint8 (H, W, 3) BGR.

    Raises ImageError(reason) for a missing, unreadable, empty, truncated,
    corrupt or too large (more than max_pixels pixels) file, and for a PATH
    that is no file at all (a URL, a Windows path, an unexpanded pattern);
    the error's path is `path`."""
    try:
        return _decoded(read_file(path, max_pixels), max_pixels)
    except ImageError as e:
        if e.path is None:
            e.path = path
        raise


def read_image_bytes(data, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The bytes of an image file (bytes, bytearray, memoryview), read exactly
    as read_image reads the file: the same checks, the same decoder, the same
    pixels. Raises ImageError (path None)."""
    data = bytes(data)
    if not data:
        raise ImageError("empty file")
    try:
        _check_head(data[:HEADER_BYTES], len(data), max_pixels, data)
    except MemoryError:
        raise ImageError("too large for the memory left") from None
    return _decoded(data, max_pixels)
