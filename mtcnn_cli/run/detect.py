"""`mtcnn detect` as plain functions: plan the batch (plan.py), pick up what
an earlier run left (resume.py), run it, write the records (io/sinks.py)
and the side outputs. The click command in cli/detect.py only parses
options into DetectOptions and calls run_detect, which returns the exit
status (base/exits.py; docs/exit-codes.md):

    0    every image was processed
    1    the run went ahead, but some images were skipped (their records
         carry the reason) or an output failed while being written
    2    nothing was processed: bad option or PATH list, unusable model
         folder, an output that cannot be created (its folder missing),
         outputs that would collide or overwrite an input
    130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM
    141  stdout was closed by its reader (`| head`): no message
"""
from __future__ import annotations

import os
import sys
import time

import cv2
import numpy as np
from contextlib import closing
from dataclasses import replace

from ..base import atomic, collector, exits, signals
from ..base.atomic import OutputError
from ..base.errors import FileProblem, UsageProblem
from ..base.signals import Interrupts
from ..base.text import display, plural
from ..io import video
from ..io.records import bbox_text, make_format
from ..io.sinks import open_records
from ..detector.pyramid import pyramid_scales
from . import batch
from .batch import Settings, WorkerStartError, check_jobs, run_tasks
from .plan import (DetectOptions, Plan, choose_format, expected_records, make_plan, make_tasks,
                   no_images_message, stream_kind)
from .report import Reporter
from .resume import hold_output, provenance, resume_plan


def _inside(folder: str, path: str) -> bool:
    root = os.path.realpath(folder)
    where = os.path.realpath(os.path.dirname(path))
    return where == root or where.startswith(root.rstrip(os.sep) + os.sep)


def write_side_outputs(plan: Plan, options: DetectOptions, outcome) -> list:
    """Write the box file and annotated copy of one processed image,
    atomically. Returns the problems (one message each)."""
    result, problems = outcome.result, []
    if result.error is not None:
        return problems
    target = plan.bbox_to.get(result.path)
    if target is not None:
        problem = _write_mirrored(options.bboxdir, target, bbox_text(result.faces).encode("ascii"))
        if problem:
            problems.append(problem)
    target = plan.annotate_to.get(result.path)
    if target is not None:
        if outcome.annotate_error:
            problems.append(f"{display(target)}: {outcome.annotate_error}")
        else:
            problem = _write_mirrored(options.annotate, target, outcome.annotated)
            if problem:
                problems.append(problem)
    return problems


def write_crops(plan: Plan, options: DetectOptions, outcome):
    """Write one processed image's face crops, atomically, as BASE_K.png;
    returns (its Result, carrying each crop's path (None where it failed)
    and matrix, the problems). BASE's folder is checked and made once in a
    run, for all the crops in it."""
    result, base = outcome.result, plan.crops_to.get(outcome.result.path)
    if result.error is not None or base is None or not outcome.crops:
        return result, []
    crops, problems = [], []
    folder = os.path.dirname(base)
    folder_problem = None if folder in plan.crop_folders else _make_folder(options.crops, base)
    if folder_problem is None:
        plan.crop_folders.add(folder)
    for k, (png, matrix, why) in enumerate(outcome.crops):
        target = f"{base}_{k}.png"
        if png is None:
            problem = f"{display(target)}: {why}"
        elif folder_problem:
            problem = folder_problem
        else:
            try:
                atomic.write_small(target, png)
                problem = None
            except OutputError as e:
                problem = str(e)
        if problem:
            problems.append(problem)
        crops.append((None if problem else target, matrix))
    return replace(result, crops=tuple(crops)), problems


def _make_folder(folder: str, target: str) -> str | None:
    """Make target's folder inside folder (a side output's mirrored place);
    the problem in one message, or None."""
    try:
        if not _inside(folder, target):  # before creating any folder
            raise OutputError(f"not writing {display(target)}: a symbolic link leads "
                              f"outside {display(folder)}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
    except OSError as e:
        return f"cannot write {display(target)}: {e.strerror or e}"
    except OutputError as e:
        return str(e)
    return None


def _write_mirrored(folder: str, target: str, data: bytes) -> str | None:
    """Write a side output at its mirrored place inside folder (creating its
    subfolders), atomically; the problem in one message, or None."""
    problem = _make_folder(folder, target)
    if problem:
        return problem
    try:
        atomic.write_bytes(target, data)
    except OSError as e:
        return f"cannot write {display(target)}: {e.strerror or e}"
    except OutputError as e:
        return str(e)
    return None


def load_detector(settings: Settings, reporter: Reporter):
    """The detector, its models loaded (timed for -v). Raises FileProblem."""
    from ..detector.datfile import ModelError  # the detector's code, timed below for -v

    start = time.perf_counter()
    batch.detector_class()
    from ..detector import native  # the compiled kernels: loaded (or compiled) here, timed for -v
    from ..detector.models import load_models  # the models: checked before a compile

    def compiling():
        """Before a compile: the models checked, so that a folder that cannot be
        used is said at once (not after seconds of compiling), then the wait said."""
        try:
            load_models(settings.models)
        except (ModelError, ValueError, OSError) as e:
            raise FileProblem(f"cannot load the models: {e}") from None
        return reporter.working(f"compiling the detector's kernels for this CPU, once "
                                f"(about {native.COMPILE_SECONDS} s)")

    imported = time.perf_counter()
    try:
        kernels = native.library(compiling)
    except RuntimeError as e:
        raise FileProblem(str(e)) from None
    ready = time.perf_counter()
    # one OpenCV thread, as the workers have (_init_worker): the crops' and annotations'
    # calls are small, and a run is one thread, as the C++
    cv2.setNumThreads(1)
    try:
        detector = batch.make_detector(settings)
    except (ModelError, ValueError, OSError) as e:
        raise FileProblem(f"cannot load the models: {e}") from None
    loaded = time.perf_counter()
    collector.resume()  # the start's long-lived objects all exist now
    source = settings.models or os.environ.get("MTCNN_MODELS") or "bundled weights"
    reporter.verbose(f"imported the detector in {imported - start:.3f} s")
    how = ("compiled them for this machine: once per install and CPU kind"
           if kernels.source == "compiled" else "read from the cache")
    reporter.verbose(f"readied the compiled kernels in {ready - imported:.3f} s ({how})")
    if kernels.problem:
        reporter.message(f"the compiled kernels were not cached ({kernels.problem}): every run compiles "
                         f"them again, {ready - imported:.0f} s; set MTCNN_CACHE_DIR to a folder of yours")
    reporter.verbose(f"loaded the models ({display(source)}) in {loaded - ready:.3f} s")
    return detector


def run_detect(options: DetectOptions, read_stdin, reporter: Reporter) -> int:
    """The whole command; returns the exit status. Raises UsageProblem (2)."""
    with Interrupts() as interrupts:
        try:
            return _run(options, read_stdin, reporter, interrupts)
        except KeyboardInterrupt:
            reporter.stop()
            reporter.message(f"interrupted after {reporter.images} images")
            return signals.exit_status()


def _prepare(options: DetectOptions, read_stdin, reporter: Reporter):
    try:
        check_jobs(options.jobs)
    except ValueError as e:
        raise UsageProblem(str(e)) from None
    stdout_kind = stream_kind(sys.stdout)
    fmt_name = choose_format(options.fmt, options.output, options.resume)
    plan = make_plan(options, read_stdin)
    lock = hold_output(options, reporter, fmt_name)
    try:
        detector = load_detector(options.settings, reporter)
        made_with = provenance(options, detector)
        if options.resume:
            dropped, plan.retried = resume_plan(plan, options, lock, made_with, fmt_name)
            if dropped:
                reporter.message(f"dropped a torn last line ({dropped} bytes) from {display(options.output)}")
            if plan.retried:
                reporter.message(f"retrying {plural(plan.retried, 'image')} that failed before "
                                 f"(their records taken out of {display(options.output)})")
        for folder in plan.empty_folders:
            reporter.message(no_images_message(folder, options))
        if not plan.items and not plan.already_done:
            if options.shard and plan.listed:
                index, count = options.shard
                reporter.message(f"shard {index}/{count} is empty: the list has "
                                 f"{plural(plan.listed, 'image')} for {count} shards")
            elif not plan.empty_folders:
                reporter.message("no images to process")
        for folder in (options.annotate, options.bboxdir, options.crops):
            if folder is not None:
                try:
                    os.makedirs(folder, exist_ok=True)
                except OSError as e:
                    raise FileProblem(f"cannot create {display(folder)}: {e.strerror or e}") from None
    except BaseException:
        if lock is not None:
            lock.abandon()
        raise
    return stdout_kind, fmt_name, plan, detector, lock, made_with


def _run(options: DetectOptions, read_stdin, reporter: Reporter, interrupts: Interrupts) -> int:
    stdout_kind, fmt_name, plan, detector, lock, made_with = _prepare(options, read_stdin, reporter)
    def document():  # a fresh format object: a JSON document counts its records
        return make_format(fmt_name, options.params(), options.settings.landmarks, plan.has_videos, made_with,
                           crops=options.crops is not None)

    fmt = document()
    line_format = make_format("jsonl", options.params(), options.settings.landmarks, provenance=made_with)
    tasks = make_tasks(plan, options)
    if not plan.has_videos:
        tasks = list(tasks)
    failures = 0  # this run's; the exit status also counts the resumed file's
    searchable = SearchCount(options.settings.min_face)
    drawn = None
    if plan.drawn_video is not None:
        drawn = video.AnnotatedVideo(options.annotate_video, video.container_info(plan.drawn_video)[0] / options.every)
    sink = None
    try:
        with interrupts.critical():
            try:
                sink = open_records(options.output, fmt, stdout_kind, lock, options.resume, document,
                                    line_format, plan.place)
            except OutputError as e:
                raise FileProblem(str(e)) from None
        reporter.start(expected_records(plan, options), plan.already_done, plan.retried)
        with closing(run_tasks(tasks, options.settings, options.jobs, detector)) as outcomes:
            with interrupts.critical():
                sink.start()
            for outcome in outcomes:
                result = outcome.result
                with interrupts.critical():
                    problems = write_side_outputs(plan, options, outcome)
                    result, cropped = write_crops(plan, options, outcome)
                    problems += cropped
                    if drawn is not None and outcome.annotated and result.frame is not None:
                        drawn.add(cv2.imdecode(np.frombuffer(outcome.annotated, np.uint8), cv2.IMREAD_COLOR))
                    sink.add(result)
                failures += (result.error is not None) or bool(problems)
                searchable.add(result)
                reporter.image(result, outcome.seconds if outcome else 0.0, problems)
                if outcome is not None and outcome.warning:
                    reporter.message(f"{display(result.path)}: {outcome.warning}")
        reporter.stop()
        with interrupts.critical():
            sink.finish()
    except (OutputError, BrokenPipeError, WorkerStartError) as e:
        interrupts.depth += 1
        if sink is not None:
            sink.abort()
        reporter.stop()
        if isinstance(e, BrokenPipeError):  # `| head`: quiet, as Unix tools are
            return exits.PIPE_CLOSED
        reporter.message(str(e))
        return exits.SKIPPED
    except BaseException:  # Ctrl-C, or anything unexpected: no temporary file left behind
        interrupts.depth += 1  # a second Ctrl-C must not cut the clean-up short
        if sink is not None:
            sink.abort()
        raise
    finally:
        reporter.stop()
        if lock is not None and sink is None:
            lock.abandon()
        if drawn is not None:
            try:
                drawn.close()  # also after a stop: the frames drawn so far stay a video
            except OSError as e:
                reporter.message(f"cannot write {display(options.annotate_video)}: {e.strerror or e}")
                failures += 1
    if searchable.none_searched():
        reporter.message(f"--min-face {options.settings.min_face} is larger than every image: no faces can be found")
    reporter.summary(failures, unknown_files=plan.unknown_files)
    return exits.SKIPPED if failures else exits.OK


class SearchCount:
    """How many of a run's images the pyramid could search at all: none of an
    image whose shorter side is below --min-face (its first scale, 12/N,
    already makes it smaller than PNet's 12-pixel window), which can then
    give no face."""

    def __init__(self, min_face: int):
        self.min_face, self.images, self.searched, self.faces = min_face, 0, 0, 0

    def add(self, result) -> None:
        if result.error is None and result.width and result.height:
            self.images += 1
            self.searched += bool(pyramid_scales(result.height, result.width, self.min_face))
            self.faces += len(result.faces)

    def none_searched(self) -> bool:
        """Images were read, not one of them could be searched (and so none
        gave a face)."""
        return self.images > 0 and self.searched == 0 and self.faces == 0
