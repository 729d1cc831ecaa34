"""`mtcnn detect` as plain functions: plan the batch, run it, write the outputs.

The click command in cli/detect.py only parses options into DetectOptions and
calls run_detect, which returns the exit status:

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

import hashlib
import json
import math
import os
import stat
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field

from .. import defaults
from ..io import atomic, inputs, video
from ..io.atomic import AtomicFile, LineAppender, OutputError, OutputLock
from .batch import Settings, Task, WorkerStartError, check_jobs, run_tasks
from ..io.draw import output_name
from . import interrupt
from .interrupt import Interrupts
from ..io.output import bbox_text, make_format
from .. import __version__
from .report import Reporter, display, plural

EXIT_OK, EXIT_SKIPPED = 0, 1  # 2: raised as UsageProblem; interrupted: interrupt.exit_status()
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: the reader of stdout went away (`| head`), quietly


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
    ext: tuple = ()  # --ext values: extensions folder walks add, or (=LIST) take only (inputs.extension_set)
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
    already_done: int = 0  # --resume: images recorded before, without an error
    retried: int = 0  # --resume: images whose earlier records were errors, tried again
    annotate_to: dict = field(default_factory=dict)  # image path -> annotated copy path
    bbox_to: dict = field(default_factory=dict)  # image path -> OpenFace box file path
    empty_folders: list = field(default_factory=list)  # named folders that gave no image
    unknown_files: int = 0  # files the folder walks skipped for their extension
    listed: int = 0  # the whole list's length, before --shard
    done: set = field(default_factory=set)  # --resume: normalised paths recorded without an error
    listed_paths: set | None = None  # --resume: the whole list's normalised paths, before --shard

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
    """A target written in place: anything under /dev or /proc (/dev/stdout,
    whatever stdout is), or an existing file that is not a regular file (a FIFO)."""
    from ..atomic_file import write_target

    return write_target(path)[1] and not os.path.isdir(path)



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

def walk_extensions(options: DetectOptions) -> frozenset:
    """The extensions folder walks take (--ext). Raises UsageProblem."""
    try:
        return inputs.extension_set(options.ext)
    except ValueError as e:
        raise UsageProblem(str(e)) from None


def gather(options: DetectOptions, read_stdin, tally: inputs.Tally | None = None) -> list:
    """(items, empty folders) of the run; what the walks skipped for its
    extension is counted in tally when given."""
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
    rules = inputs.Rules(recursive=options.recursive, exclude=tuple(options.exclude), skip=outputs,
                         extensions=walk_extensions(options))
    empty: list = []
    try:
        items = inputs.unique(inputs.expand(paths, read_stdin, options.null, rules, empty, tally))
    except inputs.ListError as e:
        raise UsageProblem(str(e)) from None
    if inputs.STDIN in paths and not items and len(paths) == 1:
        raise UsageProblem("the list on stdin is empty")
    return items, empty


def is_video(item) -> bool:
    return not item.error and video.has_video_extension(item.path)


def no_images_message(folder: str, options: DetectOptions) -> str:
    """What a named folder that gave no image says: where and what was looked for."""
    looked = " ".join(sorted(walk_extensions(options)))
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
    go, both mirroring the image's path in the same way (annotate_name).
    Raises UsageProblem when two images would share a file."""
    annotate_to, bbox_to, owner = {}, {}, {}
    for item in items:
        if item.error:
            continue
        if annotate is not None or bboxdir is not None:
            name = annotate_name(item.path, annotate_root)  # a video's: the frames' common start
        if annotate is not None:
            target = os.path.join(annotate, name if is_video(item) else output_name(name))
            if target in owner:
                raise UsageProblem(f"--annotate: {display(owner[target])} and {display(item.path)} "
                                   f"would both be drawn to {display(target)}")
            owner[target] = item.path
            annotate_to[item.path] = target
        if bboxdir is not None:
            target = os.path.join(bboxdir, inputs.bbox_name(name))
            if target in owner:
                raise UsageProblem(
                    f"--bboxdir: {display(owner[target])} and {display(item.path)} have the same name "
                    f"stem in one folder, so both would need {display(target)} (OpenFace looks boxes up "
                    f"by stem): run them in separate batches")
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


def input_sources(items, settings: Settings, list_from_stdin: bool) -> dict:
    """Every file this run reads, by identity: the images, the model files,
    the list on stdin when it is redirected from a file."""
    from ..detector.models import model_files

    sources = {}
    for path in model_files(settings.models):
        key = inputs.file_identity(path)
        if key is not None:
            sources.setdefault(key, f"the model file {display(os.fspath(path))}")
    if list_from_stdin:
        key = inputs.stream_identity(sys.stdin)
        if key is not None:
            sources.setdefault(key, "the list read from stdin")
    for item in items:
        if not item.error:
            key = inputs.file_identity(item.path)
            if key is not None:
                sources.setdefault(key, f"the input image {display(item.path)}")
    return sources


def refuse_overwriting_inputs(items, targets: dict, settings: Settings | None = None,
                              list_from_stdin: bool = False) -> None:
    """targets: output path -> option name. Raises UsageProblem when an
    existing output is a file the run reads: an image, a model file, the
    list on stdin (the same file, whatever the path)."""
    existing = {path: name for path, name in targets.items() if os.path.lexists(path)}
    if not existing:
        return
    found = inputs.overwritten_input(existing, input_sources(items, settings or Settings(), list_from_stdin))
    if found:
        option, path, source = found
        raise UsageProblem(f"{option} would overwrite {source} (as {display(path)})")


RECORD_START = b'{"path": '  # how every JSONL record we write begins


def _torn_record(tail: bytes) -> bool:
    """Whether the bytes after the last newline can be the start of one of
    our records, cut short by a kill."""
    return tail.startswith(RECORD_START) or RECORD_START.startswith(tail)


RECORD_KEYS = {"path", "frame", "time", "width", "height", "faces", "error", "run"}
FACE_NUMBERS = ("x", "y", "width", "height", "confidence")


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
    return "; ".join(differences) or None


@dataclass
class Resumed:
    """What --resume found in -o FILE."""
    done: set = field(default_factory=set)  # normalised paths recorded without an error
    failed: list = field(default_factory=list)  # paths whose records had an error: retried
    kept: list = field(default_factory=list)  # the lines of the records kept (bytes, with newline)
    torn: bytes = b""  # a torn last line (from a kill)


def read_done(path: str, provenance: dict | None = None, listed: set | None = None) -> Resumed:
    """--resume: the records already in the JSONL file. Every complete line
    is checked first (our schema, and, with `provenance`, the same parameters
    and models; with `listed`, the normalised paths of this run's inputs, an
    image, or a video's frame, among them; no image recorded twice), so that
    a file that is not ours, made otherwise, or by another run, is left
    untouched. An error record followed by a record of the same image (a
    retry whose file could not be rewritten) is superseded. Raises FileProblem."""
    found = Resumed()
    if not os.path.exists(path):
        return found
    not_ours = "is not a JSONL image record; is it a file written by --format jsonl?"
    number = 0
    recorded = {}  # normalised path -> the line that recorded it without an error (found.done: its keys)
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    found.torn = line
                    break
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    raise FileProblem(f"--resume: {display(path)} line {number} {not_ours}") from None
                problem = record_problem(record)
                if problem:
                    raise FileProblem(f"--resume: {display(path)} line {number} {problem}; {not_ours}")
                difference = provenance and provenance_difference(record.get("run"), provenance)
                if difference:
                    raise FileProblem(
                        f"--resume: {display(path)} line {number} was made with other settings "
                        f"({difference}): resume with the same options and models, or start a new file")
                key = inputs.normalise(record["path"])
                if listed is not None and key not in listed and video.video_of(key) not in listed:
                    raise FileProblem(
                        f"--resume: {display(path)} line {number} records {display(record['path'])}, which is "
                        f"not among this run's inputs: resume with the same PATHs, or start a new file")
                if key in recorded:
                    raise FileProblem(
                        f"--resume: {display(path)} lines {recorded[key]} and {number} both record "
                        f"{display(record['path'])}: not a file one run wrote; start a new file")
                if "error" in record:
                    found.failed.append(record["path"])
                else:
                    recorded[key] = number
                    found.kept.append(line)
    except OSError as e:
        raise FileProblem(f"--resume: cannot read {display(path)}: {e.strerror or e}") from None
    except MemoryError:
        raise FileProblem(f"--resume: {display(path)} line {number} is too long for the memory left") from None
    if found.torn and not _torn_record(found.torn):
        raise FileProblem(f"--resume: {display(path)} line {number} {not_ours}")
    found.done = set(recorded)
    return found


def make_plan(options: DetectOptions, read_stdin) -> Plan:
    """The run's images and side-output paths (for --resume, all of them:
    see resume_plan). Raises UsageProblem."""
    tally = inputs.Tally()
    items, empty = gather(options, read_stdin, tally)
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
    refuse_overwriting_inputs(items, targets, options.settings, inputs.STDIN in options.paths)
    listed = len(items)
    listed_paths = {inputs.normalise(item.path) for item in items} if options.resume else None
    if options.shard:
        items = inputs.shard(items, *options.shard)
    return Plan(items, annotate_to=annotate_to, bbox_to=bbox_to, empty_folders=empty, listed=listed,
                listed_paths=listed_paths, unknown_files=tally.unknown)


def resume_plan(plan: Plan, options: DetectOptions, lock: OutputLock | None,
                provenance: dict | None) -> tuple[int, int]:
    """--resume: leave out of plan the images already in -o FILE (read under
    the run's lock), and a video's frames already there. Records of images
    that failed are taken out of FILE, to be tried again; a torn last line is
    cut off. Returns (bytes of the torn line, failed records retried)."""
    if lock is not None and lock.in_place:
        raise FileProblem(f"--resume: {display(options.output)} is not a regular file")
    found = read_done(options.output, provenance, plan.listed_paths)
    try:
        if found.failed and lock is not None and lock.fd >= 0:
            lock.rewrite(b"".join(found.kept))  # atomically, keeping the lock
        elif found.torn:
            atomic.cut_torn_tail(options.output)
    except (OutputError, OSError) as e:
        raise FileProblem(f"--resume: cannot repair {display(options.output)}: {e}") from None
    items = plan.items
    plan.items = [item for item in items if inputs.normalise(item.path) not in found.done]
    plan.done = found.done
    videos = {inputs.normalise(item.path) for item in plan.items if is_video(item)}
    frames_done = sum(1 for path in found.done if video.video_of(path) in videos)
    plan.already_done = len(items) - len(plan.items) + frames_done
    retried = {inputs.normalise(path) for path in found.failed} - found.done
    return len(found.torn), len(retried)


def provenance(options: DetectOptions, detector) -> dict:
    """What each JSONL record says it was made with: our version, the
    detector's parameters, and one SHA-256 over the three networks' own
    (the SHA-256 of "PNet <hex>\\nRNet <hex>\\nONet <hex>\\n")."""
    digests = getattr(getattr(detector, "models", None), "sha256", None) or {}
    return provenance_of(options.params(), digests, options.settings.landmarks, options.every)


def provenance_of(params: dict, digests: dict, landmarks: bool = True, every: int = 1) -> dict:
    """provenance() from the parameters, the networks' {name: SHA-256}, and
    what else changes the records: "landmarks": false (--no-landmarks) and
    "every": N (--every N), each given only when not the default."""
    combined = None
    if all(name in digests for name in ("PNet", "RNet", "ONet")):
        text = "".join(f"{name} {digests[name]}\n" for name in ("PNet", "RNet", "ONet"))
        combined = hashlib.sha256(text.encode("ascii")).hexdigest()
    made = {"version": __version__, "params": params, "models_sha256": combined}
    if not landmarks:
        made["landmarks"] = False
    if every != 1:
        made["every"] = every
    return made


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
            try:
                self.stream.write(_encode(text))
                self.stream.flush()
            except BrokenPipeError:
                raise
            except OSError as e:  # /dev/full, an I/O error
                raise OutputError(f"cannot write to stdout: {e.strerror or e}") from None

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
    """-o FILE as one document (json, csv): a temporary file renamed over FILE
    at the end; when stopped early, FILE is left as it was."""

    def __init__(self, path: str, lock: OutputLock):
        self.file = AtomicFile(path, "wb")
        self.lock = lock

    def write(self, text: str) -> None:
        self.file.write(_encode(text))
        self.file.flush()

    def finish(self) -> None:
        try:
            self.file.commit()
        finally:
            self.lock.release()

    def abort(self) -> None:
        self.file.discard()
        self.lock.abandon()


class LineSink:
    """-o FILE as JSONL: whole lines written to FILE itself, one write() each,
    so a killed run keeps every record it finished (and --resume completes
    it). Without --resume FILE is emptied first."""

    def __init__(self, path: str, lock: OutputLock, resume: bool):
        fd = lock.fd if lock.fd >= 0 and lock.writable else None
        # a device, FIFO or /dev/stdout is never emptied (`-o /dev/stdout >> log` appends)
        self.appender = LineAppender(path, fd=fd, truncate=not resume and not lock.in_place)
        self.lock = lock

    def write(self, text: str) -> None:
        if text:
            self.appender.append(_encode(text))

    def finish(self) -> None:
        self.appender.close()
        self.lock.release()

    def abort(self) -> None:
        self.appender.close()
        self.lock.abandon()


def open_sink(options: DetectOptions, fmt_name: str, stdout_kind: str, lock: OutputLock | None):
    if to_stdout(options.output):
        return StdoutSink(hold=fmt_name == "json" or stdout_kind == "terminal")
    if fmt_name == "jsonl":
        return LineSink(options.output, lock, options.resume)
    return FileSink(options.output, lock)


def hold_output(options: DetectOptions, reporter: Reporter) -> OutputLock | None:
    """Lock -o FILE for this run (exit 2 when another run holds it), and deal
    with the temporary files a killed run of ours left beside it: with
    --resume and no FILE, the largest is adopted as FILE; the others go."""
    if to_stdout(options.output) or os.path.isdir(options.output):
        return None  # a folder is refused by make_plan
    try:
        lock = OutputLock(options.output)
    except OutputError as e:
        raise FileProblem(f"-o {e}") from None
    if lock.in_place or lock.fd < 0:
        return lock
    temps = atomic.stale_temps(lock.target)
    if temps and options.resume and lock.created:
        try:
            lock.adopt(temps[0])
            reporter.message(f"resuming {display(options.output)} from {display(temps[0])}, "
                             f"which a killed run left")
        except OSError:
            pass
    removed = lock.remove_stale_temps()
    if removed:
        reporter.message(f"removed {removed} temporary file{'s' * (removed > 1)} a killed run left "
                         f"beside {display(options.output)}")
    return lock


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


def _write_mirrored(folder: str, target: str, data: bytes) -> str | None:
    """Write a side output at its mirrored place inside folder (creating its
    subfolders), atomically; the problem in one message, or None."""
    try:
        if not _inside(folder, target):  # before creating any folder
            raise OutputError(f"not writing {display(target)}: a symbolic link leads "
                              f"outside {display(folder)}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        atomic.write_bytes(target, data)
    except OSError as e:
        return f"cannot write {display(target)}: {e.strerror or e}"
    except OutputError as e:
        return str(e)
    return None


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
    if kernels.problem:
        reporter.message(f"the compiled kernels were not cached ({kernels.problem}): every run compiles "
                         f"them again, {ready - imported:.0f} s; set MTCNN_CACHE_DIR to a folder of yours")
    reporter.verbose(f"loaded the models ({display(source)}) in {loaded - ready:.3f} s")
    return detector


def frame_targets(plan: Plan, item, index: int) -> str | None:
    """A video frame's side outputs, registered in the plan: the annotated
    copy DIR/<video>#frame=N.png (PNG: exact pixels, one atomic file per
    frame) and the box file BOXES/<video, without extension>#frame=N.txt,
    both at the video's mirrored path."""
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
                if inputs.normalise(path) in plan.done:
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
            return interrupt.exit_status()


def _prepare(options: DetectOptions, read_stdin, reporter: Reporter):
    try:
        check_jobs(options.jobs)
    except ValueError as e:
        raise UsageProblem(str(e)) from None
    stdout_kind = stream_kind(sys.stdout)
    fmt_name = choose_format(options.fmt, options.output, options.resume)
    plan = make_plan(options, read_stdin)
    lock = hold_output(options, reporter)
    try:
        detector = load_detector(options.settings, reporter)
        made_with = provenance(options, detector)
        if options.resume:
            dropped, plan.retried = resume_plan(plan, options, lock, made_with)
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
        for folder in (options.annotate, options.bboxdir):
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
    fmt = make_format(fmt_name, options.params(), options.settings.landmarks, plan.has_videos, made_with)
    tasks = make_tasks(plan, options)
    if not plan.has_videos:
        tasks = list(tasks)
    failures = 0  # this run's; the exit status also counts the resumed file's
    searchable = SearchCount(options.settings.min_face)
    sink = None
    try:
        with interrupts.critical():
            try:
                sink = open_sink(options, fmt_name, stdout_kind, lock)
            except OutputError as e:
                raise FileProblem(str(e)) from None
        reporter.start(expected_records(plan, options), plan.already_done, plan.retried)
        with closing(run_tasks(tasks, options.settings, options.jobs, detector)) as outcomes:
            with interrupts.critical():
                sink.write(fmt.start())
            for outcome in outcomes:
                result = outcome.result
                with interrupts.critical():
                    problems = write_side_outputs(plan, options, outcome)
                    sink.write(fmt.record(result))
                failures += (result.error is not None) or bool(problems)
                searchable.add(result)
                reporter.image(result, outcome.seconds if outcome else 0.0, problems)
                if outcome is not None and outcome.warning:
                    reporter.message(f"{display(result.path)}: {outcome.warning}")
        reporter.stop()
        with interrupts.critical():
            sink.write(fmt.end())
            sink.finish()
    except (OutputError, BrokenPipeError, WorkerStartError) as e:
        interrupts.depth += 1
        if sink is not None:
            sink.abort()
        reporter.stop()
        if isinstance(e, BrokenPipeError):  # `| head`: quiet, as Unix tools are
            return EXIT_PIPE_CLOSED
        reporter.message(str(e))
        return EXIT_SKIPPED
    except BaseException:  # Ctrl-C, or anything unexpected: no temporary file left behind
        interrupts.depth += 1  # a second Ctrl-C must not cut the clean-up short
        if sink is not None:
            sink.abort()
        raise
    finally:
        reporter.stop()
        if lock is not None and sink is None:
            lock.abandon()
    if searchable.none_searched():
        reporter.message(f"--min-face {options.settings.min_face} is larger than every image: no faces can be found")
    reporter.summary(failures, unknown_files=plan.unknown_files)
    return EXIT_SKIPPED if failures else EXIT_OK


class SearchCount:
    """How many of a run's images the pyramid could search at all: none of an
    image whose shorter side is below --min-face (its first scale, 12/N,
    already makes it smaller than PNet's 12-pixel window), which can then
    give no face."""

    def __init__(self, min_face: int):
        self.min_face, self.images, self.searched, self.faces = min_face, 0, 0, 0

    def add(self, result) -> None:
        if result.error is None and result.width and result.height:
            from ..detector.pyramid import pyramid_scales

            self.images += 1
            self.searched += bool(pyramid_scales(result.height, result.width, self.min_face))
            self.faces += len(result.faces)

    def none_searched(self) -> bool:
        """Images were read, not one of them could be searched (and so none
        gave a face)."""
        return self.images > 0 and self.searched == 0 and self.faces == 0
