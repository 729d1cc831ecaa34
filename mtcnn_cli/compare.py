"""Comparing two sets of face detections: OpenFace's C++ against ours, or two runs of ours.

A set is read from any of the formats below (detected from the content):
- "json": the OpenFace C++ reference JSON, or the JSON of `mtcnn detect` (same shape:
  `{"params": {...}, "images": [{"path", "width", "height", "faces": [...]}]}`, an image
  that failed has `"error"` instead of `"faces"`);
- "jsonl": one image record per line, as `mtcnn detect --format jsonl` writes;
- "csv": `mtcnn detect`'s CSV, one row per face;
- "bboxdir": an OpenFace `-bboxdir` folder, one `<stem>.txt` per image holding
  `min_x min_y max_x max_y` per face (no confidences).

Faces of one image are paired one-to-one by an optimal assignment on IoU (the
Hungarian method, below); each pair gives the differences of x, y, width, height
and confidence. Values are compared as float32, the precision both detectors keep.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from . import defaults

FORMATS = defaults.COMPARE_FORMATS
FIELDS = ("x", "y", "width", "height", "confidence")
CSV_REQUIRED = ("path", "face", "x", "y", "width", "height", "confidence", "error")
DEFAULT_PARAMS = defaults.PARAMS


class CompareError(Exception):
    """A set of detections that cannot be read or used. The message names the
    file (and the record, where there is one) and the problem."""


# --------------------------------------------------------------------------- data


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


# --------------------------------------------------------------------------- readers


MAX_SET_BYTES = 1 << 31  # 2 GiB: a REF of 250,000 images is about 100 MB


def read_detections(path: Path, fmt: str | None = None) -> DetectionSet:
    """Read a set of detections; fmt one of FORMATS, or None to detect it.
    Whatever the file holds, a problem is a CompareError naming it."""
    path = Path(path)
    try:
        if fmt == "bboxdir" or (fmt is None and path.is_dir()):
            return read_bbox_folder(path)
        text = read_text(path)
        fmt = fmt or sniff_format(path, text)
        reader = {"json": parse_json, "jsonl": parse_jsonl, "csv": parse_csv}[fmt]
        return reader(path, text)
    except RecursionError:
        raise CompareError(f"{path}: nested too deeply (not a detection file)") from None
    except MemoryError:
        raise CompareError(f"{path}: too large for the memory left") from None
    except csv.Error as e:
        raise CompareError(f"{path}: not a readable CSV: {e}") from None
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not valid JSON: {describe_json_error(e)}") from None
    except (ValueError, OverflowError) as e:  # e.g. an integer of more than 4300 digits
        raise CompareError(f"{path}: {unquoted(e)}") from None
    except OSError as e:
        raise CompareError(f"{path}: cannot read: {e.strerror or e}") from None


def read_capped(f, path: Path) -> bytes:
    """A text file's bytes, at most MAX_SET_BYTES, read in blocks so that a
    device (/dev/zero) or a binary file is refused at its first block of NUL
    bytes instead of filling the memory."""
    blocks, total = [], 0
    while True:
        block = f.read(1 << 24)
        if not block:
            return b"".join(blocks)
        if b"\0" in block:
            raise CompareError(f"{path}: not a text file (holds NUL bytes)")
        total += len(block)
        if total > MAX_SET_BYTES:
            raise CompareError(f"{path}: larger than {MAX_SET_BYTES >> 30} GiB, more than any detection file")
        blocks.append(block)


def unquoted(error: Exception) -> str:
    """An exception's message cut to one short clause."""
    return str(error).split(";")[0][:200]


def read_text(path: Path) -> str:
    if path.is_dir():
        raise CompareError(f"{path}: is a folder, not a file (an OpenFace bbox folder? use --cpp-format bboxdir)")
    try:
        # a FIFO with no writer must not hang the open: open non-blocking, then read blocking
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            data = read_capped(f, path)
        return data.decode("utf-8")
    except FileNotFoundError:
        raise CompareError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise CompareError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as e:
        raise CompareError(f"{path}: cannot read: {e.strerror or e}") from None


def sniff_format(path: Path, text: str) -> str:
    """"json", "jsonl" or "csv" from the content; CompareError when none fits."""
    head = text.lstrip()
    if not head:
        raise CompareError(f"{path}: empty file")
    if head.startswith("{"):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError as whole_error:
            first = head.splitlines()[0]
            try:
                record = json.loads(first)
            except json.JSONDecodeError:
                raise CompareError(f"{path}: not valid JSON: {describe_json_error(whole_error)}") from None
            if isinstance(record, dict) and "path" in record:
                return "jsonl"
            raise CompareError(f"{path}: not valid JSON: {describe_json_error(whole_error)}") from None
        if isinstance(whole, dict) and "path" in whole and "images" not in whole:
            return "jsonl"  # a JSONL file of a single image
        return "json"
    if head.startswith("["):
        return "json"  # parse_json says what is wrong with it
    first = head.splitlines()[0].split(",")
    if first[0].strip().strip('"') == "path" and len(first) > 1:
        return "csv"
    raise CompareError(
        f"{path}: unknown format (expected a detection JSON, JSONL or CSV file, or an OpenFace "
        "bbox folder); --cpp-format forces one")


def describe_json_error(error: json.JSONDecodeError) -> str:
    return f"{error.msg} at line {error.lineno}, column {error.colno}"


def parse_json(path: Path, text: str) -> DetectionSet:
    try:
        top = json.loads(text)
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not valid JSON: {describe_json_error(e)}") from None
    if not isinstance(top, dict):
        raise CompareError(f"{path}: wrong schema: the top level is a {json_type(top)}, expected an object "
                           'with an "images" list')
    images = top.get("images")
    if not isinstance(images, list):
        raise CompareError(f'{path}: wrong schema: no "images" list at the top level')
    records = [image_record(path, item, f"images[{i}]") for i, item in enumerate(images)]
    check_unique_paths(path, records, [f"images[{i}]" for i in range(len(records))])
    detector = top.get("detector") if isinstance(top.get("detector"), str) else None
    return DetectionSet(str(path), "json", records, read_params(path, top.get("params")), detector)


def parse_jsonl(path: Path, text: str) -> DetectionSet:
    records, places, params = [], [], None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise CompareError(f"{path}: line {number}: not valid JSON: {e.msg} at column {e.colno}") from None
        records.append(image_record(path, item, f"line {number}"))
        places.append(f"line {number}")
        run = item.get("run") if isinstance(item, dict) else None
        if params is None and isinstance(run, dict) and "params" in run:  # our records' provenance
            params = read_params(path, run["params"])
    if not records:
        raise CompareError(f"{path}: no image records")
    check_unique_paths(path, records, places)
    return DetectionSet(str(path), "jsonl", records, params)


def parse_csv(path: Path, text: str) -> DetectionSet:
    rows = csv.reader(io.StringIO(text))
    header = [name.strip() for name in next(rows, [])]
    absent = [name for name in CSV_REQUIRED if name not in header]
    if absent:
        raise CompareError(f"{path}: wrong CSV header: no column {', '.join(absent)}")
    column = {name: header.index(name) for name in CSV_REQUIRED}
    faces, errors, order = defaultdict(list), {}, []
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CompareError(f"{path}: line {number}: {len(row)} fields, the header has {len(header)}")
        cell = {name: row[i].strip() for name, i in column.items()}
        image = cell["path"]
        if not image:
            raise CompareError(f"{path}: line {number}: empty path")
        if image not in faces:
            order.append(image)
            faces[image]
        if cell["error"]:
            errors[image] = cell["error"]
        elif any(cell[name] for name in ("face",) + FIELDS):
            faces[image].append(csv_face(path, number, cell))
    if not order:
        raise CompareError(f"{path}: no image rows")
    records = [
        ImageFaces(image, None, error=errors[image]) if image in errors
        else ImageFaces(image, np.array(faces[image], np.float32).reshape(-1, 5))
        for image in order]
    return DetectionSet(str(path), "csv", records)


def csv_face(path: Path, number: int, cell: dict) -> list[float]:
    values = []
    for name in FIELDS:
        text = cell[name]
        if name == "confidence" and not text:
            values.append(math.nan)
            continue
        try:
            value = float(text)
        except ValueError:
            raise CompareError(f"{path}: line {number}: {name} is not a number: {text!r}") from None
        values.append(checked_number(path, f"line {number}", name, value))
    return values


def bbox_files(folder: Path) -> list[Path]:
    """The .txt files of a bbox folder and of its subfolders (`mtcnn detect
    --bboxdir` mirrors the images' folders), in sorted order of their paths;
    links to folders are not followed (no loop)."""
    found = []
    for where, folders, files in os.walk(folder):
        folders.sort()
        found += [Path(where) / name for name in files if name.endswith(".txt")]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def read_bbox_folder(folder: Path) -> DetectionSet:
    """OpenFace `-bboxdir` output: <stem>.txt per image, `min_x min_y max_x max_y`
    per face; in subfolders too, each image then named by its path in the
    folder without .txt (`a/x` for a/x.txt)."""
    if not folder.is_dir():
        raise CompareError(f"{folder}: not a folder (an OpenFace bbox folder was expected)")
    files = bbox_files(folder)
    if not files:
        raise CompareError(f"{folder}: no .txt files (not an OpenFace bbox folder)")
    return DetectionSet(str(folder), "bboxdir",
                        [bbox_file(f, f.relative_to(folder).with_suffix("").as_posix()) for f in files])


def bbox_file(path: Path, image: str | None = None) -> ImageFaces:
    faces = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        words = line.replace(",", " ").split()
        if not words:
            continue
        try:
            min_x, min_y, max_x, max_y = (float(w) for w in words)
        except ValueError:
            raise CompareError(f"{path}: line {number}: expected four numbers min_x min_y max_x max_y, "
                               f"got {line.strip()!r}") from None
        where = f"line {number}"
        for name, value in (("min_x", min_x), ("min_y", min_y), ("max_x", max_x), ("max_y", max_y)):
            checked_number(path, where, name, value)
        width = checked_number(path, where, "width (max_x - min_x)", max_x - min_x)
        height = checked_number(path, where, "height (max_y - min_y)", max_y - min_y)
        faces.append([min_x, min_y, width, height, math.nan])
    return ImageFaces(path.stem if image is None else image, np.array(faces, np.float32).reshape(-1, 5))


def image_record(path: Path, item, where: str) -> ImageFaces:
    if not isinstance(item, dict):
        raise CompareError(f"{path}: wrong schema: {where} is a {json_type(item)}, expected an object")
    image = item.get("path")
    if not isinstance(image, str) or not image:
        raise CompareError(f'{path}: wrong schema: {where} has no "path" string')
    size = [optional_number(path, where, item, name) for name in ("width", "height")]
    if item.get("error") is not None:
        if not isinstance(item["error"], str):
            raise CompareError(f'{path}: wrong schema: {where}.error is not a string')
        return ImageFaces(image, None, *size, error=item["error"])
    faces = item.get("faces")
    if not isinstance(faces, list):
        raise CompareError(f'{path}: wrong schema: {where} ({image}) has neither a "faces" list nor an "error"')
    rows = [face_record(path, face, f"{where}.faces[{k}]") for k, face in enumerate(faces)]
    return ImageFaces(image, np.array(rows, np.float32).reshape(-1, 5), *size)


def face_record(path: Path, face, where: str) -> list[float]:
    if not isinstance(face, dict):
        raise CompareError(f"{path}: wrong schema: {where} is a {json_type(face)}, expected an object")
    values = []
    for name in FIELDS:
        if name not in face and name == "confidence":
            values.append(math.nan)
        elif name not in face:
            raise CompareError(f'{path}: wrong schema: {where} has no "{name}"')
        else:
            values.append(checked_number(path, where, name, face[name]))
    return values


def optional_number(path: Path, where: str, item: dict, name: str) -> float | None:
    return None if item.get(name) is None else checked_number(path, where, name, item[name])


def checked_number(path: Path, where: str, name: str, value) -> float:
    """value as a float: finite, and not negative when it is a size."""
    if type(value) is float and value - value == 0.0 and (value >= 0 or not name.startswith(("width", "height"))):
        return value  # the common case, finite, first
    what = f"{where}: {name}" if where.startswith("line") else f"{where}.{name}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CompareError(f"{path}: wrong schema: {what} is a {json_type(value)}, expected a number")
    if isinstance(value, int) and abs(value) > 1e300:
        raise CompareError(f"{path}: {what} is an integer too large for any coordinate")
    if not math.isfinite(value):
        raise CompareError(f"{path}: {what} is {value} (not a finite number)")
    if name.startswith(("width", "height")) and value < 0:
        raise CompareError(f"{path}: {what} is negative ({value:g})")
    return float(value)


def read_params(path: Path, params) -> dict | None:
    """The detector parameters a set was made with, or None when it does not say."""
    if params is None:
        return None
    if not isinstance(params, dict):
        raise CompareError(f'{path}: wrong schema: "params" is a {json_type(params)}, expected an object')
    found = {}
    for name in DEFAULT_PARAMS:
        if name in params:
            value = checked_number(path, "params", name, params[name])
            if name == "min_face":
                if value != int(value):
                    raise CompareError(f"{path}: params.min_face is not a whole number ({value})")
                value = int(value)
            found[name] = value
    return found or None


def check_unique_paths(path: Path, records: list[ImageFaces], places: list[str]) -> None:
    seen = {}
    for record, place in zip(records, places):
        if record.path in seen:
            raise CompareError(f"{path}: {place} lists {record.path} again (first at {seen[record.path]})")
        seen[record.path] = place


def json_type(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- images of a set


def resolve_image(image: str, ref_path: Path, root: Path | None) -> Path | None:
    """An image path of REF as a file: absolute as is; relative to --root, else to
    REF's folder or the nearest of its parents that holds it, else to the current
    folder. None when not found."""
    p = Path(image)
    if p.is_absolute():
        return p if p.is_file() else None
    folder = ref_path.resolve().parent
    bases = [root] if root is not None else [folder, *folder.parents, Path.cwd()]
    return next((base / p for base in bases if (base / p).is_file()), None)


def image_in_folder(stem: str, folder: Path) -> tuple[Path | None, str | None]:
    """The image of a bbox file <stem>.txt in --images DIR: (path, None) or (None, problem).
    A nested box file's stem (`set/a/x`, as `detect --bboxdir` mirrors paths)
    is looked up with its folders, then with fewer and fewer of the leading
    ones (`a/x`, `x`), so that DIR may be any folder the images were under."""
    parts = stem.split("/")
    for start in range(len(parts)):
        tail = "/".join(parts[start:])
        found = sorted(f for f in folder.glob(f"{glob_escape(tail)}.*") if f.suffix.lower() != ".txt" and f.is_file())
        if len(found) > 1:
            names = ", ".join(f.relative_to(folder).as_posix() for f in found)
            return None, f"several images named {tail}.* in {folder}: {names}"
        if found:
            return found[0], None
    return None, f"no image named {stem}.* in {folder}"


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def image_files(ref: DetectionSet, root: Path | None, images_dir: Path | None) -> list[tuple[Path | None, str | None]]:
    """For each image of REF that the C++ did not fail on: (file, None) or (None, why not)."""
    out = []
    for image in ref.images:
        if image.error is not None:
            continue
        if ref.format == "bboxdir":
            out.append(image_in_folder(image.path, images_dir))
            continue
        found = resolve_image(image.path, Path(ref.source), root)
        where = f"--root {root}" if root is not None else f"{Path(ref.source).parent}, its parents and ."
        out.append((found, None) if found else (None, f"image not found (looked in {where})"))
    return out


def detect_for(ref: DetectionSet, files: list[tuple[Path | None, str | None]], params: dict,
               models=None, jobs: int = 1, on_image=None) -> DetectionSet:
    """Run our detector on REF's images (those `image_files` found); the result is
    keyed by REF's own paths, so that every image pairs with itself. on_image(),
    when given, is called after each image."""
    from .run.batch import detect_images

    wanted = [image for image in ref.images if image.error is None]
    found = [str(f) for f, _ in files if f is not None]
    results = detect_images(found, models=models, jobs=jobs, landmarks=False, **params)
    records = []
    try:
        for image, (f, problem) in zip(wanted, files):
            records.append(our_record(image, f, problem, results))
            if on_image is not None:
                on_image()
    finally:
        getattr(results, "close", lambda: None)()  # stops worker processes early on an error
    return DetectionSet("our detector", "run", records, dict(params), "mtcnn-cli")


def our_record(image: ImageFaces, file: Path | None, problem: str | None, results) -> ImageFaces:
    """Our detection of one REF image: the next of `results` when the file was found."""
    if file is None:
        return ImageFaces(image.path, None, error=problem)
    result = next(results)
    if result.faces is None:
        return ImageFaces(image.path, None, result.width, result.height, error=result.error)
    faces = np.array([[g.x, g.y, g.width, g.height, g.confidence] for g in result.faces],
                     np.float32).reshape(-1, 5)
    return ImageFaces(image.path, faces, result.width, result.height)


def run_params(ref: DetectionSet, overrides: dict) -> dict:
    """REF's parameters, then the given overrides (None: not given), then the defaults."""
    params = dict(DEFAULT_PARAMS)
    params.update(ref.params or {})
    params.update({k: v for k, v in overrides.items() if v is not None})
    return params


# --------------------------------------------------------------------------- matching


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boxes a (n, 4) and b (m, 4) as x, y, width, height -> IoU (n, m), in float64.
    Two equal boxes of no area overlap fully (1), so that equal sets always pair."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    w = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h  # (n, m)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    equal = np.all(a[:, None, :] == b[None, :, :], axis=2)  # (n, m)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), equal.astype(np.float64))


def min_cost_assignment(cost: np.ndarray) -> np.ndarray:
    """Hungarian method (shortest augmenting paths with dual potentials).

    cost (n, m), finite -> (min(n, m), 2) int pairs of (row, column): every row
    matched when n <= m (else every column), with the least total cost."""
    n, m = cost.shape
    if n > m:
        return min_cost_assignment(cost.T)[:, ::-1]
    row_u, col_v = np.zeros(n), np.zeros(m)  # dual potentials
    row_of_col = np.full(m, -1)
    col_of_row = np.full(n, -1)
    for start in range(n):
        sink, reach, dist, via, rows_seen, cols_seen = shortest_augmenting_path(
            cost, row_u, col_v, row_of_col, start)
        # Potentials stay feasible and become tight along the path.
        row_u[start] += reach
        others = np.flatnonzero(rows_seen)
        others = others[others != start]
        row_u[others] += reach - dist[col_of_row[others]]
        col_v[cols_seen] -= reach - dist[cols_seen]
        # Flip the path: every column on it takes the row it was reached from.
        col = sink
        while True:
            row = via[col]
            row_of_col[col] = row
            col_of_row[row], col = col, col_of_row[row]
            if row == start:
                break
    return np.stack([np.arange(n), col_of_row], axis=1).reshape(-1, 2)


def shortest_augmenting_path(cost, row_u, col_v, row_of_col, start):
    """Dijkstra over reduced costs from the free row `start` to the nearest free column.

    Returns the free column reached, its distance, the distances (m,) and the
    row each column was reached from (m,), and the rows (n,) and columns (m,) scanned."""
    n, m = cost.shape
    dist, via = np.full(m, np.inf), np.full(m, -1)
    rows_seen, cols_seen = np.zeros(n, bool), np.zeros(m, bool)
    row, reach = start, 0.0
    while True:
        rows_seen[row] = True
        through_row = reach + cost[row] - row_u[row] - col_v  # (m,)
        closer = ~cols_seen & (through_row < dist)
        dist[closer], via[closer] = through_row[closer], row
        open_dist = np.where(cols_seen, np.inf, dist)
        reach = open_dist.min()
        nearest = open_dist == reach
        free = nearest & (row_of_col == -1)
        col = int(np.argmax(free if free.any() else nearest))
        cols_seen[col] = True
        if row_of_col[col] == -1:
            return col, reach, dist, via, rows_seen, cols_seen
        row = row_of_col[col]


OVERLAP_BLOCK = 1 << 20  # IoU entries computed at a time (8 MB of float64)


def pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a[k] and b[k] (k, 4) as x, y, width, height, float64, with
    the arithmetic of iou_matrix (equal boxes of no area overlap fully)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    w = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    equal = np.all(a == b, axis=1)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), equal.astype(np.float64))


def overlaps(a: np.ndarray, b: np.ndarray):
    """The pairs of boxes a (n, 4) and b (m, 4) that overlap (IoU > 0): rows
    (E,), columns (E,) and IoUs (E,), in row-major order. Only the pairs whose
    x ranges meet are computed (b sorted by x, a window per box of a), in
    chunks of at most OVERLAP_BLOCK pairs: time and memory follow the pairs
    that can overlap, not n * m."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    order = np.argsort(b64[:, 0], kind="stable")
    bx = b64[order, 0]
    reach = float(b64[:, 2].max()) if len(b64) else 0.0
    lo = np.searchsorted(bx, a64[:, 0] - reach, "left")
    hi = np.searchsorted(bx, a64[:, 0] + a64[:, 2], "right")
    counts = hi - lo
    rows, cols, values = [], [], []
    start, n = 0, len(a64)
    while start < n:
        stop = start + 1 + int(np.searchsorted(np.cumsum(counts[start:]), OVERLAP_BLOCK, "right"))
        stop = min(stop, n)
        chunk = counts[start:stop]
        r = np.repeat(np.arange(start, stop), chunk)
        first = np.cumsum(chunk) - chunk
        c = order[np.arange(len(r)) - np.repeat(first, chunk) + np.repeat(lo[start:stop], chunk)]
        iou = pair_iou(a64[r], b64[c])
        keep = iou > 0
        rows.append(r[keep])
        cols.append(c[keep])
        values.append(iou[keep])
        start = stop
    if not rows:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    rows, cols, values = np.concatenate(rows), np.concatenate(cols), np.concatenate(values)
    at = np.lexsort((cols, rows))
    return rows[at], cols[at], values[at]


def components(n: int, m: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Connected components of the bipartite overlap graph (rows 0..n-1,
    columns n..n+m-1): a label per edge, by vectorised label propagation."""
    label = np.arange(n + m)
    u, v = rows, cols + n
    while True:
        low = np.minimum(label[u], label[v])
        before = label.copy()
        np.minimum.at(label, u, low)
        np.minimum.at(label, v, low)
        label = label[label]  # pointer jumping
        if np.array_equal(label, before):
            return label[u]


def assign_overlaps(n: int, m: int, rows, cols, values) -> np.ndarray:
    """The one-to-one pairs (k, 2) with the largest total IoU among the
    overlapping pairs: each connected group of overlapping faces is solved
    on its own (the Hungarian method on its small matrix), a face that
    overlaps exactly one face, which overlaps only it, is paired at once."""
    if not len(rows):
        return np.zeros((0, 2), int)
    row_degree, col_degree = np.bincount(rows, minlength=n), np.bincount(cols, minlength=m)
    alone = (row_degree[rows] == 1) & (col_degree[cols] == 1)
    found = [np.stack([rows[alone], cols[alone]], axis=1)]
    rest = ~alone
    if rest.any():
        r, c, v = rows[rest], cols[rest], values[rest]
        group = components(n, m, r, c)
        order = np.argsort(group, kind="stable")
        r, c, v, group = r[order], c[order], v[order], group[order]
        bounds = np.flatnonzero(np.diff(group)) + 1
        for gr, gc, gv in zip(np.split(r, bounds), np.split(c, bounds), np.split(v, bounds)):
            row_ids, row_at = np.unique(gr, return_inverse=True)
            col_ids, col_at = np.unique(gc, return_inverse=True)
            cost = np.zeros((len(row_ids), len(col_ids)))
            cost[row_at, col_at] = -gv
            sub = min_cost_assignment(cost)
            sub = sub[cost[sub[:, 0], sub[:, 1]] < 0]  # pairs that overlap
            found.append(np.stack([row_ids[sub[:, 0]], col_ids[sub[:, 1]]], axis=1))
    pairs = np.concatenate(found).reshape(-1, 2)
    return pairs[np.argsort(pairs[:, 0], kind="stable")]


def pair_faces(ref: np.ndarray, ours: np.ndarray):
    """Faces (n, >=4) and (m, >=4) -> pairs (k, 2) of (ref index, our index) with
    the largest total IoU, their IoUs (k,), and the unpaired ref and our indices.
    Faces that overlap nothing of the other side are never paired. Only the
    overlapping pairs are kept and solved, group by group: 5,000 faces a side
    take well under a second."""
    n, m = len(ref), len(ours)
    rows, cols, values = overlaps(ref[:, :4], ours[:, :4]) if n and m else \
        (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    pairs = assign_overlaps(n, m, rows, cols, values)
    if len(pairs):
        key = rows * m + cols  # ascending: overlaps are in row-major order
        ious = values[np.searchsorted(key, pairs[:, 0] * m + pairs[:, 1])]
    else:
        ious = np.zeros(0)
    paired_ref, paired_ours = np.zeros(n, bool), np.zeros(m, bool)
    paired_ref[pairs[:, 0]] = True
    paired_ours[pairs[:, 1]] = True
    return pairs, ious, np.flatnonzero(~paired_ref), np.flatnonzero(~paired_ours)


# --------------------------------------------------------------------------- comparison


@dataclass(eq=False)
class ImageComparison:
    """One image of REF against OURS. deltas: (k, 5) float64 of ours - ref for x, y,
    width, height, confidence over the pairs (NaN confidence where a side has none)."""
    path: str
    ref: ImageFaces
    ours: ImageFaces | None
    problem: str | None = None
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), int))
    ious: np.ndarray = field(default_factory=lambda: np.zeros(0))
    deltas: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))
    missing: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    extra: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    identical: bool = False
    within_tolerance: bool = False

    @property
    def compared(self) -> bool:
        return self.problem is None

    @property
    def same_count(self) -> bool:
        return self.compared and len(self.ref.faces) == len(self.ours.faces)

    @property
    def passed(self) -> bool:
        return self.compared and not len(self.missing) and not len(self.extra) and self.within_tolerance

    @property
    def max_box_delta(self) -> float:
        return float(np.abs(self.deltas[:, :4]).max()) if len(self.deltas) else 0.0

    @property
    def max_conf_delta(self) -> float:
        conf = np.abs(self.deltas[:, 4])
        conf = conf[~np.isnan(conf)]
        return float(conf.max()) if len(conf) else 0.0

    @property
    def status(self) -> str:
        if not self.compared:
            return "not compared"
        if self.identical:
            return "identical"
        if len(self.missing) or len(self.extra):
            return "faces differ" if self.same_count else "count differs"
        return "within tolerance" if self.within_tolerance else "beyond tolerance"


@dataclass(eq=False)
class Comparison:
    ref: DetectionSet
    ours: DetectionSet
    tolerance: float
    conf_tolerance: float
    images: list[ImageComparison]          # REF's images the C++ did not fail on, in REF's order
    ref_errors: list[ImageFaces]           # REF's images the C++ failed on
    only_ours: list[ImageFaces]            # images of OURS that REF does not list
    count_only_ours: bool = False          # whether images only in OURS fail the comparison

    @property
    def failing_only_ours(self) -> list[ImageFaces]:
        """The images only in OURS that count as failures (none unless asked)."""
        return self.only_ours if self.count_only_ours else []

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.images) and not self.failing_only_ours


def image_problem(ref: ImageFaces, ours: ImageFaces | None) -> str | None:
    """Why an image of REF cannot be compared with OURS, or None."""
    if ours is None:
        return "not in OURS"
    if ours.faces is None:
        return f"ours: {ours.error}"
    if None not in (ref.width, ref.height, ours.width, ours.height) and \
            (ref.width, ref.height) != (ours.width, ours.height):
        return f"image size differs: {fmt_size(ref)} in REF, {fmt_size(ours)} in OURS"
    return None


def compare_image(ref: ImageFaces, ours: ImageFaces | None, tolerance: float,
                  conf_tolerance: float) -> ImageComparison:
    problem = image_problem(ref, ours)
    if problem is not None:
        return ImageComparison(ref.path, ref, ours, problem=problem)
    return compare_many([(ref, ours)], tolerance, conf_tolerance)[0]


BIG_IMAGE_PAIRS = 4096  # images with more face pairs than this are paired one by one (sparse)


def pair_many(sides: list) -> list:
    """pair_faces for many images at once: sides [(ref faces, our faces)] ->
    [(pairs, ious, missing, extra)], the same as pair_faces gives each image.
    The candidate pairs of all small images are computed in a few numpy calls;
    only images whose overlaps leave a choice are solved one by one."""
    out = [None] * len(sides)
    small = [k for k, (a, b) in enumerate(sides) if len(a) * len(b) <= BIG_IMAGE_PAIRS]
    for k in set(range(len(sides))) - set(small):
        out[k] = pair_faces(*sides[k])
    if not small:
        return out
    n = np.array([len(sides[k][0]) for k in small])
    m = np.array([len(sides[k][1]) for k in small])
    A = np.concatenate([sides[k][0][:, :4] for k in small]).astype(np.float64).reshape(-1, 4)
    B = np.concatenate([sides[k][1][:, :4] for k in small]).astype(np.float64).reshape(-1, 4)
    a_start, b_start = np.cumsum(n) - n, np.cumsum(m) - m
    image_of_a, image_of_b = np.repeat(np.arange(len(small)), n), np.repeat(np.arange(len(small)), m)
    count = m[image_of_a]  # candidates per ref face: every face of its image
    r = np.repeat(np.arange(len(A)), count)
    first = np.cumsum(count) - count
    c = np.repeat(b_start[image_of_a], count) + np.arange(len(r)) - np.repeat(first, count)
    iou = pair_iou(A[r], B[c]) if len(r) else np.zeros(0)
    keep = iou > 0
    r, c, iou = r[keep], c[keep], iou[keep]  # row-major within each image
    alone = (np.bincount(r, minlength=len(A))[r] == 1) & (np.bincount(c, minlength=len(B))[c] == 1)
    tangled = np.unique(image_of_a[r[~alone]])
    chosen = [np.flatnonzero(alone & ~np.isin(image_of_a[r], tangled))]
    for i in tangled:  # overlaps that leave a choice: this image's own assignment
        edges = np.flatnonzero(image_of_a[r] == i)
        lr, lc = r[edges] - a_start[i], c[edges] - b_start[i]
        local = assign_overlaps(n[i], m[i], lr, lc, iou[edges])
        key = lr * m[i] + lc
        chosen.append(edges[np.searchsorted(key, local[:, 0] * m[i] + local[:, 1])])
    chosen = np.sort(np.concatenate(chosen))
    pr, pc, piou = r[chosen], c[chosen], iou[chosen]
    paired_a, paired_b = np.zeros(len(A), bool), np.zeros(len(B), bool)
    paired_a[pr], paired_b[pc] = True, True
    missing, extra = np.flatnonzero(~paired_a), np.flatnonzero(~paired_b)
    cut = lambda values, owner: np.split(values, np.cumsum(np.bincount(owner, minlength=len(small)))[:-1])  # noqa: E731
    by_pairs = zip(cut(pr, image_of_a[pr]), cut(pc, image_of_a[pr]), cut(piou, image_of_a[pr]))
    by_missing = cut(missing, image_of_a[missing])
    by_extra = cut(extra, image_of_b[extra])
    for i, ((ir, ic, iiou), im, ie) in enumerate(zip(by_pairs, by_missing, by_extra)):
        pairs = np.stack([ir - a_start[i], ic - b_start[i]], axis=1).reshape(-1, 2)
        out[small[i]] = (pairs, iiou, im - a_start[i], ie - b_start[i])
    return out


def compare_many(images: list, tolerance: float, conf_tolerance: float) -> list:
    """[(REF image, our image)], both with faces and comparable ->
    [ImageComparison], with the differences of all pairs computed at once."""
    paired = pair_many([(ref.faces, ours.faces) for ref, ours in images])
    counts = np.array([len(p[0]) for p in paired], np.int64)
    if counts.sum():
        a = np.concatenate([ref.faces[p[0][:, 0]] for (ref, _), p in zip(images, paired)])  # (P, 5)
        b = np.concatenate([ours.faces[p[0][:, 1]] for (_, ours), p in zip(images, paired)])
    else:
        a = b = np.zeros((0, 5), np.float32)
    deltas = b.astype(np.float64) - a.astype(np.float64)
    owner = np.repeat(np.arange(len(images)), counts)
    box_bad = ~np.all(np.abs(deltas[:, :4]) <= tolerance, axis=1)
    conf_bad = ~np.isnan(deltas[:, 4]) & ~(np.abs(deltas[:, 4]) <= conf_tolerance)
    # Bit for bit over the fields both sides give (a bbox folder gives no confidence).
    differs = np.any((a != b) & ~(np.isnan(a) | np.isnan(b)), axis=1)
    bad = np.bincount(owner, weights=box_bad | conf_bad, minlength=len(images))
    different = np.bincount(owner, weights=differs, minlength=len(images))
    starts = np.cumsum(counts) - counts
    results = []
    for k, ((ref, ours), (pairs, ious, missing, extra)) in enumerate(zip(images, paired)):
        identical = not len(missing) and not len(extra) and not different[k]
        results.append(ImageComparison(ref.path, ref, ours, None, pairs, ious,
                                       deltas[starts[k]:starts[k] + counts[k]], missing, extra,
                                       identical, not bad[k]))
    return results


def fmt_size(image: ImageFaces) -> str:
    return f"{image.width:g}x{image.height:g}"


def compare_sets(ref: DetectionSet, ours: DetectionSet, tolerance: float = 0.01,
                 conf_tolerance: float = 1e-4, count_only_ours: bool = False) -> Comparison:
    """REF's images against OURS. Images only in OURS are listed, and fail the
    comparison only with count_only_ours."""
    by_stem = "bboxdir" in (ref.format, ours.format)
    wanted = [image for image in ref.images if image.error is None]
    matched, unused = match_images(matching_names(ref), matching_names(ours), by_stem)
    counterpart = {ref.images[r].path: ours.images[o] for r, o in matched.items()}
    results, comparable = [], []
    for image in wanted:
        other = counterpart.get(image.path)
        problem = image_problem(image, other)
        results.append(ImageComparison(image.path, image, other, problem=problem) if problem else None)
        if problem is None:
            comparable.append((len(results) - 1, image, other))
    done = compare_many([(image, other) for _, image, other in comparable], tolerance, conf_tolerance)
    for (k, _, _), result in zip(comparable, done):
        results[k] = result
    return Comparison(ref, ours, tolerance, conf_tolerance, results,
                      [image for image in ref.images if image.error is not None],
                      [ours.images[o] for o in unused], count_only_ours)


def matching_names(s: DetectionSet) -> list[str]:
    """The image paths match_images pairs. A bbox folder's images are already
    stems (`x_0.7` from `x_0.7.txt`); given back their file name, so that
    taking the stem again keeps the dots OpenFace's own names hold."""
    if s.format == "bboxdir":
        return [image.path + ".txt" for image in s.images]
    return [image.path for image in s.images]


def params_mismatch(ref: DetectionSet, ours: DetectionSet) -> list[str]:
    """The detector parameters both sets record with different values, as
    'min_face 20 in REF, 60 in OURS'; empty when either records none."""
    if not ref.params or not ours.params:
        return []
    return [f"{name} {ref.params[name]:g} in REF, {ours.params[name]:g} in OURS"
            for name in DEFAULT_PARAMS
            if name in ref.params and name in ours.params
            and np.float32(ref.params[name]) != np.float32(ours.params[name])]  # the C++ stores floats


def check_report_path(path: Path) -> None:
    """--report FILE, before anything is compared: CompareError when it is a
    folder or cannot be created (its folder missing or not writable); nothing
    is left behind. That it is no input: refuse_report_over_inputs."""
    from .atomic_file import write_target
    from .io.atomic import AtomicFile, OutputError

    if path.is_dir():
        raise CompareError(f"--report {path}: is a folder")
    if write_target(path)[1]:
        return  # a device or FIFO, written in place when the report is ready: not opened now
    try:
        AtomicFile(path).discard()
    except OutputError as e:
        raise CompareError(f"--report: {e}") from None


def match_images(ref_paths: list[str], our_paths: list[str], by_stem: bool):
    """Which image of OURS is which image of REF: the same path, else the same file
    name (the stem, when a side is a bbox folder), the candidate sharing the longest
    tail of folders winning (a nested bbox file `a/x.txt` is `./a/x.png`'s, not
    `./b/x.png`'s). Returns {ref index: our index} and OURS's unmatched indices."""
    def name(p):
        parts = PurePosixPath(p.replace("\\", "/"))
        return parts.stem if by_stem else parts.name

    def shared_folders(a, b):  # the names are equal (or their stems): count the folders above them
        fa, fb = a.replace("\\", "/").split("/")[-2::-1], b.replace("\\", "/").split("/")[-2::-1]
        n = 0
        while n < min(len(fa), len(fb)) and fa[n] == fb[n]:
            n += 1
        return n

    exact = {p: j for j, p in enumerate(our_paths)}
    by_name = defaultdict(list)
    for j, p in enumerate(our_paths):
        by_name[name(p)].append(j)
    matched, used = {}, set()
    for i, p in enumerate(ref_paths):
        if p in exact and exact[p] not in used:
            matched[i] = exact[p]
            used.add(exact[p])
    for i, p in enumerate(ref_paths):
        if i in matched:
            continue
        candidates = [j for j in by_name.get(name(p), []) if j not in used]
        scores = [shared_folders(p, our_paths[j]) for j in candidates]
        if candidates and scores.count(max(scores)) == 1:
            j = candidates[scores.index(max(scores))]
            matched[i] = j
            used.add(j)
    return matched, [j for j in range(len(our_paths)) if j not in used]


# --------------------------------------------------------------------------- statistics


def summarise(c: Comparison) -> dict:
    compared = [r for r in c.images if r.compared]
    deltas = np.concatenate([r.deltas for r in compared]) if compared else np.zeros((0, 5))  # (P, 5)
    stats = {}
    for k, name in enumerate(FIELDS):
        d = np.abs(deltas[:, k])
        d = d[~np.isnan(d)]
        stats[name] = {"max_abs": float(d.max()) if len(d) else None,
                       "mean_abs": float(d.mean()) if len(d) else None, "pairs": int(len(d))}
    return {
        "passed": c.passed,
        "images_in_ref": len(c.ref.images),
        "ref_errors": len(c.ref_errors),
        "images_compared": len(compared),
        "images_not_compared": len(c.images) - len(compared),
        "images_only_in_ours": len(c.only_ours),
        "images_identical": sum(r.identical for r in compared),
        "images_same_count": sum(r.same_count for r in compared),
        "images_passed": sum(r.passed for r in compared),
        "images_failed": sum(not r.passed for r in c.images) + len(c.failing_only_ours),
        "faces_in_ref": int(sum(len(r.ref.faces) for r in compared)),
        "faces_in_ours": int(sum(len(r.ours.faces) for r in compared)),
        "faces_paired": int(sum(len(r.pairs) for r in compared)),
        "faces_missing": int(sum(len(r.missing) for r in compared)),
        "faces_extra": int(sum(len(r.extra) for r in compared)),
        "min_iou": float(min((r.ious.min() for r in compared if len(r.ious)), default=1.0)),
        "differences": stats,
    }


def worst_images(c: Comparison, limit: int = 10) -> list[ImageComparison]:
    """Every image not compared or with a face missing or extra, then the `limit`
    others with the largest differences; identical images never."""
    def size(r):
        return r.max_box_delta, r.max_conf_delta

    counts = [r for r in c.images if not r.compared or len(r.missing) or len(r.extra)]
    others = [r for r in c.images if r.compared and not len(r.missing) and not len(r.extra) and not r.identical]
    counts.sort(key=lambda r: (not r.compared, *size(r)), reverse=True)
    return counts + sorted(others, key=size, reverse=True)[:limit]


def verdict(c: Comparison) -> str:
    """The one line printed on stdout."""
    s = summarise(c)
    tol = f"tolerance {c.tolerance:g} px, {c.conf_tolerance:g} confidence"
    only = s['images_only_in_ours']
    extra = f"; {only} image{'' if only == 1 else 's'} only in OURS, not compared" \
        if c.only_ours and not c.count_only_ours else ""
    if c.passed:
        return (f"PASS: {s['images_compared']} images match ({s['images_identical']} identical to the bit, "
                f"{tol}){extra}")
    total = s['images_compared'] + s['images_not_compared'] + len(c.failing_only_ours)
    return f"FAIL: {s['images_failed']} of {total} images differ or could not be compared ({tol}){extra}"


# --------------------------------------------------------------------------- report


def f32(value) -> float | None:
    """A float32 as the shortest decimal that reads back to it (as detect
    writes it); None for NaN."""
    value = np.float32(value)
    return None if np.isnan(value) else float(str(value))  # str: the shortest repr, as format_float


def face_dict(row: np.ndarray, index: int) -> dict:
    return {"index": index, **{name: f32(v) for name, v in zip(FIELDS, row)}}


def image_report(r: ImageComparison) -> dict:
    out = {"path": r.path, "status": r.status, "passed": r.passed}
    if r.ours is not None and r.ours.path != r.path:
        out["our_path"] = r.ours.path
    if not r.compared:
        out["problem"] = r.problem
        return out
    pairs = []
    for (i, j), iou, d in zip(r.pairs, r.ious, r.deltas):
        pairs.append({"ref": face_dict(r.ref.faces[i], int(i)), "ours": face_dict(r.ours.faces[j], int(j)),
                      "iou": float(iou), "dx": float(d[0]), "dy": float(d[1]), "dwidth": float(d[2]),
                      "dheight": float(d[3]), "dconfidence": None if np.isnan(d[4]) else float(d[4])})
    out.update({
        "identical": r.identical, "within_tolerance": r.within_tolerance,
        "ref_faces": len(r.ref.faces), "our_faces": len(r.ours.faces),
        "max_abs_box_delta": r.max_box_delta, "max_abs_confidence_delta": r.max_conf_delta,
        "pairs": pairs,
        "missing": [face_dict(r.ref.faces[i], int(i)) for i in r.missing],
        "extra": [face_dict(r.ours.faces[j], int(j)) for j in r.extra],
    })
    return out


def report(c: Comparison) -> dict:
    """Everything, per image and per face, as JSON-ready data."""
    return {**report_head(c), "images": [image_report(r) for r in c.images], **report_tail(c)}


def _side(s: DetectionSet) -> dict:
    return {"source": s.source, "format": s.format, "detector": s.detector, "params": s.params}


def report_head(c: Comparison) -> dict:
    return {"ref": _side(c.ref), "ours": _side(c.ours), "tolerance": c.tolerance,
            "conf_tolerance": c.conf_tolerance, "summary": summarise(c)}


def report_tail(c: Comparison) -> dict:
    return {"ref_errors": [{"path": i.path, "error": i.error} for i in c.ref_errors],
            "only_in_ours": [i.path for i in c.only_ours]}


def report_chunks(c: Comparison):
    """The report's JSON text (the data of report()) in pieces, one image at a
    time, so that a report of 250,000 images is never one string in memory."""
    dump = lambda value: json.dumps(value, allow_nan=False)  # noqa: E731
    head = dump(report_head(c))
    yield head[:-1] + ',\n "images": ['
    for k, r in enumerate(c.images):
        yield ("\n  " if k == 0 else ",\n  ") + dump(image_report(r))
    yield "\n ],\n " + dump(report_tail(c))[1:] + "\n"


def refuse_report_over_inputs(report_path, paths, models=None) -> None:
    """CompareError (exit 2, before anything is compared) when --report FILE
    is one of the files compare reads: REF, OURS (a bbox folder's files),
    images, model files (models: the --models choice)."""
    from .detector.models import model_files
    from .io.inputs import file_identity, overwritten_input

    if report_path is None or not os.path.lexists(report_path):
        return
    sources = {}
    for path in [p for p in paths if p is not None] + (model_files(models) if models is not False else []):
        path = Path(path)
        files = bbox_files(path) if path.is_dir() else [path]
        for file in files:
            key = file_identity(file)
            if key is not None:
                sources.setdefault(key, str(file))
    found = overwritten_input({report_path: "--report"}, sources)
    if found:
        raise CompareError(f"--report {found[1]} would overwrite {found[2]}, which compare reads")


def write_report(path: Path, data) -> None:
    """The --report file, written atomically: `data` is a Comparison (written
    piece by piece) or report()'s dict."""
    from .io.atomic import AtomicFile, OutputError

    try:
        with AtomicFile(Path(path), "w", encoding="utf-8") as f:
            if isinstance(data, Comparison):
                for chunk in report_chunks(data):
                    f.write(chunk)
            else:
                f.write(json.dumps(data, indent=1, allow_nan=False) + "\n")
    except OutputError as e:
        raise CompareError(str(e)) from None


# --------------------------------------------------------------------------- table


def print_summary(c: Comparison, console=None) -> None:
    """The summary as rich tables, on stderr unless a console is given."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    s = summarise(c)
    counts = Table(title=f"mtcnn compare: {c.ref.source} vs {c.ours.source}", show_header=False)
    counts.add_column(justify="left")
    counts.add_column(justify="right")
    for label, value in (
            ("images in REF", s["images_in_ref"]),
            ("  C++ failed on (not compared)", s["ref_errors"]),
            ("images compared", s["images_compared"]),
            ("  identical to the bit", s["images_identical"]),
            ("  same face count", s["images_same_count"]),
            ("  within tolerance", s["images_passed"]),
            ("images not compared (missing or unreadable)", s["images_not_compared"]),
            ("images only in OURS", s["images_only_in_ours"]),
            ("faces paired", s["faces_paired"]),
            ("faces missing (only in REF)", s["faces_missing"]),
            ("faces extra (only in OURS)", s["faces_extra"])):
        counts.add_row(label, str(value))
    console.print(counts)
    console.print(differences_table(c, s))
    worst = worst_images(c)
    if worst:
        console.print(worst_table(c, worst))
    lines = [f"C++ failed on {image.path}: {image.error}" for image in c.ref_errors]
    lines += [f"not compared: {r.path}: {r.problem}" for r in c.images if not r.compared]
    lines += [f"only in OURS: {image.path}" for image in c.only_ours]
    for line in lines:  # whole lines, never folded like table cells
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def differences_table(c: Comparison, s: dict):
    from rich.table import Table

    table = Table(title=f"differences over {s['faces_paired']} paired faces (ours - REF)")
    for name in ("field", "max |d|", "mean |d|", "tolerance"):
        table.add_column(name, justify="left" if name == "field" else "right")
    for name in FIELDS:
        d = s["differences"][name]
        tol = c.conf_tolerance if name == "confidence" else c.tolerance
        shown = ["-" if d[k] is None else f"{d[k]:.3g}" for k in ("max_abs", "mean_abs")]
        table.add_row(name, *shown, f"{tol:g}")
    return table


def worst_table(c: Comparison, worst: list[ImageComparison]):
    from rich.table import Table

    table = Table(title="worst images (faces REF/ours, missing/extra, largest |d|)")
    table.add_column("image", overflow="fold", ratio=1)
    for name in ("faces", "miss/extra", "box", "conf"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in worst:
        if not r.compared:
            table.add_row(r.path, f"{len(r.ref.faces)}/-", "-", "-", "not compared")
            continue
        table.add_row(r.path, f"{len(r.ref.faces)}/{len(r.ours.faces)}", f"{len(r.missing)}/{len(r.extra)}",
                      f"{r.max_box_delta:.3g}", f"{r.max_conf_delta:.3g}")
    failing = sum(not r.passed for r in c.images)
    shown = sum(not r.passed for r in worst)
    if failing > shown:
        table.caption = f"{failing - shown} more failing images in --report"
    return table
