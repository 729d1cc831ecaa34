"""Detections as text: JSON, JSONL, CSV and OpenFace bounding-box files.

Numbers are the float32 values the detector computed, each written as the
shortest decimal that reads back as the same float32. File names that are not
valid UTF-8 (Linux allows any bytes) are carried as Python's surrogate escapes:
JSON writes them as "\\udcXX" escapes (valid JSON; os.fsencode of the parsed
string gives back the original bytes); CSV and file names write the bytes.
"""
from __future__ import annotations

import csv
import io
import json
import re

import numpy as np

from .. import __version__

DETECTOR = "mtcnn-cli"
_SURROGATE = re.compile("[\ud800-\udfff]")


def format_float(value) -> str:
    """The shortest decimal that parses back to float32(value), e.g. 90.14."""
    return np.format_float_positional(np.float32(value), unique=True, trim="0")


def json_string(text: str) -> str:
    """A JSON string literal; non-ASCII kept as is, lone surrogates (from
    non-UTF-8 file names) written as \\uXXXX escapes."""
    literal = json.dumps(text, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", literal)


def _int_or_null(value) -> str:
    return "null" if value is None else str(int(value))


def face_json(face, landmarks: bool = True) -> str:
    f = format_float
    text = (f'{{"x": {f(face.x)}, "y": {f(face.y)}, "width": {f(face.width)}, '
            f'"height": {f(face.height)}, "confidence": {f(face.confidence)}')
    if landmarks:
        points = ", ".join(f"[{f(x)}, {f(y)}]" for x, y in face.landmarks)
        text += f', "landmarks": [{points}]'
    return text + "}"


def record_json(result, landmarks: bool = True) -> str:
    """One image as a one-line JSON object: path, width, height, then faces,
    or error for an image that was skipped."""
    head = f'{{"path": {json_string(result.path)}, '
    if getattr(result, "frame", None) is not None:  # a video frame
        head += f'"frame": {result.frame}, "time": {json.dumps(result.time)}, '
    head += f'"width": {_int_or_null(result.width)}, "height": {_int_or_null(result.height)}, '
    if result.error is not None:
        return head + f'"error": {json_string(result.error)}}}'
    faces = ", ".join(face_json(face, landmarks) for face in result.faces)
    return head + f'"faces": [{faces}]}}'


def params_json(params: dict) -> str:
    return json.dumps(params)


class JsonFormat:
    """One document: detector, version, params, then the images array, one
    image per line so that a large document stays readable and diffable."""
    name = "json"

    def __init__(self, params: dict, landmarks: bool = True):
        self.params, self.landmarks, self.count = params, landmarks, 0

    def start(self) -> str:
        return (f'{{\n  "detector": {json.dumps(DETECTOR)},\n  "version": {json.dumps(__version__)},\n'
                f'  "params": {params_json(self.params)},\n  "images": [')

    def record(self, result) -> str:
        self.count += 1
        return ("\n    " if self.count == 1 else ",\n    ") + record_json(result, self.landmarks)

    def end(self) -> str:
        return ("\n  ]" if self.count else "]") + "\n}\n"


def provenance_json(provenance: dict) -> str:
    return json.dumps(provenance, separators=(", ", ": "))


class JsonlFormat:
    """One image record per line, nothing else. Each record ends with its
    provenance, "run": {"version", "params", "models_sha256"}, so that
    --resume can tell a file made otherwise."""
    name = "jsonl"

    def __init__(self, params: dict, landmarks: bool = True, provenance: dict | None = None):
        self.landmarks = landmarks
        self.tail = f', "run": {provenance_json(provenance)}}}' if provenance is not None else "}"

    def start(self) -> str:
        return ""

    def record(self, result) -> str:
        return record_json(result, self.landmarks)[:-1] + self.tail + "\n"

    def end(self) -> str:
        return ""


def csv_header(landmarks: bool = True, frames: bool = False) -> list[str]:
    """frames: the run has videos; their rows carry frame and time (empty for images)."""
    points = [f"{axis}{i}" for i in range(1, 6) for axis in ("lx", "ly")] if landmarks else []
    where = ["frame", "time"] if frames else []
    return ["path", *where, "face", "x", "y", "width", "height", "confidence", *points, "error"]


def csv_rows(result, landmarks: bool = True, frames: bool = False) -> list[list[str]]:
    """One row per face (face numbered from 0); an image without faces, or
    skipped, gets one row with the face fields empty."""
    width = len(csv_header(landmarks, frames))
    head = [result.path]
    if frames:
        frame, at = getattr(result, "frame", None), getattr(result, "time", None)
        head += ["" if frame is None else str(frame), "" if at is None else repr(at)]
    if result.error is not None or not result.faces:
        row = head + [""] * (width - len(head) - 1) + [result.error or ""]
        return [row]
    rows = []
    for i, face in enumerate(result.faces):
        row = head + [str(i)] + [format_float(v) for v in
                                 (face.x, face.y, face.width, face.height, face.confidence)]
        if landmarks:
            row += [format_float(v) for point in face.landmarks for v in point]
        rows.append(row + [""])
    return rows


def _csv_text(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


class CsvFormat:
    name = "csv"

    def __init__(self, params: dict, landmarks: bool = True, frames: bool = False):
        self.landmarks, self.frames = landmarks, frames

    def start(self) -> str:
        return _csv_text([csv_header(self.landmarks, self.frames)])

    def record(self, result) -> str:
        return _csv_text(csv_rows(result, self.landmarks, self.frames))

    def end(self) -> str:
        return ""


def make_format(name: str, params: dict, landmarks: bool = True, frames: bool = False,
                provenance: dict | None = None):
    """frames: the run has video frames (CSV then has frame and time columns);
    provenance: what JSONL records carry of the run that made them."""
    if name == "csv":
        return CsvFormat(params, landmarks, frames)
    if name == "jsonl":
        return JsonlFormat(params, landmarks, provenance)
    return JsonFormat(params, landmarks)


def bbox_text(faces) -> str:
    """OpenFace's -bboxdir file: one `min_x min_y max_x max_y` line per face
    (FaceLandmarkImg reads four floats per line and skips empty lines)."""
    lines = []
    for face in faces:
        x, y = np.float32(face.x), np.float32(face.y)
        right, bottom = x + np.float32(face.width), y + np.float32(face.height)  # float32 sums
        lines.append(" ".join(format_float(v) for v in (x, y, right, bottom)) + "\n")
    return "".join(lines)
