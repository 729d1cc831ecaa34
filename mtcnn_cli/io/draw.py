"""Drawing detections on a copy of an image, for `mtcnn detect --annotate`."""
from __future__ import annotations

import os

import cv2
import numpy as np

from .images import IMAGE_EXTENSIONS

BOX_COLOUR = (0, 255, 0)  # BGR
TEXT_COLOUR = (0, 0, 0)
# the five points: eyes, nose, mouth corners
POINT_COLOURS = ((255, 0, 0), (255, 0, 0), (0, 255, 255), (0, 0, 255), (0, 0, 255))
SUBPIXEL_BITS = 4  # cv2 drawing takes fixed-point coordinates with this many fraction bits
JPEG_QUALITY = 95


def _fixed(v: float) -> int:
    return int(round(v * (1 << SUBPIXEL_BITS)))


def line_width(height: int, width: int) -> int:
    """Stroke width in pixels: 1 up to 400 px on the shorter side, then growing."""
    return max(1, round(min(height, width) / 400))


def annotate(image: np.ndarray, faces, landmarks: bool = True) -> np.ndarray:
    """A copy of image (uint8 (H, W, 3) BGR) with each face's box, its
    confidence above the box, and (with landmarks) its five points."""
    out = image.copy()
    height, width = out.shape[:2]
    stroke = line_width(height, width)
    font_scale = 0.4 * stroke
    for face in faces:
        top_left = (_fixed(face.x), _fixed(face.y))
        bottom_right = (_fixed(face.x + face.width), _fixed(face.y + face.height))
        cv2.rectangle(out, top_left, bottom_right, BOX_COLOUR, stroke, cv2.LINE_AA, SUBPIXEL_BITS)
        label = f"{face.confidence:.3f}"
        (text_w, text_h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        x = int(round(face.x))
        y = max(int(round(face.y)) - stroke, text_h + base)
        cv2.rectangle(out, (x, y - text_h - base), (x + text_w, y), BOX_COLOUR, cv2.FILLED)
        cv2.putText(out, label, (x, y - base), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    TEXT_COLOUR, 1, cv2.LINE_AA)
        if landmarks:
            for (px, py), colour in zip(face.landmarks, POINT_COLOURS):
                cv2.circle(out, (_fixed(px), _fixed(py)), _fixed(1.5 * stroke + 0.5), colour,
                           cv2.FILLED, cv2.LINE_AA, SUBPIXEL_BITS)
    return out


def output_name(name: str) -> str:
    """The annotated copy keeps the input's name when its extension is an
    image's; other names (an explicit `photo.dat`) get `.png` appended."""
    if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
        return name
    return name + ".png"


def encode(image: np.ndarray, name: str) -> bytes:
    """image (uint8 (H, W, 3) BGR) -> the bytes of an image file in the format
    named by name's extension."""
    ext = os.path.splitext(name)[1].lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"OpenCV cannot write {ext} images")
    return data.tobytes()
