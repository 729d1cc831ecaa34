"""The MTCNN cascade as OpenFace 2.2 runs it: pyramid, PNet, RNet, ONet."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Face:
    """One detection. x, y, width, height follow OpenFace's box convention
    (top-left corner and size, after OpenFace's final tightening), in pixels of
    the input image. confidence is ONet's face probability. landmarks holds the
    five facial points as (x, y) pixel pairs: left eye, right eye, nose tip,
    left mouth corner, right mouth corner (left/right as seen in the image)."""
    x: float
    y: float
    width: float
    height: float
    confidence: float
    landmarks: tuple[tuple[float, float], ...]


class Detector:
    """Loads the three networks once; `detect` runs the cascade on one image.

    models: an OpenFace model folder (or a checkout/install containing one);
    default $MTCNN_MODELS, then the bundled MIT weights."""

    def __init__(self, models=None, min_face: int = 60, t1: float = 0.6,
                 t2: float = 0.7, t3: float = 0.7):
        raise NotImplementedError  # being written

    def detect(self, image) -> list[Face]:
        """image: uint8 BGR (H x W x 3), grey (H x W) or BGRA (H x W x 4)."""
        raise NotImplementedError
