"""Preparing a run into an output folder: the input list, the models, the
folder created or joined and checked, and the shards this process runs
(--shard I/N, a SLURM array task)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ...base import defaults
from ...base.errors import UsageProblem
from ...base.text import display, plural
from ...io import inputs
from ..batch import Settings
from ..detect import load_detector
from ..plan import DetectOptions, gather, no_images_message
from ..report import Reporter
from .manifest import DEFAULT_SHARD_SIZE, Manifest, manifest_data, model_digests, open_folder


def slurm_shard(environ=None) -> tuple[int, int]:
    """(I, N) of this SLURM array task, I from 1: from SLURM_ARRAY_TASK_ID,
    SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_MIN (and _STEP, for
    --array=1-9:2). Raises UsageProblem outside an array job."""
    environ = os.environ if environ is None else environ
    values = {}
    for name in ("ID", "COUNT", "MIN", "STEP"):
        text = environ.get(f"SLURM_ARRAY_TASK_{name}")
        if text is None and name == "STEP":
            text = "1"
        if text is None:
            raise UsageProblem(f"--shard slurm: SLURM_ARRAY_TASK_{name} is not set: run it as a task "
                               f"of a job array (sbatch --array), or give --shard I/N")
        try:
            values[name] = int(text)
        except ValueError:
            raise UsageProblem(f"--shard slurm: SLURM_ARRAY_TASK_{name}={text!r} is not a number") from None
    offset, step = values["ID"] - values["MIN"], max(1, values["STEP"])
    index, count = offset // step + 1, values["COUNT"]
    if offset < 0 or offset % step or not 1 <= index <= count:
        raise UsageProblem(f"--shard slurm: task {values['ID']} is not among the {count} tasks "
                           f"of an array starting at {values['MIN']} (step {step})")
    return index, count


def assigned(shards: int, shard) -> list[int]:
    """The shards (from 0) that --shard I/N gives this process: the I-th of N
    contiguous runs of shards, as --shard slices the list without --out-dir."""
    if shard is None:
        return list(range(shards))
    return inputs.shard(list(range(shards)), *shard)


def refuse_with_out_dir(options: DetectOptions) -> None:
    for name, value in (("-o", options.output), ("--format", options.fmt), ("--annotate", options.annotate),
                        ("--bboxdir", options.bboxdir), ("--annotate-root", options.annotate_root),
                        ("--crops", options.crops), ("--annotate-video", options.annotate_video)):
        if value is not None:
            raise UsageProblem(f"{name} and --out-dir exclude each other: --out-dir writes JSONL "
                               f"parts; join them with mtcnn merge DIR -o FILE")


@dataclass
class DirRun:
    """A run into an output folder, ready to go: its shards `todo` of `mine`."""
    manifest: Manifest
    detector: object
    mine: list
    todo: list
    unknown_files: int = 0  # files the folder walks skipped for their extension


def prepare_dir(options: DetectOptions, read_stdin, reporter: Reporter) -> DirRun:
    """The input list, the models, the folder (created or joined and checked)
    and the shards to run. Raises UsageProblem."""
    refuse_with_out_dir(options)
    tally = inputs.Tally()
    items, empty = gather(options, read_stdin, tally)
    for folder in empty:
        reporter.message(no_images_message(folder, options))
    detector = load_detector(options.settings, reporter)
    data = manifest_data(options.settings, options.every, items, model_digests(detector),
                         options.shard_size or DEFAULT_SHARD_SIZE)
    manifest = open_folder(options.out_dir, data, items)
    mine = assigned(manifest.shards, options.shard)
    todo = [index for index in mine if not (options.resume and manifest.is_done(index))]
    if options.shard and not mine:
        index, count = options.shard
        reporter.message(f"shard {index}/{count} is empty: the run has {plural(manifest.shards, 'part')} "
                         f"for {count} shards")
    elif mine and not todo:
        reporter.message(f"all {plural(len(mine), 'part')} already done in {display(options.out_dir)}")
    return DirRun(manifest, detector, mine, todo, tally.unknown)


class Silent(Reporter):
    """The library's reporter: nothing on stderr (the statistics say it all)."""

    def _line(self, message: str) -> None:
        pass


def _library_options(paths, out_dir, shard_size, resume, jobs, models, min_face, t1, t2, t3, max_pixels,
                     landmarks, every) -> DetectOptions:
    settings = Settings(None if models is None else os.fspath(models), min_face, t1, t2, t3, max_pixels,
                        landmarks)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return DetectOptions(settings, paths=tuple(os.fspath(p) for p in paths), jobs=jobs, resume=resume,
                         out_dir=os.fspath(out_dir), shard_size=shard_size, every=every)


def plan_dir(paths, out_dir, shard_size: int = DEFAULT_SHARD_SIZE, *, models=None,
             min_face: int = defaults.MIN_FACE, t1: float = defaults.T1, t2: float = defaults.T2,
             t3: float = defaults.T3, max_pixels: int = defaults.MAX_PIXELS, landmarks: bool = True,
             every: int = 1) -> Manifest:
    """Create (or join, checked) the output folder of a run over `paths`
    without running any shard: its Manifest, whose shards another engine
    runs with run_shard(manifest.folder, index) (manifest.missing(): those
    not done yet). Raises UsageProblem."""
    options = _library_options(paths, out_dir, shard_size, False, 1, models, min_face, t1, t2, t3,
                               max_pixels, landmarks, every)
    return prepare_dir(options, None, Silent(quiet=True)).manifest
