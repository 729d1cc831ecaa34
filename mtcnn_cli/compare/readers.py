"""Reading a set of detections: the C++'s JSON, our JSON, JSONL and CSV, or an
OpenFace -bboxdir folder. Whatever a file holds, a problem is one
CompareError naming the file, the line or record, and what is wrong."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..io.records import SchemaError, checked_number, json_type
from ..io.records import image_record as record_of
from .sets import DEFAULT_PARAMS, FIELDS, CompareError, DetectionSet, ImageFaces


CSV_REQUIRED = ("path", "face", "x", "y", "width", "height", "confidence", "error")


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
    except SchemaError as e:  # the records' reader says which file, record and field
        raise CompareError(str(e)) from None
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
    ours = "mtcnn-cli" if params is not None else None  # our records carry their provenance
    return DetectionSet(str(path), "jsonl", records, params, ours)


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


def image_record(path: Path, item, where: str) -> ImageFaces:
    """One image record of a set, read by the records' own lenient reader."""
    image, faces, width, height, error = record_of(path, item, where)
    return ImageFaces(image, faces, width, height, error=error)
