"""The one record of an image's faces, and every way it is written and read.

A record (`Result`) is one image, or one video frame, and its faces (box,
confidence, the five landmarks), or the error that skipped it. It is written
as a JSONL line (with the run's provenance, so that --resume can tell a file
made otherwise), an entry of a JSON document, CSV rows, or an OpenFace box
file, and read back: strictly, as we write it (`read_line`, for --resume and
the output folders' merge), or leniently, a record of any origin, the C++'s
too (`image_record`, for compare). No other module knows the record's keys.

Numbers are the float32 values the detector computed, each written as the
shortest decimal that reads back as the same float32. File names that are not
valid UTF-8 (Linux allows any bytes) are carried as Python's surrogate escapes:
JSON writes them as "\\udcXX" escapes (valid JSON; os.fsencode of the parsed
string gives back the original bytes); CSV and file names write the bytes.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..base.defaults import VERSION

DETECTOR = "mtcnn-cli"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Result:
    """One image's outcome. path as given; width and height in pixels (None
    when unknown); faces, or None and an error (a short reason) when the image
    was skipped."""
    path: str
    width: int | None
    height: int | None
    faces: list | None
    error: str | None
    frame: int | None = None  # a video frame's index (from 0) and time in seconds
    time: float | None = None
    crops: tuple | None = None  # --crops: per face, (the crop's path or None, its 2 x 3 matrix)


class RecordedFace(NamedTuple):
    """A face as a record holds it (read back from a file)."""
    x: float
    y: float
    width: float
    height: float
    confidence: float
    landmarks: tuple = ()


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


def matrix_json(matrix) -> str:
    """A 2 x 3 crop matrix, each number the shortest decimal of its float64."""
    return "[" + ", ".join("[" + ", ".join(repr(float(v)) for v in row) + "]" for row in matrix) + "]"


def face_json(face, landmarks: bool = True, crop: tuple | None = None) -> str:
    """crop: (path or None, matrix) of the face's crop (--crops)."""
    f = format_float
    text = (f'{{"x": {f(face.x)}, "y": {f(face.y)}, "width": {f(face.width)}, '
            f'"height": {f(face.height)}, "confidence": {f(face.confidence)}')
    if landmarks:
        points = ", ".join(f"[{f(x)}, {f(y)}]" for x, y in face.landmarks)
        text += f', "landmarks": [{points}]'
    if crop is not None:
        path, matrix = crop
        text += f', "crop": {"null" if path is None else json_string(path)}, "matrix": {matrix_json(matrix)}'
    return text + "}"


def face_crops(result) -> list:
    """The crop of each face of a result, or None each (no --crops)."""
    return list(result.crops) if result.crops is not None else [None] * len(result.faces or ())


def record_json(result, landmarks: bool = True) -> str:
    """One image as a one-line JSON object: path, width, height, then faces,
    or error for an image that was skipped."""
    head = f'{{"path": {json_string(result.path)}, '
    if getattr(result, "frame", None) is not None:  # a video frame
        head += f'"frame": {result.frame}, "time": {json.dumps(result.time)}, '
    head += f'"width": {_int_or_null(result.width)}, "height": {_int_or_null(result.height)}, '
    if result.error is not None:
        return head + f'"error": {json_string(result.error)}}}'
    faces = ", ".join(face_json(face, landmarks, crop) for face, crop in zip(result.faces, face_crops(result)))
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
        return (f'{{\n  "detector": {json.dumps(DETECTOR)},\n  "version": {json.dumps(VERSION)},\n'
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


CROP_COLUMNS = ["crop", "m11", "m12", "m13", "m21", "m22", "m23"]  # --crops: the file, its 2 x 3 matrix


def csv_header(landmarks: bool = True, frames: bool = False, crops: bool = False) -> list[str]:
    """frames: the run has videos; their rows carry frame and time (empty for
    images). crops: the run writes crops (--crops)."""
    points = [f"{axis}{i}" for i in range(1, 6) for axis in ("lx", "ly")] if landmarks else []
    where = ["frame", "time"] if frames else []
    cropped = CROP_COLUMNS if crops else []
    return ["path", *where, "face", "x", "y", "width", "height", "confidence", *points, *cropped, "error"]


def csv_rows(result, landmarks: bool = True, frames: bool = False, crops: bool = False) -> list[list[str]]:
    """One row per face (face numbered from 0); an image without faces, or
    skipped, gets one row with the face fields empty."""
    width = len(csv_header(landmarks, frames, crops))
    head = [result.path]
    if frames:
        frame, at = getattr(result, "frame", None), getattr(result, "time", None)
        head += ["" if frame is None else str(frame), "" if at is None else repr(at)]
    if result.error is not None or not result.faces:
        row = head + [""] * (width - len(head) - 1) + [result.error or ""]
        return [row]
    rows = []
    for i, (face, crop) in enumerate(zip(result.faces, face_crops(result))):
        row = head + [str(i)] + [format_float(v) for v in
                                 (face.x, face.y, face.width, face.height, face.confidence)]
        if landmarks:
            row += [format_float(v) for point in face.landmarks for v in point]
        if crops:
            path, matrix = crop if crop is not None else (None, [[""] * 3] * 2)
            row += [path or ""] + [v if v == "" else repr(float(v)) for line in matrix for v in line]
        rows.append(row + [""])
    return rows


def _csv_text(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


class CsvFormat:
    name = "csv"

    def __init__(self, params: dict, landmarks: bool = True, frames: bool = False, crops: bool = False):
        self.landmarks, self.frames, self.crops = landmarks, frames, crops

    def start(self) -> str:
        return _csv_text([csv_header(self.landmarks, self.frames, self.crops)])

    def record(self, result) -> str:
        return _csv_text(csv_rows(result, self.landmarks, self.frames, self.crops))

    def end(self) -> str:
        return ""


def make_format(name: str, params: dict, landmarks: bool = True, frames: bool = False,
                provenance: dict | None = None, crops: bool = False):
    """frames: the run has video frames (CSV then has frame and time columns);
    provenance: what JSONL records carry of the run that made them; crops:
    the run writes crops (CSV then has their columns; JSON faces carry them
    whenever a Result does)."""
    if name == "csv":
        return CsvFormat(params, landmarks, frames, crops)
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


# --- provenance: what a JSONL record says it was made with ----------------------------

def provenance_of(params: dict, digests: dict, landmarks: bool = True, every: int = 1,
                  crops: dict | None = None) -> dict:
    """The run's provenance from the parameters, the networks' {name: SHA-256}
    (combined as the SHA-256 of "PNet <hex>\\nRNet <hex>\\nONet <hex>\\n"), and
    what else changes the records: "landmarks": false (--no-landmarks) and
    "every": N (--every N), each given only when not the default."""
    combined = None
    if all(name in digests for name in ("PNet", "RNet", "ONet")):
        text = "".join(f"{name} {digests[name]}\n" for name in ("PNet", "RNet", "ONet"))
        combined = hashlib.sha256(text.encode("ascii")).hexdigest()
    made = {"version": VERSION, "params": params, "models_sha256": combined}
    if not landmarks:
        made["landmarks"] = False
    if every != 1:
        made["every"] = every
    if crops is not None:
        made["crops"] = crops
    return made


def provenance_difference(found, expected: dict) -> str | None:
    """How a record's provenance ("run") differs from this run's, in words;
    None when the parameters and models are the same (the version may differ:
    the numbers do not depend on it)."""
    if not isinstance(found, dict):
        return 'carries no provenance ("run"): it was written by another program or an older version'
    differences = []
    theirs = found.get("params") if isinstance(found.get("params"), dict) else {}
    for name, value in expected["params"].items():
        if theirs.get(name) != value:
            differences.append(f"{name} {theirs.get(name)} there, {value} now")
    if found.get("models_sha256") != expected["models_sha256"]:
        differences.append(f"models {str(found.get('models_sha256'))[:12]}... there, "
                           f"{str(expected['models_sha256'])[:12]}... now (SHA-256)")
    if found.get("landmarks", True) != expected.get("landmarks", True):
        differences.append(f"landmarks {'on' if found.get('landmarks', True) else 'off (--no-landmarks)'} "
                           f"there, {'on' if expected.get('landmarks', True) else 'off (--no-landmarks)'} now")
    if found.get("every", 1) != expected.get("every", 1):
        differences.append(f"--every {found.get('every', 1)} there, {expected.get('every', 1)} now")
    if found.get("crops") != expected.get("crops"):
        differences.append(f"crops {found.get('crops') or 'none'} there, {expected.get('crops') or 'none'} now")
    return "; ".join(differences) or None


# --- reading records back ---------------------------------------------------------------

RECORD_START = b'{"path": '  # how every JSONL record we write begins
RECORD_KEYS = {"path", "frame", "time", "width", "height", "faces", "error", "run"}
FACE_NUMBERS = ("x", "y", "width", "height", "confidence")


class RecordError(ValueError):
    """A line that is not one of our records. `number` is its line (from 1),
    `problem` what is wrong, in words that follow "line N"."""

    def __init__(self, number: int, problem: str):
        super().__init__(f"line {number} {problem}")
        self.number, self.problem = number, problem


def torn_record(tail: bytes) -> bool:
    """Whether the bytes after a file's last newline can be the start of one
    of our records, cut short by a kill."""
    return tail.startswith(RECORD_START) or RECORD_START.startswith(tail)


def _number(value) -> bool:
    """A finite JSON number (not a boolean, not an integer beyond any float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e300 if isinstance(value, int) else math.isfinite(value)


def record_problem(record) -> str | None:
    """Why a parsed JSONL line is not an image record as we write them, or
    None when it is one."""
    if not isinstance(record, dict):
        return "is not a JSON object"
    if not isinstance(record.get("path"), str) or not record["path"]:
        return 'has no "path" string'
    unknown = sorted(set(record) - RECORD_KEYS)
    if unknown:
        return f"has fields we never write ({', '.join(unknown)})"
    if "frame" in record and (isinstance(record["frame"], bool) or not isinstance(record["frame"], int)
                              or record["frame"] < 0 or not _number(record.get("time"))):
        return 'has a "frame" that is no frame number, or no "time" in seconds'
    for key in ("width", "height"):
        value = record.get(key, "missing")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f'has no "{key}" (a whole number or null)'
    if ("faces" in record) == ("error" in record):
        return 'has neither "faces" nor "error" (or both)'
    if "error" in record:
        return None if isinstance(record["error"], str) else '"error" is not a string'
    faces = record["faces"]
    if not isinstance(faces, list):
        return '"faces" is not a list'
    for face in faces:
        if not isinstance(face, dict) or not all(_number(face.get(k)) for k in FACE_NUMBERS):
            return "has a face without finite x, y, width, height and confidence"
    return None


NOT_A_RECORD = "is not a JSONL image record; is it a file written by --format jsonl?"


def read_line(line: bytes, number: int) -> dict:
    """One complete JSONL line (ending in a newline) as a checked record.
    Raises RecordError."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        raise RecordError(number, NOT_A_RECORD) from None
    problem = record_problem(record)
    if problem:
        raise RecordError(number, f"{problem}; {NOT_A_RECORD}")
    return record


def result_of(record: dict) -> Result:
    """A checked record as the Result that wrote it."""
    faces = record.get("faces")
    crops = None
    if faces is not None:
        if any("matrix" in f for f in faces):
            crops = tuple((f.get("crop"), f.get("matrix")) for f in faces)
        faces = [RecordedFace(f["x"], f["y"], f["width"], f["height"], f["confidence"],
                              tuple(tuple(point) for point in f.get("landmarks", ()))) for f in faces]
    return Result(record["path"], record.get("width"), record.get("height"), faces, record.get("error"),
                  record.get("frame"), record.get("time"), crops)


# --- reading sets of any origin (compare) ---------------------------------------------------

class SchemaError(ValueError):
    """A record of a set (ours or the C++'s) that cannot be used; the message
    names the file, the record and the problem."""


def json_type(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def image_record(path, item, where: str) -> tuple:
    """One image record of a set, ours or the C++'s (a JSON document's entry,
    a JSONL line), read leniently: other fields are let be, a face without a
    confidence gets NaN. Returns (image path, faces (n, 5) float32 of x, y,
    width, height, confidence, or None, width, height, error). Raises
    SchemaError naming `path` and `where`."""
    if not isinstance(item, dict):
        raise SchemaError(f"{path}: wrong schema: {where} is a {json_type(item)}, expected an object")
    image = item.get("path")
    if not isinstance(image, str) or not image:
        raise SchemaError(f'{path}: wrong schema: {where} has no "path" string')
    size = [optional_number(path, where, item, name) for name in ("width", "height")]
    if item.get("error") is not None:
        if not isinstance(item["error"], str):
            raise SchemaError(f'{path}: wrong schema: {where}.error is not a string')
        return image, None, *size, item["error"]
    faces = item.get("faces")
    if not isinstance(faces, list):
        raise SchemaError(f'{path}: wrong schema: {where} ({image}) has neither a "faces" list nor an "error"')
    rows = [face_record(path, face, f"{where}.faces[{k}]") for k, face in enumerate(faces)]
    return image, np.array(rows, np.float32).reshape(-1, 5), *size, None


def face_record(path, face, where: str) -> list[float]:
    if not isinstance(face, dict):
        raise SchemaError(f"{path}: wrong schema: {where} is a {json_type(face)}, expected an object")
    values = []
    for name in FACE_NUMBERS:
        if name not in face and name == "confidence":
            values.append(math.nan)
        elif name not in face:
            raise SchemaError(f'{path}: wrong schema: {where} has no "{name}"')
        else:
            values.append(checked_number(path, where, name, face[name]))
    return values


def optional_number(path, where: str, item: dict, name: str) -> float | None:
    return None if item.get(name) is None else checked_number(path, where, name, item[name])


def checked_number(path, where: str, name: str, value) -> float:
    """value as a float: finite, and not negative when it is a size."""
    if type(value) is float and value - value == 0.0 and (value >= 0 or not name.startswith(("width", "height"))):
        return value  # the common case, finite, first
    what = f"{where}: {name}" if where.startswith("line") else f"{where}.{name}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{path}: wrong schema: {what} is a {json_type(value)}, expected a number")
    if isinstance(value, int) and abs(value) > 1e300:
        raise SchemaError(f"{path}: {what} is an integer too large for any coordinate")
    if not math.isfinite(value):
        raise SchemaError(f"{path}: {what} is {value} (not a finite number)")
    if name.startswith(("width", "height")) and value < 0:
        raise SchemaError(f"{path}: {what} is negative ({value:g})")
    return float(value)
