"""The sets compare reads: images, their faces, and the error type."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base import defaults
from ..io.records import FACE_NUMBERS

FORMATS = defaults.COMPARE_FORMATS
FIELDS = FACE_NUMBERS  # x, y, width, height, confidence
DEFAULT_PARAMS = defaults.PARAMS


class CompareError(Exception):
    """A set of detections that cannot be read or used. The message names the
    file (and the record, where there is one) and the problem."""


@dataclass(frozen=True, eq=False)
class ImageFaces:
    """One image of a set. faces: float32 (n, 5) of x, y, width, height,
    confidence (NaN where the source gives no confidence); None when the
    detector failed on the image, and then error says why."""
    path: str
    faces: np.ndarray | None
    width: float | None = None
    height: float | None = None
    error: str | None = None


@dataclass(frozen=True, eq=False)
class DetectionSet:
    source: str
    format: str
    images: list[ImageFaces]
    params: dict | None = None
    detector: str | None = None
