"""The comparison's report: the --report JSON file (written atomically,
never over a file compare reads) and the summary tables on stderr."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from ..base.atomic import AtomicFile, OutputError, write_target
from ..detector.models import model_files
from ..io.inputs import file_identity, overwritten_input
from .readers import bbox_files
from .sets import FIELDS, CompareError, DetectionSet
from .stats import Comparison, ImageComparison, summarise, worst_images


def check_report_path(path: Path) -> None:
    """--report FILE, before anything is compared: CompareError when it is a
    folder or cannot be created (its folder missing or not writable); nothing
    is left behind. That it is no input: refuse_report_over_inputs."""
    if path.is_dir():
        raise CompareError(f"--report {path}: is a folder")
    if write_target(path)[1]:
        return  # a device or FIFO, written in place when the report is ready: not opened now
    try:
        AtomicFile(path).discard()
    except OutputError as e:
        raise CompareError(f"--report: {e}") from None


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
    try:
        with AtomicFile(Path(path), "w", encoding="utf-8") as f:
            if isinstance(data, Comparison):
                for chunk in report_chunks(data):
                    f.write(chunk)
            else:
                f.write(json.dumps(data, indent=1, allow_nan=False) + "\n")
    except OutputError as e:
        raise CompareError(str(e)) from None


def failed_side(ref: DetectionSet) -> str:
    """Who made REF, as the summary names it: "C++" for OpenFace's output,
    else "REF (its file name)" (a run of ours compared with another)."""
    ours = ref.detector == "mtcnn-cli" or ref.format == "csv"
    return f"REF ({Path(ref.source).name})" if ours else "C++"


def print_summary(c: Comparison, console=None) -> None:
    """The summary as rich tables, on stderr unless a console is given."""
    console = console or Console(stderr=True)
    s = summarise(c)
    counts = Table(title=f"mtcnn compare: {c.ref.source} vs {c.ours.source}", show_header=False)
    counts.add_column(justify="left")
    counts.add_column(justify="right")
    for label, value in (
            ("images in REF", s["images_in_ref"]),
            (f"  {failed_side(c.ref)} failed on (not compared)", s["ref_errors"]),
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
    lines = [f"{failed_side(c.ref)} failed on {image.path}: {image.error}" for image in c.ref_errors]
    lines += [f"not compared: {r.path}: {r.problem}" for r in c.images if not r.compared]
    lines += [f"only in OURS: {image.path}" for image in c.only_ours]
    for line in lines:  # whole lines, never folded like table cells
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def differences_table(c: Comparison, s: dict):
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
