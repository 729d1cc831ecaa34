"""The plan of a `mtcnn detect` run: its options, its inputs in order, where
their side outputs go, and the refusals that come before any work (an
output format the command line contradicts, two outputs on one file, an
output that would overwrite an input)."""
from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field

from ..base import defaults
from ..base.atomic import write_target
from ..base.errors import FileProblem, UsageProblem
from ..base.text import display
from ..io import inputs, video
from ..io.draw import output_name
from .batch import Settings, Task


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
    annotate_video: str | None = None  # --annotate-video OUT: the one video of the run, drawn
    crops: str | None = None  # --crops DIR: one PNG per face (the style, size and margin: settings.crop)
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
    crops_to: dict = field(default_factory=dict)  # image path -> its crops' base path (+ _K.png)
    crop_folders: set = field(default_factory=set)  # the crops' folders this run has checked and made
    drawn_video: str | None = None  # --annotate-video: the video whose frames are drawn into it
    empty_folders: list = field(default_factory=list)  # named folders that gave no image
    unknown_files: int = 0  # files the folder walks skipped for their extension
    listed: int = 0  # the whole list's length, before --shard
    done: set = field(default_factory=set)  # --resume: normalised paths recorded without an error
    listed_paths: set | None = None  # --resume: the whole list's normalised paths, before --shard
    has_videos: bool = False  # this run's list (after --shard, before --resume) has videos: CSV frame columns
    places: dict = field(default_factory=dict)  # normalised path -> its place in this run's list

    def place(self, record: dict) -> tuple:
        """A record's place in the run's input order: its input's, then its frame."""
        key = inputs.normalise(record["path"])
        if key not in self.places:
            key = video.video_of(key) or key
        return self.places.get(key, len(self.places)), record.get("frame", -1)


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
    return write_target(path)[1] and not os.path.isdir(path)


def choose_format(fmt: str | None, output: str | None, resume: bool) -> str:
    """One rule, whatever stdout is: --format, else -o FILE's extension
    (.json, .jsonl/.ndjson, .csv), else jsonl (on stdout, or into a special
    file such as /dev/stdout, or with --resume); --resume needs -o FILE. --format contradicting the
    extension, or a regular -o file with an unknown extension and no
    --format, is a UsageProblem."""
    named = None if to_stdout(output) else extension_format(output)
    if resume and to_stdout(output):
        raise UsageProblem("--resume needs -o FILE: the file to complete")
    if fmt and named and fmt != named:
        raise UsageProblem(f"--format {fmt} contradicts -o {display(output)}, whose extension "
                           f"names {named}: drop --format or change the name")
    if fmt or named:
        return fmt or named
    if to_stdout(output) or _special_file(output) or resume:
        return defaults.DEFAULT_FORMAT
    raise UsageProblem(f"-o {display(output)}: the extension names no format: end the name in "
                       f".json, .jsonl, .ndjson or .csv, or give --format")


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
    outputs = tuple(folder for folder in (options.annotate, options.bboxdir, options.crops) if folder is not None)
    for path in paths:
        for name, folder in (("--annotate", options.annotate), ("--bboxdir", options.bboxdir),
                             ("--crops", options.crops)):
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


def side_targets(items, annotate: str | None, bboxdir: str | None, annotate_root: str | None = None,
                 crops: str | None = None):
    """(annotate_to, bbox_to, crops_to): where each image's annotated copy,
    box file and crops go, all mirroring the image's path in the same way
    (annotate_name). Raises UsageProblem when two images would share a file."""
    annotate_to, bbox_to, crops_to, owner = {}, {}, {}, {}
    for item in items:
        if item.error:
            continue
        if annotate is not None or bboxdir is not None or crops is not None:
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
        if crops is not None:
            base = os.path.join(crops, name if is_video(item) else os.path.splitext(name)[0])
            if base in owner:
                raise UsageProblem(f"--crops: {display(owner[base])} and {display(item.path)} have the same "
                                   f"name stem in one folder, so both would need {display(base)}_0.png: "
                                   f"run them in separate batches")
            owner[base] = item.path
            crops_to[item.path] = base
    return annotate_to, bbox_to, crops_to


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
    from ..detector.models import model_files  # the detector's code (numpy): only when outputs exist

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


def make_plan(options: DetectOptions, read_stdin) -> Plan:
    """The run's images and side-output paths (for --resume, all of them:
    see resume_plan). Raises UsageProblem."""
    tally = inputs.Tally()
    items, empty = gather(options, read_stdin, tally)
    for name, folder in (("--annotate", options.annotate), ("--bboxdir", options.bboxdir),
                         ("--crops", options.crops)):
        if folder is not None:
            _check_folder_option(name, folder)
    if not to_stdout(options.output) and os.path.isdir(options.output):
        raise FileProblem(f"-o {display(options.output)}: is a folder")
    if options.annotate_root is not None:
        if options.annotate is None:
            raise UsageProblem("--annotate-root places --annotate's copies: give --annotate DIR too")
        if not os.path.isdir(options.annotate_root):
            raise FileProblem(f"--annotate-root {display(options.annotate_root)}: not a folder")
    annotate_to, bbox_to, crops_to = side_targets(items, options.annotate, options.bboxdir, options.annotate_root,
                                                  options.crops)
    videos = {item.path for item in items if is_video(item)}  # their targets are only the frames' stems
    targets = {t: "--annotate" for path, t in annotate_to.items() if path not in videos}
    targets.update({t: "--bboxdir" for path, t in bbox_to.items() if path not in videos})
    drawn_video = None
    if options.annotate_video is not None:
        drawn_video = check_annotate_video(options, items)
        targets[options.annotate_video] = "--annotate-video"
    if not to_stdout(options.output):
        refuse_colliding_output(options.output, targets)
        targets[options.output] = "-o"
    refuse_overwriting_inputs(items, targets, options.settings, inputs.STDIN in options.paths)
    listed = len(items)
    listed_paths = {inputs.normalise(item.path) for item in items} if options.resume else None
    if options.shard:
        items = inputs.shard(items, *options.shard)
    places = {inputs.normalise(item.path): i for i, item in enumerate(items)}
    return Plan(items, annotate_to=annotate_to, bbox_to=bbox_to, crops_to=crops_to, drawn_video=drawn_video,
                empty_folders=empty,
                listed=listed,
                listed_paths=listed_paths, has_videos=any(is_video(item) for item in items), places=places,
                unknown_files=tally.unknown)


def check_annotate_video(options: DetectOptions, items) -> str:
    """The one video --annotate-video draws. Raises UsageProblem."""
    out = options.annotate_video
    if os.path.splitext(out)[1].lower() not in video.VIDEO_CODECS:
        raise UsageProblem(f"--annotate-video {display(out)}: end the name in "
                           f"{', '.join(sorted(video.VIDEO_CODECS))}")
    if options.resume:
        raise UsageProblem("--annotate-video draws the whole video in one run: it cannot be resumed")
    if os.path.isdir(out):
        raise FileProblem(f"--annotate-video {display(out)}: is a folder")
    videos = [item.path for item in items if is_video(item)]
    if len(videos) != 1:
        raise UsageProblem(f"--annotate-video writes one video: give exactly one video PATH "
                           f"({len(videos)} among the inputs)")
    return videos[0]


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
    base = plan.crops_to.get(item.path)
    if base is not None:
        plan.crops_to[path] = f"{base}{video.FRAME_MARK}{index}"
    return plan.annotate_to.get(path)


def make_tasks(plan: Plan, options: DetectOptions):
    """The tasks of the run, in order: an image each, a folder that could not
    be read as its error, a video as its frames (every N-th), decoded here
    as the tasks are taken, frames already in a resumed file left out."""
    for item in plan.items:
        if item.error:
            yield Task(item.path, error=item.error)
        elif not is_video(item):
            yield Task(item.path, plan.annotate_to.get(item.path), crop=item.path in plan.crops_to)
        else:
            for frame in video.frames(item.path, options.every, options.settings.max_pixels):
                if frame.index < 0:  # the video cannot be opened at all
                    yield Task(item.path, error=frame.error)
                    continue
                path = video.frame_path(item.path, frame.index)
                if inputs.normalise(path) in plan.done:
                    continue
                target = frame_targets(plan, item, frame.index)
                if target is None and item.path == plan.drawn_video:
                    target = "frame.png"  # drawn for --annotate-video only: PNG keeps its pixels
                yield Task(path, target if frame.error is None else None, frame.image, frame.index,
                           frame.time, frame.error, crop=path in plan.crops_to)


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
