"""The Python library's front door: `mtcnn_cli.Detector` and `mtcnn_cli.read_image`.

`Detector` is the port's detector (detector/cascade.py, arrays in BGR, as
OpenFace takes them) with what a Python user needs around it, none of which
the port itself may do (it reads no files): the colour order said out loud,
PIL images, file paths and file bytes read exactly as `mtcnn detect` reads
them, and many images at once through the CLI's own batch machinery (worker
processes, error records, input order).

One image, one answer: a file's path, its bytes, a PIL image opened from it
and its cv2.imread array give the same faces as `mtcnn detect FILE`, because
a PIL image is turned into the pixels cv2.imread gives for its file (see
pil_to_bgr for the rules: orientation, 16-bit and other modes).
"""
from __future__ import annotations

import io
import os
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
import warnings
from dataclasses import replace
from typing import Iterable, Iterator

import numpy as np

from ..base import defaults
from ..detector.align import check_crop
from ..detector.cascade import Detector as PortDetector
from ..io import video
from ..io.images import ImageError, decode, read_image, read_image_bytes
from ..io.records import Result
from .batch import Settings, Task, _results, check_jobs, process_one, resolve_jobs, run_tasks
from .engines import detect_to_dir  # noqa: F401 (the package's API: output folders)
from .outdir.plan import plan_dir  # noqa: F401
from .outdir.shard import run_shard  # noqa: F401

__all__ = ["Detector", "ImageError", "Result", "detect_to_dir", "plan_dir", "read_image", "run_shard"]

CHANNELS = ("bgr", "rgb")


def is_pil_image(image) -> bool:
    """Whether image is a PIL image (Pillow is never imported here: an object
    can only be one if the program imported Pillow already)."""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(image, pil.Image)


ORIENTATION_TAG = 0x0112  # EXIF's (and TIFF's) Orientation


class OrientationWarning(UserWarning):
    """A PIL image carries an EXIF orientation that was not applied, because
    cv2.imread does not apply it to its file either (or it cannot be told)."""


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """image turned as EXIF orientation 1..8 says it is shown (2 mirrored,
    3 half a turn, 4 flipped, 5 transposed, 6 a quarter turn clockwise, 7
    transversed, 8 a quarter turn anticlockwise): the pixels moved, never
    resampled, as cv2.imread moves them."""
    if orientation in (5, 6, 7, 8):
        turned = np.swapaxes(image, 0, 1)
        return {5: turned, 6: turned[:, ::-1], 7: turned[::-1, ::-1], 8: turned[::-1]}[orientation]
    return {2: image[:, ::-1], 3: image[::-1, ::-1], 4: image[::-1]}.get(orientation, image)


# A grey grid of 2 x 3 blocks of 8 x 8 pixels, six levels far apart: one
# level per block survives JPEG and AVIF, and each of the eight orientations
# turns it into another grid.
_PROBE_GRID = np.array([[0, 50, 100], [150, 200, 250]], np.uint8)
_applied: dict = {}  # (PIL format, orientation) -> True, False or None (cannot tell)


def opencv_applies_orientation(fmt: str, orientation: int) -> bool | None:
    """Whether cv2.imread (through the decoder every path goes through)
    turns an image of this PIL format by this EXIF orientation: asked of the
    installed OpenCV, once per process, with a small image Pillow writes with
    that orientation, because it differs between formats and between OpenCV
    versions. None when it cannot be told (Pillow cannot write the format,
    OpenCV cannot read the result, or it is neither turned nor left)."""
    key = (fmt, orientation)
    if key not in _applied:
        _applied[key] = _probe_orientation(fmt, orientation)
    return _applied[key]


def _probe_orientation(fmt: str, orientation: int) -> bool | None:
    pil = sys.modules["PIL.Image"]
    exif = pil.Exif()
    exif[ORIENTATION_TAG] = orientation
    pixels = np.kron(_PROBE_GRID, np.ones((8, 8), np.uint8))
    buffer = io.BytesIO()
    try:
        pil.fromarray(np.dstack([pixels] * 3)).save(buffer, format="JPEG" if fmt == "MPO" else fmt, exif=exif)
        got = decode(buffer.getvalue())[:, :, 1].astype(np.float64)
    except Exception:  # a format Pillow cannot write, or OpenCV cannot read so written
        return None
    rows, cols = got.shape[0] // 8, got.shape[1] // 8
    if rows * cols != 6:
        return None
    blocks = got[:rows * 8, :cols * 8].reshape(rows, 8, cols, 8).mean(axis=(1, 3))
    for answer, expected in ((True, orient(_PROBE_GRID, orientation)), (False, _PROBE_GRID)):
        if blocks.shape == expected.shape and np.abs(blocks - expected).max() < 15:
            return answer
    return None


def exif_orientation(image) -> int | None:
    """The EXIF orientation a PIL image carries (its EXIF block, or a TIFF's
    own tag), 1..8, or None. XMP's orientation, which Pillow's getexif also
    reports, is not looked at: OpenCV does not read it."""
    pil = sys.modules["PIL.Image"]
    value = None
    raw = image.info.get("exif")
    if raw:
        try:
            exif = pil.Exif()
            exif.load(raw)
            value = exif.get(ORIENTATION_TAG)
        except Exception:  # a damaged EXIF block: no orientation OpenCV could use either
            value = None
    elif getattr(image, "tag_v2", None) is not None:  # a TIFF's directory
        value = image.tag_v2.get(ORIENTATION_TAG)
    return value if isinstance(value, int) and 1 <= value <= 8 else None


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
PLAIN_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX")  # Pillow's convert("RGB") is cv2.imread's


def _grey(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.dstack([values.astype(np.uint8)] * 3))


def _pil_pixels(image) -> np.ndarray:
    """A PIL image's pixels as uint8 BGR, reduced as cv2.imread(IMREAD_COLOR)
    reduces the file it came from (pil_to_bgr says how)."""
    mode, fmt = image.mode, image.format
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"a PIL image of mode I with samples outside 0..65535 (32-bit integers, values "
                             f"{values.min()}..{values.max()}) has no 8-bit reading cv2.imread would give: "
                             f"scale it to 8 bits yourself")
        return _grey(values.astype(np.uint32) >> 8)  # 16-bit samples: the high byte, as cv2.imread takes
    if mode == "CMYK":
        cmyk = np.asarray(image).astype(np.int32)
        if fmt in ("JPEG", "MPO"):  # OpenCV's JPEG reader, on the samples as stored (Pillow inverts them)
            stored = 255 - cmyk
            k = stored[..., 3:]
            rgb = k - (((255 - stored[..., :3]) * k) >> 8)
        elif fmt == "TIFF":  # libtiff's RGBA reading, which OpenCV's TIFF reader uses
            rgb = (255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) // 255
        else:
            rgb = np.asarray(image.convert("RGB"))
        return np.ascontiguousarray(rgb[..., ::-1].astype(np.uint8))
    if mode not in PLAIN_MODES:
        why = ("it holds floating-point samples, which cv2.imread turns into no usable 8-bit image (a PFM "
               "comes out black, a float TIFF is not read)" if mode == "F" else
               "its samples are not turned here into the 8-bit pixels cv2.imread gives for its file")
        raise ValueError(f"a PIL image of mode {mode} is not taken: {why}; convert it to RGB or L yourself, "
                         f"or give the file's path or bytes")
    if fmt == "TIFF" and mode == "RGBA":  # OpenCV's TIFF reader premultiplies unassociated alpha
        rgba = np.asarray(image).astype(np.int32)
        rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
        return np.ascontiguousarray(rgb[..., ::-1].astype(np.uint8))
    rgb = np.array(image.convert("RGB"))
    if fmt == "GIF" and mode == "P" and "transparency" in image.info:
        # OpenCV's GIF reader leaves the background colour where a pixel is transparent
        palette = np.array(image.getpalette() or [], np.uint8).reshape(-1, 3)
        background = image.info.get("background", 0)
        if isinstance(background, int) and background < len(palette):
            rgb[np.asarray(image) == image.info["transparency"]] = palette[background]
    return np.ascontiguousarray(rgb[..., ::-1])


def pil_to_bgr(image) -> np.ndarray:
    """A PIL image as the uint8 BGR pixels cv2.imread(IMREAD_COLOR) gives for
    the file it was opened from, so that it gets the file's faces. The rules
    (each checked against OpenCV itself by tests/test_one_image_one_answer.py):

    - EXIF orientation: applied when OpenCV applies it to that format
      (asked of the installed OpenCV: opencv_applies_orientation; OpenCV 5.1
      applies it to JPEG, PNG and WebP, not to AVIF; Pillow turns a TIFF
      itself as it loads it, as OpenCV does). When it is not applied (OpenCV
      does not, or the image was made in memory, image.format None, so that
      its file is unknown), an OrientationWarning says so, once per place in
      the program (Python's rule for warnings).
    - 16-bit grey (modes I;16*, and I as Pillow opens 16-bit PGM): the high
      byte of each sample, as cv2.imread reduces 16-bit files. Mode I beyond
      16 bits, mode F (floating point) and other modes: ValueError.
    - CMYK: OpenCV's own formula for JPEG, libtiff's for TIFF.
    - 1, L, LA, P, PA, RGB, RGBA, RGBX: Pillow's conversion to RGB (alpha
      dropped), which is OpenCV's, except an RGBA TIFF (premultiplied, as
      OpenCV reads it) and a GIF's transparent pixels (its background colour).
    Pillow's own decoding still differs where it reduces a 16-bit colour
    PPM or TIFF itself (by one level) or decodes a JPEG otherwise: for OpenFace's
    bits, give the path, the bytes, or a cv2.imread array."""
    image.load()  # a PNG's EXIF may follow its pixels
    bgr = _pil_pixels(image)
    orientation = exif_orientation(image)
    if orientation is None or orientation == 1:
        return bgr
    if image.format is None:
        why = "the image was made in memory (it has no format), so what OpenCV does with its file is unknown"
    else:
        applies = opencv_applies_orientation(image.format, orientation)
        if applies:
            return np.ascontiguousarray(orient(bgr, orientation))
        why = (f"cv2.imread does not apply it to {image.format} files, so `mtcnn detect` would not" if applies is False
               else f"whether cv2.imread applies it to {image.format} files cannot be told (it may not read them)")
    warnings.warn(f"this PIL image carries EXIF orientation {orientation}, which was not applied: {why}; to detect "
                  f"in the turned image, give PIL.ImageOps.exif_transpose(image)", OrientationWarning, stacklevel=4)
    return bgr


def pil_rgb(image, channels: str | None = None) -> np.ndarray:
    """A PIL image as RGB: the pixels cv2.imread gives for its file
    (pil_to_bgr), channels reversed."""
    if channels not in (None, "rgb"):
        raise ValueError("a PIL image is RGB by nature: leave channels out (or give 'rgb')")
    bgr = pil_to_bgr(image)
    return np.ascontiguousarray(bgr[:, :, ::-1]) if bgr.ndim == 3 else bgr


def to_bgr(image, channels: str | None):
    """An array in the detector's order (BGR, grey or BGRA), from an array in
    `channels` order or a PIL image (pil_to_bgr: cv2.imread's pixels for its
    file)."""
    if channels is not None and channels not in CHANNELS:
        raise ValueError(f"channels must be 'bgr' or 'rgb', got {channels!r}")
    if is_pil_image(image):
        if channels not in (None, "rgb"):
            raise ValueError("a PIL image is RGB by nature: leave channels out (or give 'rgb')")
        return pil_to_bgr(image)
    if channels == "rgb" and isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4):
        order = [2, 1, 0] + ([3] if image.shape[2] == 4 else [])
        return np.ascontiguousarray(image[:, :, order])
    return image


FILE_BYTES = (bytes, bytearray, memoryview)


class Detector(PortDetector):
    """OpenFace 2.2's MTCNN face detector, bit for bit.

    Detector(models=None, min_face=60, t1=0.6, t2=0.7, t3=0.7, max_pixels=100_000_000)
    reads the networks once: models is an OpenFace model folder (or a
    checkout or install holding one), default $MTCNN_MODELS, else the bundled
    MIT weights. max_pixels limits the size of the image files it reads.

    detect(image, channels=None) -> list of Face, in the C++'s order. image is
      - a numpy uint8 array: H x W x 3 in BGR order (OpenFace's, what
        cv2.imread gives) unless channels="rgb" (what PIL, imageio,
        matplotlib and the other face libraries give); H x W grey; H x W x 4
        BGRA (or RGBA with channels="rgb"), alpha ignored. The order matters:
        RGB read as BGR gives other faces;
      - a PIL image (when Pillow is installed; it is not a dependency):
        turned into the pixels cv2.imread gives for its file (EXIF
        orientation, 16-bit and other modes: see pil_to_bgr), so channels
        is left out;
      - a str or os.PathLike: the file, read exactly as `mtcnn detect` reads it
        (cv2.imread's pixels, same checks); ImageError if it cannot be used;
      - bytes (bytearray, memoryview): a file's contents, decoded exactly as
        its path is, by the same code.
    A path, its bytes, a PIL image opened from it and its cv2.imread array
    give the same faces.

    detect_many(images, jobs=1) -> iterator of Result, in input order (see
    there). crops(image, size=112, style="arcface") -> list of (Face, crop
    array in the image's own channel order). detect_video(path, every=1) ->
    iterator of Result, one per frame, as `mtcnn detect VIDEO` records them.
    A Face has x, y, width, height, confidence, landmarks, and box,
    corners, left_eye ... mouth_right, to_dict().
    """

    def __init__(self, models=None, min_face: int = defaults.MIN_FACE, t1: float = defaults.T1,
                 t2: float = defaults.T2, t3: float = defaults.T3,
                 max_pixels: int = defaults.MAX_PIXELS):
        super().__init__(models=models, min_face=min_face, t1=t1, t2=t2, t3=t3)
        self.models_given = None if models is None else os.fspath(models)
        self.max_pixels = int(max_pixels)

    def detect(self, image, channels: str | None = None, *, timings: dict | None = None) -> list:
        """See the class: image an array (BGR, or channels="rgb"), a PIL image,
        a path or a file's bytes. timings (keyword only), if given, accumulates seconds per
        stage."""
        image = self._read(image, channels, "detect()")
        return super().detect(to_bgr(image, channels), timings=timings)

    def _read(self, image, channels, what: str):
        """A path or a file's bytes read as `mtcnn detect` reads the file
        (uint8 BGR); anything else as it is. ValueError for channels given
        with a file, or a video; ImageError when the file cannot be used."""
        if isinstance(image, (str, os.PathLike)):
            if channels is not None:
                raise ValueError("channels describes an array: a file is read in its own colours")
            if video.has_video_extension(os.fspath(image)):
                raise ValueError(f"{os.fspath(image)} is a video: {what} takes one image; "
                                 f"detect_video() gives a Result per frame")
            return read_image(image, self.max_pixels)
        if isinstance(image, FILE_BYTES):
            if channels is not None:
                raise ValueError("channels describes an array: a file's bytes are read in their own colours")
            return read_image_bytes(image, self.max_pixels)
        return image

    def crops(self, image, channels: str | None = None, size: int = 112, style: str = "arcface",
              margin: float = 0.0) -> list:
        """Detect, then cut each face out: a list of (Face, crop), in detect()'s
        order. image is whatever detect() takes; each crop (size x size, see
        Face.crop for style and margin) comes from the image in the caller's
        channel order: an array's own (BGR, or RGB with channels="rgb"; grey
        gives grey), a PIL image's RGB, a file's BGR as cv2.imread reads it."""
        check_crop(size, style, margin)
        image = self._read(image, channels, "crops()")
        if is_pil_image(image):
            image, channels = pil_rgb(image, channels), "rgb"
        faces = self.detect(image, channels)
        return [(face, face.crop(image, size, style, margin)) for face in faces]

    def detect_video(self, path, every: int = 1) -> Iterator[Result]:
        """The faces of frames 0, every, 2 every, ... of a video file, decoded
        in order by OpenCV's VideoCapture: one Result per frame, the very
        record `mtcnn detect VIDEO --every N` writes for it (path
        VIDEO#frame=N, frame N from 0, time N / the container's frame rate in
        seconds or None, width, height, faces). A video that ends before the
        frame count its container announces, or a frame above max_pixels,
        gives a last Result with faces None and error set, as in the CLI's
        records. A file that cannot be opened as a video raises ImageError
        (naming it) when iterated."""
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"path must be a video file's path, got {type(path).__name__}")
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        return self._frames(os.fspath(path), int(every))

    def _frames(self, path: str, every: int) -> Iterator[Result]:
        settings = self.settings()
        with closing(video.frames(path, every, self.max_pixels)) as frames:
            for frame in frames:
                if frame.index < 0:  # not opened at all
                    raise ImageError(f"{path}: {frame.error}")
                task = Task(video.frame_path(path, frame.index), None, frame.image, frame.index,
                            frame.time, frame.error)
                yield process_one(self, settings, task).result

    def settings(self, landmarks: bool = True) -> Settings:
        """What worker processes need to rebuild this detector."""
        return Settings(self.models_given, self.min_face, self.t1, self.t2, self.t3, self.max_pixels,
                        landmarks)

    def detect_many(self, images: Iterable, jobs: int = 1, channels: str | None = None,
                    landmarks: bool = True) -> Iterator[Result]:
        """Detect faces in many images, yielding one Result per image, in input
        order (repeats included): Result(path, width, height, faces, error).

        Paths (str or os.PathLike) go through `mtcnn detect`'s own machinery:
        an unreadable file (missing, not an image, truncated, too large) or a
        detector failure gives a Result with faces None and error set (the
        reason `mtcnn detect` prints), and the iteration goes on. jobs > 1 (0:
        one per CPU) runs that many threads of this process, sharing the
        loaded models (the compiled kernels release the GIL), so no
        `if __name__ == "__main__":` guard is needed; the results are those of
        jobs=1. Arrays, PIL images and file bytes (path None in their Result) are detected
        in order on this thread; a bad array raises ValueError, as detect()
        does. Closing the iterator (or leaving a for loop) stops the
        threads after the images they are on."""
        images = list(images)
        paths = [isinstance(image, (str, os.PathLike)) for image in images]  # bytes are contents, not paths
        videos = [os.fspath(i) for i, p in zip(images, paths) if p and video.has_video_extension(os.fspath(i))]
        if videos:
            raise ValueError(f"{videos[0]} is a video: detect_many takes images; "
                             f"detect_video() gives a Result per frame")
        check_jobs(jobs)
        if jobs != 1 and not all(paths):
            raise ValueError("detect_many with jobs != 1 takes file paths only: give paths, or jobs=1")
        if all(paths):
            if channels is not None:
                raise ValueError("channels describes arrays: files are read in their own colours")
            tasks = [Task(os.fspath(path)) for path in images]
            settings = self.settings(landmarks)
            threads = min(resolve_jobs(jobs), len(tasks))
            if threads <= 1:
                return _results(run_tasks(tasks, settings, 1, self))
            return self._threaded(tasks, settings, threads)
        return self._each(images, channels, landmarks)

    def _threaded(self, tasks, settings, threads: int) -> Iterator[Result]:
        """The tasks' Results in order, from `threads` threads, each with its
        own twin of this detector; at most 2 x threads images in flight."""
        local = threading.local()

        def work(task):
            if not hasattr(local, "detector"):
                local.detector = self.twin()
            return process_one(local.detector, settings, task).result

        pool = ThreadPoolExecutor(threads, thread_name_prefix="mtcnn-detect")
        pending = deque()
        try:
            for task in tasks:
                pending.append(pool.submit(work, task))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _each(self, images, channels, landmarks) -> Iterator[Result]:
        settings = self.settings(landmarks)
        for image, is_path in zip(images, (isinstance(i, (str, os.PathLike)) for i in images)):
            if is_path:
                yield process_one(self, settings, Task(os.fspath(image))).result
                continue
            if isinstance(image, FILE_BYTES):
                try:
                    image = read_image_bytes(image, self.max_pixels)
                except ImageError as e:
                    yield Result(None, e.width, e.height, None, e.reason)
                    continue
            array = to_bgr(image, channels)
            faces = super().detect(array)
            if not landmarks:
                faces = [replace(face, landmarks=()) for face in faces]
            height, width = np.shape(array)[:2]
            yield Result(None, int(width), int(height), faces, None)
