"""Helpers for the `mtcnn detect` tests: a stand-in detector whose answers
are known in advance, and small synthetic images.

The stand-in reads the number of faces to report from the image itself: the
blue value of the top-left pixel, divided by 50 (so 0..5 faces); make_image
writes 50 * faces + 10 in a flat corner block. Face i is
the float32 box (10.25 + 20 i, 5.5, 15.75, 16.125) with confidence
0.99 - 0.1 i, and five points inside the box."""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import pytest


@dataclass(frozen=True)
class StandInFace:
    x: float
    y: float
    width: float
    height: float
    confidence: float
    landmarks: tuple


def expected_faces(count: int) -> list:
    f = lambda v: float(np.float32(v))  # noqa: E731
    faces = []
    for i in range(count):
        x, y = 10.25 + 20 * i, 5.5
        points = tuple((f(x + 3 + 2 * k), f(y + 4 + k / 3)) for k in range(5))
        faces.append(StandInFace(f(x), f(y), f(15.75), f(16.125), f(0.99 - 0.1 * i), points))
    return faces


class StandInDetector:
    calls: list = []

    def __init__(self, models=None, min_face=60, t1=0.6, t2=0.7, t3=0.7):
        from mtcnn_cli.detector.datfile import ModelError

        if min_face < 12:
            raise ValueError(f"min_face must be an integer >= 12, got {min_face!r}")
        if models is not None and not os.path.isfile(os.path.join(models, "MTCNN_detector.txt")):
            raise ModelError(f"{models}: no MTCNN_detector.txt in this folder")
        self.min_face = min_face

    def detect(self, image):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        StandInDetector.calls.append(image.shape)
        return expected_faces(int(image[0, 0, 0]) // 50)


@pytest.fixture
def stand_in(monkeypatch):
    """Replace the detector (in this process only) by StandInDetector."""
    from mtcnn_cli.run import batch

    StandInDetector.calls = []
    monkeypatch.setattr(batch, "detector_class", lambda: StandInDetector)
    return StandInDetector


def make_image(path, faces: int = 1, size=(48, 64), channels: int = 3, dtype=np.uint8):
    """Write a small image whose stand-in answer is `faces` faces."""
    height, width = size
    rng = np.random.default_rng(abs(hash(os.fspath(path))) % 2**32)
    image = rng.integers(0, 256, (height, width, channels)).astype(np.uint8)
    image[:16, :16] = 50 * faces + 10  # flat, so that JPEG keeps it within a few levels
    if dtype == np.uint16:
        image = image.astype(np.uint16) * 257
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    ok, data = cv2.imencode(os.path.splitext(os.fsdecode(path))[1] or ".png", image)
    assert ok
    with open(path, "wb") as f:
        f.write(data.tobytes())
    return path
