"""`mtcnn detect` as plain functions: plan the batch, run it, write the outputs.

The click command in cli/detect.py only parses options into DetectOptions and
calls run_detect, which returns the exit status:

    0    every image was processed
    1    the run went ahead, but some images were skipped (their records
         carry the reason) or an output failed while being written
    2    nothing was processed: bad option or PATH list, unusable model
         folder, an output that cannot be created (its folder missing),
         outputs that would collide or overwrite an input
    130  interrupted (Ctrl-C or SIGTERM)
"""
from __future__ import annotations

import json
import os
import stat
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field

from .. import defaults
from ..io import atomic, inputs, video
from ..io.atomic import AtomicFile, LineAppender, OutputError
from .batch import Settings, Task, WorkerStartError, run_tasks
from ..io.draw import output_name
from .interrupt import Interrupts
from ..io.output import bbox_text, make_format
from ..io.images import IMAGE_EXTENSIONS
from .report import Reporter, display, plural

EXIT_OK, EXIT_SKIPPED, EXIT_INTERRUPTED = 0, 1, 130  # 2: raised as UsageProblem


class UsageProblem(Exception):
    """Something wrong with the command line: exit status 2."""


class FileProblem(UsageProblem):
    """A file or folder the command line names that cannot be used (the model
    folder, -o, --resume's file, --annotate or --bboxdir): exit status 2; the
    message names it and says why."""


@dataclass
class DetectOptions:
    settings: Settings = field(default_factory=Settings)  # what each image is processed with
    paths: tuple = ()
    null: bool = False
    fmt: str | None = None
    output: str | None = None
    bboxdir: str | None = None
    annotate: str | None = None
    annotate_root: str | None = None  # --annotate mirrors paths relative to this folder
    jobs: int = 1
    shard: tuple | None = None  # (I, N), I from 1
    resume: bool = False
    recursive: bool = True
    exclude: tuple = ()  # shell patterns for folder walks (inputs.Rules)
    every: int = 1  # video frames: every N-th, from frame 0
    out_dir: str | None = None  # --out-dir: part files and a manifest (run/shards.py)
    shard_size: int | None = None

    def params(self) -> dict:
        """The detector's parameters, as the JSON document records them."""
        s = self.settings
        return {"min_face": s.min_face, "t1": s.t1, "t2": s.t2, "t3": s.t3}


@dataclass
class Plan:
    """The images of this run, in order, and where their side outputs go."""
    items: list  # inputs.Item, not yet in the resumed file
    already_done: int = 0
    already_failed: int = 0
    annotate_to: dict = field(default_factory=dict)  # image path -> annotated copy path
    bbox_to: dict = field(default_factory=dict)  # image path -> OpenFace box file path
    empty_folders: list = field(default_factory=list)  # named folders that gave no image
    listed: int = 0  # the whole list's length, before --shard
    done: dict = field(default_factory=dict)  # --resume: the records already in the file, {path: failed?}

    @property
    def has_videos(self) -> bool:
        return any(is_video(item) for item in self.items)


# --- choosing ----------------------------------------------------------------------

def stream_kind(stream) -> str:
    """'terminal', 'file' (a regular file) or 'pipe' (anything else)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return "pipe"
    if os.isatty(fd):
        return "terminal"
    try:
        return "file" if stat.S_ISREG(os.fstat(fd).st_mode) else "pipe"
    except OSError:
        return "pipe"


def to_stdout(output: str | None) -> bool:
    return output is None or output == "-"


def extension_format(output: str) -> str | None:
    """The format an -o file's extension names (.json, .jsonl/.ndjson, .csv,
    any case), or None."""
    return defaults.EXTENSION_FORMATS.get(os.path.splitext(output)[1].lower())


def _special_file(path: str) -> bool:
    """An existing file that is not a regular file (/dev/stdout, a FIFO)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path)
    except OSError:
        return False


def choose_format(fmt: str | None, output: str | None, resume: bool) -> str:
    """One rule, whatever stdout is: --format, else -o FILE's extension
    (.json, .jsonl/.ndjson, .csv), else jsonl (with --resume, on stdout, or
    into a special file such as /dev/stdout). --format contradicting the
    extension, or a regular -o file with an unknown extension and no
    --format, is a UsageProblem."""
    named = None if to_stdout(output) else extension_format(output)
    if resume:
        if to_stdout(output):
            raise UsageProblem("--resume needs -o FILE: the JSONL file to complete")
        if fmt not in (None, "jsonl"):
            raise UsageProblem(f"--resume needs --format jsonl, not {fmt}")
        if named not in (None, "jsonl"):
            raise UsageProblem(f"--resume completes a JSONL file, but -o {display(output)} "
                               f"names a {named} file by its extension")
        return "jsonl"
    if fmt and named and fmt != named:
        raise UsageProblem(f"--format {fmt} contradicts -o {display(output)}, whose extension "
                           f"names {named}: drop --format or change the name")
    if fmt or named:
        return fmt or named
    if to_stdout(output) or _special_file(output):
        return defaults.DEFAULT_FORMAT
    raise UsageProblem(f"-o {display(output)}: the extension names no format: end the name in "
                       f".json, .jsonl, .ndjson or .csv, or give --format")


# --- planning ----------------------------------------------------------------------

def gather(options: DetectOptions, read_stdin) -> list:
    paths = list(options.paths)
    if not paths:
        raise UsageProblem("no PATH given: name image files or folders, or - to read a list from stdin")
    if paths.count(inputs.STDIN) > 1:
        raise UsageProblem("- (the list on stdin) can be given only once")
    if options.null and inputs.STDIN not in paths:
        raise UsageProblem("-0/--null describes the list on stdin: give - as a PATH")
    outputs = tuple(folder for folder in (options.annotate, options.bboxdir) if folder is not None)
    for path in paths:
        for name, folder in (("--annotate", options.annotate), ("--bboxdir", options.bboxdir)):
            if folder is not None and path != inputs.STDIN and os.path.isdir(path) \
                    and _identity(path) == _identity(folder):
                raise UsageProblem(f"{display(path)} is this run's {name} folder: its files are "
                                   f"outputs, never inputs")
    rules = inputs.Rules(recursive=options.recursive, exclude=tuple(options.exclude), skip=outputs)
    empty: list = []
    try:
        items = inputs.unique(inputs.expand(paths, read_stdin, options.null, rules, empty))
    except inputs.ListError as e:
        raise UsageProblem(str(e)) from None
    if inputs.STDIN in paths and not items and len(paths) == 1:
        raise UsageProblem("the list on stdin is empty")
    return items, empty


def is_video(item) -> bool:
    return not item.error and video.has_video_extension(item.path)


def no_images_message(folder: str, options: DetectOptions) -> str:
    """What a named folder that gave no image says: where and what was looked for."""
    looked = " ".join(sorted(IMAGE_EXTENSIONS | video.VIDEO_EXTENSIONS))
    how = "in it and its subfolders" if options.recursive else "directly in it (--no-recursive)"
    skipped = "hidden entries" + (", --exclude matches" if options.exclude else "") \
        + (", this run's output folders" if options.annotate or options.bboxdir else "")
    return (f"no images in {display(folder)}: looked {how} for {looked} files (any case), "
            f"skipping {skipped}")


def _check_folder_option(name: str, folder: str) -> None:
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileProblem(f"{name} {display(folder)}: exists and is not a folder")


def annotate_name(path: str, root: str | None) -> str:
    """The annotated copy's path inside the --annotate folder: the input path
    as given (safe_relative), or, with --annotate-root, relative to that
    folder. Raises UsageProblem for an image outside the root."""
    if root is None:
        return inputs.safe_relative(path)
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        raise UsageProblem(f"--annotate-root {display(root)}: the image {display(path)} is outside it")
    return inputs.safe_relative(relative)


def side_targets(items, annotate: str | None, bboxdir: str | None, annotate_root: str | None = None):
    """(annotate_to, bbox_to): where each image's annotated copy and box file
    go. Raises UsageProblem when two images would share a file."""
    annotate_to, bbox_to, owner = {}, {}, {}
    for item in items:
        if item.error:
            continue
        if annotate is not None:
            name = annotate_name(item.path, annotate_root)  # a video's: the frames' common start
            target = os.path.join(annotate, name if is_video(item) else output_name(name))
            if target in owner:
                raise UsageProblem(f"--annotate: {display(owner[target])} and {display(item.path)} "
                                   f"would both be drawn to {display(target)}")
            owner[target] = item.path
            annotate_to[item.path] = target
        if bboxdir is not None:
            target = os.path.join(bboxdir, inputs.bbox_name(item.path))
            if target in owner:
                raise UsageProblem(
                    f"--bboxdir: {display(owner[target])} and {display(item.path)} have the same name "
                    f"stem, so both would need {display(target)} (OpenFace looks boxes up by stem "
                    f"in one folder): run them in separate batches")
            owner[target] = item.path
            bbox_to[item.path] = target
    return annotate_to, bbox_to


def _identity(path):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def refuse_colliding_output(output: str, targets: dict) -> None:
    """targets: side-output path -> option name. Raises UsageProblem when -o
    names one of them (the same path, or the same existing file)."""
    where, key = os.path.abspath(output), _identity(output)
    for path, name in targets.items():
        if os.path.abspath(path) == where or (key is not None and _identity(path) == key):
            raise UsageProblem(f"-o {display(output)} is also a {name} output")


def refuse_overwriting_inputs(items, targets: dict) -> None:
    """targets: output path -> option name. Raises UsageProblem when an
    existing output path is one of the input images (same file)."""
    existing = {path: name for path, name in targets.items() if os.path.lexists(path)}
    if not existing:
        return
    images = {}
    for item in items:
        if not item.error:
            key = _identity(item.path)
            if key is not None:
                images.setdefault(key, item.path)
    for path, name in existing.items():
        key = _identity(path)
        if key in images:
            raise UsageProblem(f"{name} would overwrite the input image {display(images[key])} "
                               f"(as {display(path)})")


RECORD_START = b'{"path": '  # how every JSONL record we write begins


def _torn_record(tail: bytes) -> bool:
    """Whether the bytes after the last newline can be the start of one of
    our records, cut short by a kill."""
    return tail.startswith(RECORD_START) or RECORD_START.startswith(tail)


def read_done(path: str) -> tuple[dict, int]:
    """--resume: the records already in the JSONL file as {path: failed?},
    and the size of a torn last line (from a kill) cut off. The complete
    lines are checked first: a file that is not ours is left untouched."""
    if not os.path.exists(path):
        return {}, 0
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError as e:
        raise FileProblem(f"--resume: cannot read {display(path)}: {e.strerror or e}") from None
    not_ours = "is not a JSONL image record; is it a file written by --format jsonl?"
    done = {}
    for number, line in enumerate(lines[:-1], 1):
        try:
            record = json.loads(line)
            done[record["path"]] = "error" in record
        except (ValueError, TypeError, KeyError):
            raise FileProblem(f"--resume: {display(path)} line {number} {not_ours}") from None
    if not _torn_record(lines[-1]):
        raise FileProblem(f"--resume: {display(path)} line {len(lines)} {not_ours}")
    try:
        dropped = atomic.cut_torn_tail(path) if lines[-1] else 0
    except OutputError as e:
        raise FileProblem(f"--resume: {e}") from None
    return done, dropped


def make_plan(options: DetectOptions, read_stdin) -> tuple[Plan, int]:
    """The run's images and side-output paths; also the bytes of a torn line
    cut from a resumed file. Raises UsageProblem."""
    items, empty = gather(options, read_stdin)
    for name, folder in (("--annotate", options.annotate), ("--bboxdir", options.bboxdir)):
        if folder is not None:
            _check_folder_option(name, folder)
    if not to_stdout(options.output) and os.path.isdir(options.output):
        raise FileProblem(f"-o {display(options.output)}: is a folder")
    if options.annotate_root is not None:
        if options.annotate is None:
            raise UsageProblem("--annotate-root places --annotate's copies: give --annotate DIR too")
        if not os.path.isdir(options.annotate_root):
            raise FileProblem(f"--annotate-root {display(options.annotate_root)}: not a folder")
    annotate_to, bbox_to = side_targets(items, options.annotate, options.bboxdir, options.annotate_root)
    videos = {item.path for item in items if is_video(item)}  # their targets are only the frames' stems
    targets = {t: "--annotate" for path, t in annotate_to.items() if path not in videos}
    targets.update({t: "--bboxdir" for path, t in bbox_to.items() if path not in videos})
    if not to_stdout(options.output):
        refuse_colliding_output(options.output, targets)
        targets[options.output] = "-o"
    refuse_overwriting_inputs(items, targets)
    listed = len(items)
    if options.shard:
        items = inputs.shard(items, *options.shard)
    plan = Plan(items, annotate_to=annotate_to, bbox_to=bbox_to, empty_folders=empty, listed=listed)
    dropped = 0
    if options.resume:
        done, dropped = read_done(options.output)
        plan.items = [item for item in items if item.path not in done]
        plan.done = done
        videos = {item.path for item in plan.items if is_video(item)}
        frames_done = [path for path in done if video.video_of(path) in videos]
        plan.already_done = len(items) - len(plan.items) + len(frames_done)
        plan.already_failed = sum(1 for item in items if done.get(item.path)) + \
            sum(1 for path in frames_done if done[path])
    return plan, dropped


# --- where records go ------------------------------------------------------------------

def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class StdoutSink:
    """Records to stdout: streamed and flushed per record, or held until the
    end: a JSON document (so that an interrupted run writes nothing), and
    anything for a terminal (which the progress bar is drawing on)."""

    def __init__(self, hold: bool):
        self.hold, self.parts = hold, []
        self.stream = sys.stdout.buffer

    def _emit(self, text: str) -> None:
        if text:
            self.stream.write(_encode(text))
            self.stream.flush()

    def write(self, text: str) -> None:
        if self.hold:
            self.parts.append(text)
        else:
            self._emit(text)

    def finish(self) -> None:
        self._emit("".join(self.parts))
        self.parts = []

    def abort(self) -> None:
        self.parts = []


class FileSink:
    """-o FILE: a temporary file renamed over FILE at the end. When stopped
    early, JSONL (keep_partial) keeps the completed lines; JSON and CSV leave
    FILE as it was."""

    def __init__(self, path: str, keep_partial: bool):
        self.file = AtomicFile(path, "wb")
        self.keep_partial = keep_partial

    def write(self, text: str) -> None:
        self.file.write(_encode(text))
        self.file.flush()

    def finish(self) -> None:
        self.file.commit()

    def abort(self) -> None:
        if self.keep_partial:
            try:
                self.file.commit()
                return
            except OutputError:
                pass
        self.file.discard()


class AppendSink:
    """--resume: whole lines appended to FILE, one write() each."""

    def __init__(self, path: str):
        self.appender = LineAppender(path)

    def write(self, text: str) -> None:
        if text:
            self.appender.append(_encode(text))

    def finish(self) -> None:
        self.appender.close()

    abort = finish


def open_sink(options: DetectOptions, fmt_name: str, stdout_kind: str):
    if options.resume:
        return AppendSink(options.output)
    if to_stdout(options.output):
        return StdoutSink(hold=fmt_name == "json" or stdout_kind == "terminal")
    return FileSink(options.output, keep_partial=fmt_name == "jsonl")


# --- side outputs -----------------------------------------------------------------------

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
        try:
            atomic.write_bytes(target, bbox_text(result.faces).encode("ascii"))
        except OutputError as e:
            problems.append(str(e))
    target = plan.annotate_to.get(result.path)
    if target is not None:
        if outcome.annotate_error:
            problems.append(f"{display(target)}: {outcome.annotate_error}")
        else:
            try:
                if not _inside(options.annotate, target):  # before creating any folder
                    raise OutputError(f"not writing {display(target)}: a symbolic link leads "
                                      f"outside {display(options.annotate)}")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                atomic.write_bytes(target, outcome.annotated)
            except OSError as e:
                problems.append(f"cannot write {display(target)}: {e.strerror or e}")
            except OutputError as e:
                problems.append(str(e))
    return problems


# --- running ----------------------------------------------------------------------------

def load_detector(settings: Settings, reporter: Reporter):
    """The detector, its models loaded (timed for -v). Raises FileProblem."""
    from . import batch
    from ..detector.datfile import ModelError

    start = time.perf_counter()
    batch.detector_class()
    from ..detector import native

    imported = time.perf_counter()
    try:
        kernels = native.library()
    except RuntimeError as e:
        raise FileProblem(str(e)) from None
    ready = time.perf_counter()
    try:
        detector = batch.make_detector(settings)
    except (ModelError, ValueError, OSError) as e:
        raise FileProblem(f"cannot load the models: {e}") from None
    loaded = time.perf_counter()
    source = settings.models or os.environ.get("MTCNN_MODELS") or "bundled weights"
    reporter.verbose(f"imported the detector in {imported - start:.3f} s")
    how = ("compiled them for this machine: once per install and CPU kind"
           if kernels.source == "compiled" else "read from the cache")
    reporter.verbose(f"readied the compiled kernels in {ready - imported:.3f} s ({how})")
    reporter.verbose(f"loaded the models ({display(source)}) in {loaded - ready:.3f} s")
    return detector


def frame_targets(plan: Plan, item, index: int) -> str | None:
    """A video frame's side outputs, registered in the plan: the annotated
    copy DIR/<video>#frame=N.png (PNG: exact pixels, one atomic file per
    frame) and the box file BOXES/<video stem>#frame=N.txt."""
    path = video.frame_path(item.path, index)
    base = plan.annotate_to.get(item.path)
    if base is not None:
        plan.annotate_to[path] = f"{base}{video.FRAME_MARK}{index}.png"
    base = plan.bbox_to.get(item.path)
    if base is not None:
        plan.bbox_to[path] = f"{os.path.splitext(base)[0]}{video.FRAME_MARK}{index}.txt"
    return plan.annotate_to.get(path)


def make_tasks(plan: Plan, options: DetectOptions):
    """The tasks of the run, in order: an image each, a folder that could not
    be read as its error, a video as its frames (every N-th), decoded here
    as the tasks are taken, frames already in a resumed file left out."""
    for item in plan.items:
        if item.error:
            yield Task(item.path, error=item.error)
        elif not is_video(item):
            yield Task(item.path, plan.annotate_to.get(item.path))
        else:
            for frame in video.frames(item.path, options.every, options.settings.max_pixels):
                if frame.index < 0:  # the video cannot be opened at all
                    yield Task(item.path, error=frame.error)
                    continue
                path = video.frame_path(item.path, frame.index)
                if path in plan.done:
                    continue
                target = frame_targets(plan, item, frame.index)
                yield Task(path, target if frame.error is None else None, frame.image, frame.index,
                           frame.time, frame.error)


def expected_records(plan: Plan, options: DetectOptions) -> int:
    """How many records this run should write (a video's frame count is its
    container's word): the progress bar's total."""
    total = 0
    for item in plan.items:
        if is_video(item):
            total += max(1, -(-video.frame_count(item.path) // options.every))
        else:
            total += 1
    return total


def run_detect(options: DetectOptions, read_stdin, reporter: Reporter) -> int:
    """The whole command; returns the exit status. Raises UsageProblem (2)."""
    with Interrupts() as interrupts:
        try:
            return _run(options, read_stdin, reporter, interrupts)
        except KeyboardInterrupt:
            reporter.stop()
            reporter.message(f"interrupted after {reporter.images} images")
            return EXIT_INTERRUPTED


def _prepare(options: DetectOptions, read_stdin, reporter: Reporter):
    stdout_kind = stream_kind(sys.stdout)
    fmt_name = choose_format(options.fmt, options.output, options.resume)
    plan, dropped = make_plan(options, read_stdin)
    if dropped:
        reporter.message(f"dropped a torn last line ({dropped} bytes) from {display(options.output)}")
    for folder in plan.empty_folders:
        reporter.message(no_images_message(folder, options))
    if not plan.items and not plan.already_done:
        if options.shard and plan.listed:
            index, count = options.shard
            reporter.message(f"shard {index}/{count} is empty: the list has "
                             f"{plural(plan.listed, 'image')} for {count} shards")
        elif not plan.empty_folders:
            reporter.message("no images to process")
    detector = load_detector(options.settings, reporter)
    for folder in (options.annotate, options.bboxdir):
        if folder is not None:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                raise FileProblem(f"cannot create {display(folder)}: {e.strerror or e}") from None
    return stdout_kind, fmt_name, plan, detector


def _run(options: DetectOptions, read_stdin, reporter: Reporter, interrupts: Interrupts) -> int:
    stdout_kind, fmt_name, plan, detector = _prepare(options, read_stdin, reporter)
    fmt = make_format(fmt_name, options.params(), options.settings.landmarks, plan.has_videos)
    tasks = make_tasks(plan, options)
    if not plan.has_videos:
        tasks = list(tasks)
    failures = 0  # this run's; the exit status also counts the resumed file's
    sink = None
    try:
        with interrupts.critical():
            try:
                sink = open_sink(options, fmt_name, stdout_kind)
            except OutputError as e:
                raise FileProblem(str(e)) from None
        reporter.start(expected_records(plan, options), plan.already_done, plan.already_failed)
        with closing(run_tasks(tasks, options.settings, options.jobs, detector)) as outcomes:
            with interrupts.critical():
                sink.write(fmt.start())
            for outcome in outcomes:
                result = outcome.result
                with interrupts.critical():
                    problems = write_side_outputs(plan, options, outcome)
                    sink.write(fmt.record(result))
                failures += (result.error is not None) or bool(problems)
                reporter.image(result, outcome.seconds, problems)
        reporter.stop()
        with interrupts.critical():
            sink.write(fmt.end())
            sink.finish()
    except (OutputError, BrokenPipeError, WorkerStartError) as e:
        interrupts.depth += 1
        sink.abort()
        reporter.stop()
        reporter.message("stdout was closed" if isinstance(e, BrokenPipeError) else str(e))
        return EXIT_SKIPPED
    except BaseException:  # Ctrl-C, or anything unexpected: no temporary file left behind
        interrupts.depth += 1  # a second Ctrl-C must not cut the clean-up short
        if sink is not None:
            sink.abort()
        raise
    finally:
        reporter.stop()
    reporter.summary(failures)
    return EXIT_SKIPPED if failures or plan.already_failed else EXIT_OK
