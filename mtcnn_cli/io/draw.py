"""Drawing detections on a copy of an image, for `mtcnn detect --annotate`."""
from __future__ import annotations

import os

import cv2
import numpy as np

from .output import format_float

# Colours (BGR). Documented in the README and --help: a green box, its
# confidence in black on a green label above it, and the five points as filled
# dots with a black outline (visible on dark eyes and on light skin alike):
# eyes blue, nose yellow, mouth corners red.
BOX_COLOUR = (0, 255, 0)  # green
TEXT_COLOUR = (0, 0, 0)  # black on the box's green
OUTLINE_COLOUR = (0, 0, 0)  # black ring around each point
# the five points: eyes, nose, mouth corners
POINT_COLOURS = ((255, 0, 0), (255, 0, 0), (0, 255, 255), (0, 0, 255), (0, 0, 255))
SUBPIXEL_BITS = 4  # cv2 drawing takes fixed-point coordinates with this many fraction bits
JPEG_QUALITY = 95
FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_SHARE = 0.12  # the label's text height, as a share of the face's width
MIN_TEXT_PIXELS = 9  # ... but never smaller than this, so that it stays legible


def _fixed(v: float) -> int:
    return int(round(v * (1 << SUBPIXEL_BITS)))


def line_width(height: int, width: int) -> int:
    """Stroke width in pixels: 1 up to 400 px on the shorter side, then growing."""
    return max(1, round(min(height, width) / 400))


def confidence_label(confidence: float) -> str:
    """The confidence as the JSON output writes it (the shortest decimal that
    reads back as the same float32): 0.9999857, not 1.000, so that faces can
    be told apart and matched with their records."""
    return format_float(confidence)


def font_scale_for(face_width: float) -> float:
    """The font scale whose text height is LABEL_SHARE of the face's width
    (at least MIN_TEXT_PIXELS): a label sized by its face, not by the image."""
    base = cv2.getTextSize("0", FONT, 1.0, 1)[0][1]  # text height at scale 1
    return max(MIN_TEXT_PIXELS, LABEL_SHARE * face_width) / base


def annotate(image: np.ndarray, faces, landmarks: bool = True) -> np.ndarray:
    """A copy of image (uint8 (H, W, 3) BGR) with each face's box, its
    confidence above the box, and (with landmarks) its five points."""
    out = image.copy()
    height, width = out.shape[:2]
    stroke = line_width(height, width)
    for face in faces:
        top_left = (_fixed(face.x), _fixed(face.y))
        bottom_right = (_fixed(face.x + face.width), _fixed(face.y + face.height))
        cv2.rectangle(out, top_left, bottom_right, BOX_COLOUR, stroke, cv2.LINE_AA, SUBPIXEL_BITS)
        label = confidence_label(face.confidence)
        font_scale = font_scale_for(face.width)
        thickness = max(1, round(font_scale))
        (text_w, text_h), base = cv2.getTextSize(label, FONT, font_scale, thickness)
        x = int(round(face.x))
        y = max(int(round(face.y)) - stroke, text_h + base)
        cv2.rectangle(out, (x, y - text_h - base), (x + text_w, y), BOX_COLOUR, cv2.FILLED)
        cv2.putText(out, label, (x, y - base), FONT, font_scale, TEXT_COLOUR, thickness, cv2.LINE_AA)
        if landmarks:
            radius = max(1.5 * stroke + 0.5, face.width / 60)
            for (px, py), colour in zip(face.landmarks, POINT_COLOURS):
                centre = (_fixed(px), _fixed(py))
                cv2.circle(out, centre, _fixed(radius + max(1.5, radius / 2)), OUTLINE_COLOUR,
                           cv2.FILLED, cv2.LINE_AA, SUBPIXEL_BITS)
                cv2.circle(out, centre, _fixed(radius), colour, cv2.FILLED, cv2.LINE_AA, SUBPIXEL_BITS)
    return out


# Annotated copies keep the input's name in these formats, which hold 8-bit
# colour as drawn; any other (a grey-only .pgm, a float .hdr, an explicit
# photo.dat) gets .png appended.
KEEPS_NAME = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def output_name(name: str) -> str:
    """The annotated copy keeps the input's name when its extension is one of
    KEEPS_NAME; other names get `.png` appended."""
    if os.path.splitext(name)[1].lower() in KEEPS_NAME:
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
