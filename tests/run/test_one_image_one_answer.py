"""One image, one answer: a file's path, its bytes, a PIL image opened from it
and its cv2.imread array give the faces `mtcnn detect FILE` gives.

The files are real ones, written by Pillow or OpenCV (a JPEG whose EXIF says
"turn a quarter clockwise", 16-bit PGM, PNG and TIFF files, the modes Pillow
opens files in), and every expected pixel comes from cv2.imread of the file,
never from our code. The faces are those of the bundled synthetic sample,
whose drawn face centres are known (fixtures/make_synthetic_faces.py)."""
import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from mtcnn_cli import Detector, ImageError  # noqa: E402
from mtcnn_cli.io.images import read_image  # noqa: E402
from mtcnn_cli.run import library  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"
MTCNN = Path(sys.executable).parent / "mtcnn"  # the installed command, as a user runs it
FACE_CENTRES = [(150, 180), (350, 175)]  # where make_synthetic_faces.py draws the two faces
ORIENTATION = 0x0112


def cli_faces(path):
    """The faces `mtcnn detect FILE` writes, from a real process."""
    done = subprocess.run([str(MTCNN), "detect", str(path), "-q"], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    return record["faces"]


def as_records(faces):
    return [face.to_dict() for face in faces]


def four_ways(detector, path):
    """The faces of the path, its bytes, a PIL image opened from it and its
    cv2.imread array, as records; no warning may be raised on the way."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Image.open(path) as image:
            from_pil = detector.detect(image)
    return {"path": as_records(detector.detect(path)),
            "bytes": as_records(detector.detect(Path(path).read_bytes())),
            "PIL": as_records(from_pil),
            "cv2.imread": as_records(detector.detect(cv2.imread(str(path), cv2.IMREAD_COLOR)))}


def contains(face, point):
    x, y = point
    return face["x"] <= x <= face["x"] + face["width"] and face["y"] <= y <= face["y"] + face["height"]


def exif_with(orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif


# --- a turned JPEG -------------------------------------------------------------------------

def test_a_jpeg_turned_by_its_exif_gives_the_same_faces_every_way(detector, sample, tmp_path):
    """Stored a quarter turn anticlockwise, with EXIF orientation 6 (turn it a
    quarter clockwise to show it): cv2.imread shows it upright, and so must
    every way of giving it."""
    path = tmp_path / "turned.jpg"
    stored = np.ascontiguousarray(np.rot90(sample, 1))  # anticlockwise
    Image.fromarray(stored[:, :, ::-1]).save(path, exif=exif_with(6), quality=95)
    assert cv2.imread(str(path), cv2.IMREAD_COLOR).shape == sample.shape  # upright again
    with Image.open(path) as image:
        assert image.size == (sample.shape[0], sample.shape[1])  # Pillow keeps it as stored
    want = cli_faces(path)
    assert len(want) == 2 and all(any(contains(f, c) for f in want) for c in FACE_CENTRES)
    assert four_ways(detector, path) == {"path": want, "bytes": want, "PIL": want, "cv2.imread": want}


# --- 16-bit files ----------------------------------------------------------------------------

def sixteen_bit_grey(sample):
    """The sample's red channel (in grey, the one its faces are found in) as
    16-bit samples whose low byte is noise: only the high byte counts."""
    noise = np.random.default_rng(7).integers(0, 256, sample.shape[:2]).astype(np.uint16)
    return sample[:, :, 2].astype(np.uint16) * 256 + noise


@pytest.mark.parametrize("ext, mode", [(".pgm", "I"), (".png", "I;16"), (".tiff", "I;16")])
def test_sixteen_bit_grey_files_give_the_same_faces_every_way(detector, sample, tmp_path, ext, mode):
    deep = sixteen_bit_grey(sample)
    path = tmp_path / f"deep{ext}"
    assert cv2.imwrite(str(path), deep)
    read = cv2.imread(str(path), cv2.IMREAD_COLOR)
    # what cv2.imread(IMREAD_COLOR) does with 16 bits: the high byte (1/256), grey in all three channels
    assert np.array_equal(read, np.dstack([(deep >> 8).astype(np.uint8)] * 3))
    with Image.open(path) as image:
        assert image.mode == mode
    want = cli_faces(path)
    assert len(want) >= 1 and any(contains(f, FACE_CENTRES[0]) for f in want)
    assert four_ways(detector, path) == {"path": want, "bytes": want, "PIL": want, "cv2.imread": want}


def test_a_sixteen_bit_colour_png_gives_the_same_faces_every_way(detector, sample, tmp_path):
    noise = np.random.default_rng(8).integers(0, 256, sample.shape).astype(np.uint16)
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), sample.astype(np.uint16) * 256 + noise)
    want = cli_faces(path)
    assert len(want) == 2
    assert four_ways(detector, path) == {"path": want, "bytes": want, "PIL": want, "cv2.imread": want}


# --- Pillow's modes, reduced as cv2.imread reduces their files --------------------------------

def _strip_adobe_segment(data: bytes) -> bytes:
    """A JPEG without its APP14 "Adobe" segment: CMYK samples stored plain."""
    at = 2
    while data[at] == 0xFF and data[at + 1] != 0xDA:
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if data[at + 1] == 0xEE:
            return data[:at] + data[at + 2 + length:]
        at += 2 + length
    raise AssertionError("no Adobe segment")


def mode_files(folder):
    """Files Pillow opens in each mode it has, written by Pillow or OpenCV."""
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, (24, 32, 3)).astype(np.uint8)
    grey = rng.integers(0, 256, (24, 32)).astype(np.uint8)
    alpha = rng.integers(0, 256, (24, 32)).astype(np.uint8)
    cmyk = rng.integers(0, 256, (24, 32, 4)).astype(np.uint8)
    files = {}

    def save(name, image, **options):
        files[name] = folder / name
        image.save(files[name], **options)

    save("grey_alpha.png", Image.fromarray(np.dstack([grey, alpha]), "LA"))
    save("grey_alpha.tiff", Image.fromarray(np.dstack([grey, alpha]), "LA"))
    save("palette.png", Image.fromarray(rgb).quantize(16), transparency=3)
    save("palette.gif", Image.fromarray(rgb).quantize(16), transparency=3)
    save("palette.bmp", Image.fromarray(rgb).quantize(16))
    save("bilevel.pbm", Image.fromarray(grey > 128))
    save("bilevel.png", Image.fromarray(grey > 128))
    save("cmyk.jpg", Image.fromarray(cmyk, "CMYK"), quality=95)
    save("cmyk.tiff", Image.fromarray(cmyk, "CMYK"))
    save("rgba.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
    save("rgba.webp", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), lossless=True)
    save("rgba.tiff", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
    save("grey.jp2", Image.fromarray(grey))
    save("rgb.ppm", Image.fromarray(rgb))
    files["plain_cmyk.jpg"] = folder / "plain_cmyk.jpg"
    files["plain_cmyk.jpg"].write_bytes(_strip_adobe_segment(files["cmyk.jpg"].read_bytes()))
    deep = rng.integers(0, 65536, (24, 32)).astype(np.uint16)
    for name in ("deep.png", "deep.pgm", "deep.tiff"):
        files[name] = folder / name
        assert cv2.imwrite(str(files[name]), deep)
    return files


def test_pillows_modes_become_the_pixels_imread_gives_their_files(tmp_path):
    modes = set()
    for name, path in mode_files(tmp_path).items():
        want = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert want is not None, name
        with Image.open(path) as image:
            modes.add(image.mode)
            got = library.pil_to_bgr(image)
        assert got.dtype == np.uint8 and got.shape == want.shape, name
        assert np.array_equal(got, want), (name, int(np.abs(got.astype(int) - want).max()))
    assert modes >= {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16"}


def test_modes_without_an_8_bit_reading_are_refused_in_one_line(detector):
    floats = Image.fromarray(np.random.default_rng(1).random((40, 40)).astype(np.float32), "F")
    wide = Image.fromarray(np.full((40, 40), 70000, np.int32), "I")
    for image, fragment in ((floats, "mode F"), (wide, "outside 0..65535")):
        with pytest.raises(ValueError) as caught:
            detector.detect(image)
        assert fragment in str(caught.value) and "\n" not in str(caught.value)


# --- EXIF orientation across formats ----------------------------------------------------------

ORIENTATION_FORMATS = [("JPEG", ".jpg", {"quality": 95}), ("PNG", ".png", {}), ("WEBP", ".webp", {"lossless": True}),
                       ("TIFF", ".tiff", {}), ("AVIF", ".avif", {"quality": 100})]


def turned_file(folder, fmt, ext, options, orientation):
    """A file of a grid of 2 x 3 blocks saved with this EXIF orientation, and
    its pixels (RGB) as written."""
    grid = np.kron(np.arange(6, dtype=np.uint8).reshape(2, 3) * 40 + 20, np.ones((16, 16), np.uint8))
    pixels = np.dstack([grid, 255 - grid, grid // 2])
    path = folder / f"o{orientation}{ext}"
    Image.fromarray(pixels).save(path, format=fmt, exif=exif_with(orientation), **options)
    return path, pixels


def is_turned(bgr, written) -> bool:
    """Whether an image read is not the grid as written (allowing a lossy
    format's few levels): its blocks moved."""
    return bgr.shape != written.shape or np.abs(bgr[:, :, ::-1].astype(int) - written).mean() > 10


@pytest.mark.parametrize("fmt, ext, options", ORIENTATION_FORMATS)
def test_a_pil_image_is_turned_exactly_when_its_path_is(tmp_path, fmt, ext, options):
    """Whatever this OpenCV does with each orientation of each format, a PIL
    image opened from the file gets the pixels the path gets: turned, or not
    turned and warned about. (Pillow itself turns a TIFF as it loads it.)"""
    if fmt == "AVIF" and not __import__("PIL.features").features.check("avif"):
        pytest.skip("this Pillow writes no AVIF")
    for orientation in range(2, 9):
        path, written = turned_file(tmp_path, fmt, ext, options, orientation)
        by_path = read_image(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with Image.open(path) as image:
                by_pil = library.pil_to_bgr(image)
        assert np.array_equal(by_pil, by_path), (fmt, orientation)
        assert bool(caught) == (not is_turned(by_path, written)), (fmt, orientation, [str(w.message) for w in caught])
        assert all(w.category is library.OrientationWarning for w in caught)


@pytest.mark.skipif(not cv2.__version__.startswith("5.1."), reason="the facts written down are OpenCV 5.1's")
def test_the_orientation_facts_of_this_opencv(tmp_path):
    """What /tmp/inputs-notes.md records: cv2.imread applies EXIF orientation
    to JPEG, PNG and WebP files, and to TIFF files 2-4 (with 5-8 cv2.imread
    fails on the file, while cv2.imdecode of its bytes, which is how paths
    are read, reads and turns it); it does not apply it to AVIF files."""
    facts = {}
    for fmt, ext, options in ORIENTATION_FORMATS:
        for orientation in (3, 6):
            path, written = turned_file(tmp_path, fmt, ext, options, orientation)
            read = cv2.imread(str(path), cv2.IMREAD_COLOR)
            decoded = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
            facts[fmt, orientation] = (None if read is None else is_turned(read, written), is_turned(decoded, written))
    assert facts == {("JPEG", 3): (True, True), ("JPEG", 6): (True, True), ("PNG", 3): (True, True),
                     ("PNG", 6): (True, True), ("WEBP", 3): (True, True), ("WEBP", 6): (True, True),
                     ("TIFF", 3): (True, True), ("TIFF", 6): (None, True),
                     ("AVIF", 3): (False, False), ("AVIF", 6): (False, False)}


def test_an_orientation_that_is_not_applied_is_warned_about_once(detector, sample, tmp_path):
    path = tmp_path / "turned.jpg"
    Image.fromarray(sample[:, :, ::-1]).save(path, exif=exif_with(6), quality=95)
    with Image.open(path) as opened:
        made = opened.convert("RGB")  # a new image: no format, its EXIF kept
    assert made.format is None and made.getexif().get(ORIENTATION) == 6
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own rule: once per place in the program
        for _ in range(3):
            faces = detector.detect(made)
    assert len(caught) == 1 and caught[0].category is library.OrientationWarning
    message = str(caught[0].message)
    assert "orientation 6" in message and "not applied" in message and "exif_transpose" in message
    assert as_records(faces) == as_records(detector.detect(np.ascontiguousarray(np.asarray(made)[:, :, ::-1])))


# --- a file's bytes --------------------------------------------------------------------------------

def test_bytes_are_read_by_the_paths_own_reader(detector, sample, tmp_path):
    data = SAMPLE.read_bytes()
    assert as_records(detector.detect(data)) == as_records(detector.detect(SAMPLE))
    assert as_records(detector.detect(bytearray(data))) == as_records(detector.detect(memoryview(data)))
    ok, jpeg = cv2.imencode(".jpg", sample)
    jpeg = jpeg.tobytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    cases = [(jpeg[:len(jpeg) // 2], tmp_path / "cut.jpg"), (b"", None), (b"plain text, no image", None)]
    for data, path in cases:
        with pytest.raises(ImageError) as from_bytes:
            detector.detect(data)
        assert from_bytes.value.path is None
        if path is not None:
            with pytest.raises(ImageError) as from_path:
                detector.detect(path)
            assert from_bytes.value.reason == from_path.value.reason == "truncated JPEG data"
    assert str(pytest.raises(ImageError, detector.detect, b"").value) == "empty file"
    with pytest.raises(ImageError, match="too large: 480x360"):
        Detector(max_pixels=1000).detect(SAMPLE.read_bytes())
    with pytest.raises(ValueError, match="channels describes an array"):
        detector.detect(data, channels="rgb")
    results = list(detector.detect_many([SAMPLE.read_bytes(), b"\x89PNG\r\n\x1a\n broken"]))
    assert as_records(results[0].faces) == as_records(detector.detect(SAMPLE))
    assert results[1].faces is None and results[1].error == "truncated PNG data"


def test_bytes_of_a_turned_jpeg_are_turned_as_its_path_is(detector, sample, tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(sample, 1))[:, :, ::-1]).save(buffer, "JPEG", exif=exif_with(6))
    path = tmp_path / "turned.jpg"
    path.write_bytes(buffer.getvalue())
    assert np.array_equal(read_image(path), cv2.imread(str(path), cv2.IMREAD_COLOR))
    assert as_records(detector.detect(buffer.getvalue())) == as_records(detector.detect(path))
