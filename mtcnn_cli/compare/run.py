"""`mtcnn compare` as one function: read REF, read OURS or run our detector
on REF's images, compare the two, write the --report file."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from ..base.errors import UsageProblem
from ..detector.datfile import ModelError
from . import ours as our_run
from . import readers, report, stats
from .sets import CompareError


class ReportNotWritten(CompareError):
    """The comparison ran, but --report could not be written (exit 1)."""


def run_compare(ref_path, ours_path=None, *, cpp_format=None, root=None, images_dir=None, models=None,
                overrides=None, jobs: int = 1, tolerance: float = 0.01, conf_tolerance: float = 1e-4,
                count_only_ours: bool = False, ignore_params: bool = False, report_path=None,
                progress=None) -> stats.Comparison:
    """REF (ref_path, read as cpp_format or detected) against OURS (a file, or
    None: our detector run on REF's images with REF's parameters and the
    `overrides`); returns the Comparison, with --report written. progress:
    a function of the image count returning a context manager that yields
    a step() called after each image (a progress bar), or None. Raises
    CompareError (a set that cannot be read or used), ReportNotWritten,
    UsageProblem (sets made with other parameters, unless ignore_params)."""
    report.refuse_report_over_inputs(report_path, [ref_path, ours_path], models)
    if report_path is not None:
        report.check_report_path(report_path)
    ref = readers.read_detections(ref_path, cpp_format)
    if ours_path is not None:
        ours = readers.read_detections(ours_path)
        differ = stats.params_mismatch(ref, ours)
        if differ and not ignore_params:
            raise UsageProblem(f"REF and OURS were made with different detector parameters: {'; '.join(differ)}; "
                               f"compare sets made alike, or give --ignore-params")
    else:
        ours = detect_ours(ref, root, images_dir, models, overrides or {}, jobs, report_path, progress)
    result = stats.compare_sets(ref, ours, tolerance, conf_tolerance, count_only_ours)
    if report_path is not None:
        try:
            report.write_report(report_path, result)
        except CompareError as e:
            raise ReportNotWritten(str(e)) from None
    return result


def detect_ours(ref, root, images_dir, models, overrides: dict, jobs: int, report_path=None, progress=None):
    """Our detector on REF's images; CompareError for a bad model folder or
    parameters, or a --report that is one of the images."""
    if ref.format == "bboxdir" and images_dir is None:
        raise CompareError(f"{ref.source}: a bbox folder lists no image files: give --images DIR")
    for option, folder in (("--images", images_dir), ("--root", root)):
        if folder is not None and not Path(folder).is_dir():
            raise CompareError(f"{folder}: not a folder ({option})")
    files = our_run.image_files(ref, root, images_dir)
    report.refuse_report_over_inputs(report_path, [f for f, _ in files if f is not None])
    bar = progress(len(files)) if progress is not None else nullcontext(None)
    try:
        with bar as step:
            return our_run.detect_for(ref, files, our_run.run_params(ref, overrides), models=models, jobs=jobs,
                                      on_image=step)
    except (ModelError, ValueError) as e:
        raise CompareError(str(e)) from None
