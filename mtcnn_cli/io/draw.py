"""Drawing detections on a copy of an image, for `mtcnn detect --annotate`."""
from __future__ import annotations

import os

import cv2
import numpy as np

from .records import format_float

# What can be drawn (--draw), all by default: the box, the five points, the
# face's index (its place in the image's record: CSV's face column, the
# JSON faces list) and its confidence. Choosing changes the picture only,
# never the records.
PARTS = ("boxes", "landmarks", "index", "scores")

# Colours (BGR). Documented in the README and --help: a green box, its
# index and confidence in black on a green label above it, and the five
# points as filled dots with a black outline (visible on dark eyes and on
# light skin alike): eyes blue, nose yellow, mouth corners red.
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
VIEW_PIXELS = 1000  # an image is looked at about this size on a screen: lines and labels stay visible there
LINE_SHARE = 0.01  # a box's line: 1% of the face's width (at least what shows on the screen) ...
MAX_LINE_SHARE = 0.05  # ... but never more than 5% of it, so that a small face is not covered


def _fixed(v: float) -> int:
    return int(round(v * (1 << SUBPIXEL_BITS)))


def parse_parts(text: str) -> tuple:
    """--draw's comma list -> the parts, in PARTS order. Raises ValueError."""
    names = [name.strip().lower() for name in text.split(",")]
    unknown = [name for name in names if name not in PARTS]
    if unknown or not text.strip():
        raise ValueError(f"--draw {text!r}: {', '.join(map(repr, unknown)) or 'nothing'} is not one of "
                         f"{','.join(PARTS)} (give a comma list of them)")
    return tuple(part for part in PARTS if part in names)


def line_width(height: int, width: int, face_width: float) -> int:
    """Stroke width in pixels of a face's box: LINE_SHARE of the face's width,
    but at least what still shows when the whole image is VIEW_PIXELS across
    (and 1 px), and never more than MAX_LINE_SHARE of the face."""
    seen = max(height, width) / VIEW_PIXELS
    wanted = max(LINE_SHARE * face_width, seen)
    return max(1, round(min(wanted, MAX_LINE_SHARE * face_width)))


def confidence_label(confidence: float) -> str:
    """The confidence as the JSON output writes it (the shortest decimal that
    reads back as the same float32): 0.9999857, not 1.000, so that faces can
    be told apart and matched with their records."""
    return format_float(confidence)


def label_text(index: int, confidence: float, parts) -> str:
    """What a face's label says: `#0 0.9999857` (index, confidence), or the
    one of them asked for; empty when neither is."""
    words = ([f"#{index}"] if "index" in parts else []) + \
        ([confidence_label(confidence)] if "scores" in parts else [])
    return " ".join(words)


def text_height(face_width: float, height: int = 0, width: int = 0) -> float:
    """The label's text height in pixels: LABEL_SHARE of the face's width,
    at least MIN_TEXT_PIXELS, and at least 1/200 of the image's longer side
    (a small face in a large photo keeps a label one can read on a screen)."""
    return max(MIN_TEXT_PIXELS, LABEL_SHARE * face_width, max(height, width) / 200)


def font_scale_for(face_width: float, height: int = 0, width: int = 0) -> float:
    """The font scale whose text height is text_height()."""
    base = cv2.getTextSize("0", FONT, 1.0, 1)[0][1]  # text height at scale 1
    return text_height(face_width, height, width) / base


def annotate(image: np.ndarray, faces, landmarks: bool = True, parts=PARTS) -> np.ndarray:
    """A copy of image (uint8 (H, W, 3) BGR) with, as `parts` say (PARTS),
    each face's box, a label above it with its index and confidence, and its
    five points (only with landmarks, and when the face has them). Lines,
    text and dots are sized by each face and by the image (line_width,
    text_height), so that faces of 20 and of 2,000 pixels are both legible;
    labels of faces close together do not cover one another."""
    out = image.copy()
    height, width = out.shape[:2]
    parts = set(parts) - (set() if landmarks else {"landmarks"})
    taken: list = []  # the labels drawn so far: a label never hides another
    for index, face in enumerate(faces):
        stroke = line_width(height, width, face.width)
        if "boxes" in parts:
            top_left = (_fixed(face.x), _fixed(face.y))
            bottom_right = (_fixed(face.x + face.width), _fixed(face.y + face.height))
            cv2.rectangle(out, top_left, bottom_right, BOX_COLOUR, stroke, cv2.LINE_AA, SUBPIXEL_BITS)
        label = label_text(index, face.confidence, parts)
        if label:
            _label(out, label, face, stroke, taken)
        if "landmarks" in parts and face.landmarks:
            radius = max(1.0, face.width / 50, 0.75 * stroke)
            for (px, py), colour in zip(face.landmarks, POINT_COLOURS):
                centre = (_fixed(px), _fixed(py))
                cv2.circle(out, centre, _fixed(radius + max(1.0, radius / 2)), OUTLINE_COLOUR,
                           cv2.FILLED, cv2.LINE_AA, SUBPIXEL_BITS)
                cv2.circle(out, centre, _fixed(radius), colour, cv2.FILLED, cv2.LINE_AA, SUBPIXEL_BITS)
    return out


def _label(out: np.ndarray, label: str, face, stroke: int, taken: list) -> None:
    """The label in black on a filled green rectangle just above the box, kept
    inside the image. When that place is taken by an earlier face's label
    (faces close together), below the box; else above the labels in the way.
    taken: the rectangles (x0, y0, x1, y1) of the labels drawn so far."""
    height, width = out.shape[:2]
    font_scale = font_scale_for(face.width, height, width)
    thickness = max(1, round(font_scale))
    (text_w, text_h), base = cv2.getTextSize(label, FONT, font_scale, thickness)
    pad = max(1, round(0.15 * text_h))
    box_w, box_h = text_w + 2 * pad, text_h + base + 2 * pad
    x = max(0, min(int(round(face.x)), width - box_w))
    above = int(round(face.y)) - (stroke + 1) // 2  # the label's bottom row, just above the box's line
    below = int(round(face.y + face.height)) + (stroke + 1) // 2 + box_h

    def clash(bottom):
        rect = (x, bottom - box_h, x + box_w, bottom)
        return next((t for t in taken if rect[0] < t[2] and t[0] < rect[2] and rect[1] < t[3] and t[1] < rect[3]),
                    None)

    bottom = max(above, box_h)  # no room above: inside the top of the box
    if clash(bottom) and below <= height and not clash(below):
        bottom = below
    for _ in range(len(taken)):
        other = clash(bottom)
        if other is None or other[1] - 1 < box_h:
            break
        bottom = other[1] - 1  # above the label in the way
    taken.append((x, bottom - box_h, x + box_w, bottom))
    cv2.rectangle(out, (x, bottom - box_h), (x + box_w, bottom), BOX_COLOUR, cv2.FILLED)
    cv2.putText(out, label, (x + pad, bottom - base - pad), FONT, font_scale, TEXT_COLOUR, thickness, cv2.LINE_AA)


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
