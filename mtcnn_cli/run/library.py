"""The Python library's front door: `mtcnn_cli.Detector` and `mtcnn_cli.read_image`.

`Detector` is the port's detector (detector/cascade.py, arrays in BGR, as
OpenFace takes them) with what a Python user needs around it, none of which
the port itself may do (it reads no files): the colour order said out loud,
PIL images, file paths read exactly as `mtcnn detect` reads them, and many
images at once through the CLI's own batch machinery (worker processes,
error records, input order).
"""
from __future__ import annotations

import os
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import replace
from typing import Iterable, Iterator

import numpy as np

from ..base import defaults
from ..detector.align import check_crop
from ..detector.cascade import Detector as PortDetector
from ..io import video
from ..io.images import ImageError, read_image
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


def pil_rgb(image, channels: str | None = None) -> np.ndarray:
    """A PIL image as the (H, W, 3) uint8 RGB array Pillow converts it to."""
    if channels not in (None, "rgb"):
        raise ValueError("a PIL image is RGB by nature: leave channels out (or give 'rgb')")
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def to_bgr(image, channels: str | None):
    """An array in the detector's order (BGR, grey or BGRA), from an array in
    `channels` order or a PIL image (converted to RGB by Pillow, then BGR)."""
    if channels is not None and channels not in CHANNELS:
        raise ValueError(f"channels must be 'bgr' or 'rgb', got {channels!r}")
    if is_pil_image(image):
        return np.ascontiguousarray(pil_rgb(image, channels)[:, :, ::-1])
    if channels == "rgb" and isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4):
        order = [2, 1, 0] + ([3] if image.shape[2] == 4 else [])
        return np.ascontiguousarray(image[:, :, order])
    return image


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
        converted to RGB by Pillow, so channels is left out;
      - a str or os.PathLike: the file, read exactly as `mtcnn detect` reads it
        (cv2.imread's pixels, same checks); ImageError if it cannot be used.

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
        """See the class: image an array (BGR, or channels="rgb"), a PIL image
        or a path. timings (keyword only), if given, accumulates seconds per
        stage."""
        if isinstance(image, (str, os.PathLike)):
            image = self._read(image, channels, "detect()")
        return super().detect(to_bgr(image, channels), timings=timings)

    def _read(self, path, channels, what: str) -> np.ndarray:
        """An image file as `mtcnn detect` reads it (uint8 BGR); ValueError for
        channels given or a video, ImageError when it cannot be used."""
        if channels is not None:
            raise ValueError("channels describes an array: a file is read in its own colours")
        if video.has_video_extension(os.fspath(path)):
            raise ValueError(f"{os.fspath(path)} is a video: {what} takes one image; "
                             f"detect_video() gives a Result per frame")
        return read_image(path, self.max_pixels)

    def crops(self, image, channels: str | None = None, size: int = 112, style: str = "arcface",
              margin: float = 0.0) -> list:
        """Detect, then cut each face out: a list of (Face, crop), in detect()'s
        order. image is whatever detect() takes; each crop (size x size, see
        Face.crop for style and margin) comes from the image in the caller's
        channel order: an array's own (BGR, or RGB with channels="rgb"; grey
        gives grey), a PIL image's RGB, a file's BGR as cv2.imread reads it."""
        check_crop(size, style, margin)
        if isinstance(image, (str, os.PathLike)):
            image = self._read(image, channels, "crops()")
        elif is_pil_image(image):
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
        jobs=1. Arrays and PIL images (path None in their Result) are detected
        in order on this thread; a bad array raises ValueError, as detect()
        does. Closing the iterator (or leaving a for loop) stops the
        threads after the images they are on."""
        images = list(images)
        paths = [isinstance(image, (str, os.PathLike)) for image in images]
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
            else:
                array = to_bgr(image, channels)
                faces = super().detect(array)
                if not landmarks:
                    faces = [replace(face, landmarks=()) for face in faces]
                height, width = np.shape(array)[:2]
                yield Result(None, int(width), int(height), faces, None)
