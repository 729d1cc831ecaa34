"""Reading images: the same pixels as cv2.imread, and a reason for every failure."""
import os
import struct

import cv2
import numpy as np
import pytest

from mtcnn_cli.io import images
from mtcnn_cli.io.images import ImageError, header_size, read_image

CORPUS_SAMPLE = ["opencv__lena.jpg", "facenet__paul_rudd_1.png", "facerec__32bit.png",
                 "openface__sample3_16bit_rgb.png", "openface__sample3_16bit_gray.png",
                 "dlib__2008_007676_derived_gray.bmp", "retinaface__img3_derived_gray.png"]


@pytest.mark.parametrize("name", CORPUS_SAMPLE)
def test_pixels_are_those_of_imread(corpus, name):
    path = corpus / name
    ours = read_image(str(path))
    theirs = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape and ours.shape[2] == 3
    assert np.array_equal(ours, theirs)


def _encoded(ext, image, params=()):
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok
    return data.tobytes()


def _exif_jpeg(image, orientation):
    """A JPEG with an EXIF APP1 segment holding only the orientation tag."""
    tiff = (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
            + struct.pack("<HHII", 0x0112, 3, 1, orientation) + struct.pack("<I", 0))
    body = b"Exif\x00\x00" + tiff
    data = _encoded(".jpg", image)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:]


def test_exif_orientation_applied_as_imread_does(tmp_path):
    image = np.zeros((30, 50, 3), np.uint8)
    image[:, :10] = 255
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_exif_jpeg(image, 6))
    ours = read_image(str(path))
    assert ours.shape == (50, 30, 3)  # rotated by 90 degrees
    assert np.array_equal(ours, cv2.imread(str(path), cv2.IMREAD_COLOR))


def test_sixteen_bit_and_four_channel_pngs_become_8_bit_bgr(tmp_path):
    rng = np.random.default_rng(1)
    deep = rng.integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    (tmp_path / "deep.png").write_bytes(_encoded(".png", deep))
    bgra = rng.integers(0, 256, (20, 30, 4)).astype(np.uint8)
    (tmp_path / "alpha.png").write_bytes(_encoded(".png", bgra))
    got = read_image(str(tmp_path / "deep.png"))
    assert got.dtype == np.uint8 and np.array_equal(got, (deep >> 8).astype(np.uint8))
    assert np.array_equal(read_image(str(tmp_path / "alpha.png")), bgra[:, :, :3])


def test_non_utf8_file_name(tmp_path):
    image = np.full((8, 9, 3), 7, np.uint8)
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff.png"
    with open(raw, "wb") as f:
        f.write(_encoded(".png", image))
    as_text = os.fsdecode(raw)  # surrogate escapes, as a folder walk gives it
    assert np.array_equal(read_image(as_text), image)
    assert np.array_equal(read_image(raw), image)


@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".bmp", "BMP"),
                                     (".tif", "TIFF"), (".webp", "WebP")])
def test_header_size_matches_decoded_size(ext, fmt):
    image = np.random.default_rng(2).integers(0, 256, (37, 53, 3)).astype(np.uint8)
    data = _encoded(ext, image)
    assert images.sniff_format(data) == fmt
    assert header_size(data) == (53, 37)


def test_header_size_of_lossless_webp_and_unknown_bytes():
    image = np.random.default_rng(3).integers(0, 256, (21, 34, 3)).astype(np.uint8)
    data = _encoded(".webp", image, (cv2.IMWRITE_WEBP_QUALITY, 101))  # above 100: lossless VP8L
    assert data[12:16] == b"VP8L"
    assert header_size(data) == (34, 21)
    assert header_size(b"GIF89a....") is None
    assert header_size(b"\xff\xd8\xff") is None  # a JPEG cut inside its header


def _reason(path, **kwargs):
    with pytest.raises(ImageError) as caught:
        read_image(str(path), **kwargs)
    return caught.value.reason


def test_failures_have_reasons(tmp_path):
    good = _encoded(".jpg", np.full((40, 40, 3), 128, np.uint8))
    png = _encoded(".png", np.full((40, 40, 3), 128, np.uint8))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_bytes(b"these are not the pixels you are looking for")
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "cut.png").write_bytes(png[: len(png) - 20])
    (tmp_path / "folder.jpg").mkdir()
    corrupt = bytearray(png)
    corrupt[60:70] = b"\x00" * 10  # inside the compressed pixels: the CRC no longer matches
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    assert _reason(tmp_path / "missing.jpg") == "no such file"
    assert _reason(tmp_path / "empty.jpg") == "empty file"
    assert _reason(tmp_path / "text.jpg") == "not an image (unknown format)"
    assert _reason(tmp_path / "cut.jpg") == "truncated JPEG data"
    assert _reason(tmp_path / "cut.png") == "truncated PNG data"
    assert _reason(tmp_path / "folder.jpg") == "is a directory"
    assert _reason(tmp_path / "corrupt.png") == "corrupt or unsupported PNG data"


def test_data_appended_after_a_complete_jpeg_is_not_truncation(tmp_path):
    """A phone's motion photo: a JPEG, then a video whose bytes may hold FF DA."""
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for params in ((), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_RST_INTERVAL, 2)):
        good = _encoded(".jpg", image, params)
        path = tmp_path / "motion.jpg"
        path.write_bytes(good + b"ftypmp42\x00\xff\xda\x00\x0c video \xff\xd8\xff\xda")
        assert np.array_equal(read_image(str(path)), cv2.imread(str(path), cv2.IMREAD_COLOR))
        for cut in (len(good) - 2, len(good) - 30, len(good) // 2, 200, 21):
            path.write_bytes(good[:cut])
            assert _reason(path) == "truncated JPEG data", (params, cut)


def test_a_fifo_named_like_an_image_does_not_block(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert _reason(fifo) == "not a regular file"


def test_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "secret.png"
    path.write_bytes(_encoded(".png", np.zeros((4, 4, 3), np.uint8)))
    path.chmod(0)
    if os.access(path, os.R_OK):  # root ignores file modes: make open() refuse instead
        def refuse(p):
            raise PermissionError(13, "Permission denied", os.fsdecode(p))
        monkeypatch.setattr(images, "_open_readonly", refuse)
    assert _reason(path) == "permission denied"


def test_max_pixels_checked_in_the_header_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(_encoded(".png", np.zeros((100, 120, 3), np.uint8)))
    monkeypatch.setattr(images, "decode", lambda data: pytest.fail("decoded a too large image"))
    with pytest.raises(ImageError) as caught:
        read_image(str(path), max_pixels=100 * 120 - 1)
    assert caught.value.reason.startswith("too large: 120x100 is 12000 pixels")
    assert (caught.value.width, caught.value.height) == (120, 100)


def test_max_pixels_limit_is_inclusive(tmp_path):
    path = tmp_path / "exact.png"
    path.write_bytes(_encoded(".png", np.zeros((10, 12, 3), np.uint8)))
    assert read_image(str(path), max_pixels=120).shape == (10, 12, 3)


def test_tiny_and_strip_images_are_read(tmp_path):
    for name, shape in (("dot.png", (1, 1, 3)), ("strip.png", (1, 300, 3)), ("tall.bmp", (200, 1, 3))):
        (tmp_path / name).write_bytes(_encoded(os.path.splitext(name)[1], np.ones(shape, np.uint8)))
        assert read_image(str(tmp_path / name)).shape == shape


def test_decoder_complaints_do_not_reach_stderr(tmp_path, capfd):
    png = _encoded(".png", np.full((40, 40, 3), 9, np.uint8))
    corrupt = bytearray(png)
    corrupt[60:70] = b"\x00" * 10
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    with pytest.raises(ImageError):
        read_image(str(tmp_path / "corrupt.png"))
    assert capfd.readouterr().err == ""
