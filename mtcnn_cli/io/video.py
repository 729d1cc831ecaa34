"""Video files as inputs: their frames as OpenCV's VideoCapture decodes them
(the frames OpenFace's own video tools see), one record per frame.

A frame's path is the video's path with `#frame=N` appended (N from 0), which
is stable from run to run and is what --resume, the records and the annotated
copies are keyed on. Its time is N / the container's nominal frame rate, in
seconds (None when the container gives no rate).
"""
from __future__ import annotations

import os
import stat
from typing import Iterator, NamedTuple

import cv2
import numpy as np

from ..base.atomic import OutputError
from .images import _silenced_stderr, os_reason

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg",
                              ".wmv", ".flv", ".ts", ".mts"})
FRAME_MARK = "#frame="


def has_video_extension(name: str) -> bool:
    """True for names ending in one of VIDEO_EXTENSIONS, in any case."""
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def frame_path(video: str, index: int) -> str:
    """`clip.mp4#frame=120`: the stable path of a frame's record."""
    return f"{video}{FRAME_MARK}{index}"


def video_of(path: str) -> str | None:
    """The video a frame path belongs to (None for other paths)."""
    video, mark, index = path.rpartition(FRAME_MARK)
    return video if mark and index.isdigit() else None


class Frame(NamedTuple):
    """One frame: its index (from 0), its time in seconds (or None), and the
    image (uint8 BGR), or None and an error when the video cannot be used
    from this frame on."""
    index: int
    time: float | None
    image: np.ndarray | None = None
    error: str | None = None


def _time(index: int, fps: float) -> float | None:
    return round(index / fps, 6) if fps > 0 else None


def open_video(path: str):
    """(capture, frames per second, frame count the container announces, or 0).
    Raises ValueError with a short reason."""
    try:
        info = os.stat(path)
    except OSError as e:
        raise ValueError(os_reason(e)) from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    if info.st_size == 0:
        raise ValueError("empty file")
    with _silenced_stderr():
        capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise ValueError("cannot be opened as a video (unknown format or codec)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return capture, (fps if fps and fps > 0 else 0.0), (int(count) if count and count > 0 else 0)


def container_info(path: str) -> tuple[float, int]:
    """(frame rate, frame count) as the container announces them; 0 each
    when unknown or unreadable."""
    try:
        capture, fps, count = open_video(path)
    except ValueError:
        return 0.0, 0
    capture.release()
    return fps, count


def frame_count(path: str) -> int:
    """The frame count the container announces (0 when unknown or unreadable)."""
    return container_info(path)[1]


def frames(path: str, every: int = 1, max_pixels: int | None = None) -> Iterator[Frame]:
    """Frames 0, every, 2 every, ... of the video, decoded in order. A video
    that cannot be opened gives one Frame with an error (index -1); one that
    ends before the frame count its container announces (truncated, corrupt)
    gives the frames before, then a Frame with the error at the break."""
    try:
        capture, fps, count = open_video(path)
    except ValueError as e:
        yield Frame(-1, None, None, str(e))
        return
    index = 0
    try:
        while True:
            wanted = index % every == 0
            with _silenced_stderr():
                ok, image = capture.read() if wanted else (capture.grab(), None)
            if not ok:
                break
            if wanted:
                height, width = image.shape[:2]
                if max_pixels is not None and width * height > max_pixels:
                    yield Frame(index, _time(index, fps), None,
                                f"too large: {width}x{height} is {width * height} pixels, more than the "
                                f"limit of {max_pixels} (--max-pixels)")
                    return
                yield Frame(index, _time(index, fps), image)
            index += 1
    finally:
        capture.release()
    if count and index < count:
        yield Frame(index, _time(index, fps), None,
                    f"the video breaks at frame {index} of the {count} its container announces "
                    f"(truncated or corrupt); the frames before are kept")


VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}  # what --annotate-video writes


class AnnotatedVideo:
    """A video written frame by frame (--annotate-video) to a temporary file
    beside `path` (hidden, its extension kept for OpenCV's writer), renamed
    to `path` when closed, also after a stop: what was written stays a
    playable video. fps: frames per second of what is written."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps if fps > 0 else 25.0
        folder, name = os.path.split(os.path.abspath(path))
        self.temp = os.path.join(folder, f".{name[:60]}.writing{os.path.splitext(name)[1]}")
        self.writer = None
        self.frames = 0

    def add(self, image: np.ndarray) -> None:
        if self.writer is None:
            codec = VIDEO_CODECS[os.path.splitext(self.path)[1].lower()]
            height, width = image.shape[:2]
            self.writer = cv2.VideoWriter(self.temp, cv2.VideoWriter_fourcc(*codec), self.fps, (width, height))
            if not self.writer.isOpened():
                raise OutputError(f"cannot write {self.path}: OpenCV's video writer would not open it")
            self.size = (height, width)
        if image.shape[:2] != self.size:  # a video's frames keep one size: others are fitted to it
            image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        """Finish the file and put it in place (nothing when no frame came)."""
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        os.replace(self.temp, self.path)
