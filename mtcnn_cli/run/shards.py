"""Output directories: a run cut into shards, each written to its own part file.

`mtcnn detect INPUTS --out-dir DIR [--shard-size N]` writes

    DIR/_inputs.jsonl         the input list, one JSON line per entry, in order
    DIR/_manifest.json        what the run is: tool version, parameters, the
                              models' SHA-256, the input list's SHA-256, the
                              shard size and count
    DIR/part-00000.jsonl ...  shard k: entries k*size .. (k+1)*size - 1 of the
                              list, their records exactly as --format jsonl
    DIR/part-00000.stats.json that part's images, faces, failures, seconds,
                              host and CPU kind

A shard is a fixed slice of the input list, so a shard run again rewrites
its part with the same bytes and never duplicates a record; every part is
written atomically (a temporary file renamed), so a part that exists is
complete. `--resume` runs only the parts that are missing. The manifest and
the input list are published once, by whichever process comes first (a
temporary file hard-linked into place: it exists whole or not at all), and
every later process, an array task or a resumed run, checks its own against
it: another tool version, parameters, models, input list or shard size is
refused, the difference named.

`run_shard(manifest, index)` is one shard, pure and repeatable: what any
engine (the CLI's --jobs, Dask, Ray, Spark) calls. `merge` joins the parts.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import socket
import tempfile
import time
from collections import deque
from contextlib import closing
from dataclasses import dataclass, field

from .. import __version__, defaults
from ..io import inputs, video
from ..io.atomic import AtomicFile, OutputError, OutputLock, write_text
from ..io.output import json_string, make_format
from .batch import Result, Settings, make_detector, process_one, run_tasks
from . import interrupt
from .detect import (EXIT_OK, EXIT_SKIPPED, DetectOptions, FileProblem, Plan,
                     UsageProblem, gather, is_video, load_detector, make_tasks, no_images_message,
                     provenance_of)
from .interrupt import Interrupts
from .report import Reporter, display, plural

MANIFEST = "_manifest.json"
INPUTS = "_inputs.jsonl"
LAYOUT = 1  # the layout of the folder described here
DEFAULT_SHARD_SIZE = 1000
_OURS = re.compile(r"(_manifest\.json|_inputs\.jsonl|part-\d{5,}\.jsonl|part-\d{5,}\.stats\.json|\..*)")
_PART = re.compile(r"part-(\d{5,})\.jsonl")


class ManifestProblem(FileProblem):
    """The folder, its manifest or its parts cannot be used: exit 2."""


def part_name(index: int) -> str:
    return f"part-{index:05d}.jsonl"


def stats_name(index: int) -> str:
    return f"part-{index:05d}.stats.json"


def shard_count(items: int, size: int) -> int:
    return -(-items // size)


# --- the input list and the manifest ------------------------------------------------------

def inputs_bytes(items) -> bytes:
    """The input list as stored: one JSON object per line, {"path": ...} or,
    for a folder that could not be read, {"path": ..., "error": ...}.
    Non-UTF-8 names are kept (as the records write them)."""
    lines = []
    for item in items:
        text = f'{{"path": {json_string(item.path)}'
        if item.error is not None:
            text += f', "error": {json_string(item.error)}'
        lines.append(text + "}\n")
    return "".join(lines).encode("utf-8")


def parse_inputs(data: bytes) -> list:
    items = []
    for line in data.decode("utf-8").splitlines():
        entry = json.loads(line)
        items.append(inputs.Item(entry["path"], entry.get("error")))
    return items


def cpu_kind() -> dict:
    """This machine's CPU as the stats record it: the model name from
    /proc/cpuinfo (else platform's word), whether it has AVX-512F, and
    OPENBLAS_CORETYPE when set."""
    found = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                found.setdefault(key.strip(), value.strip())
                if "model name" in found and "flags" in found:
                    break
    except OSError:
        pass
    kind = {"model": found.get("model name") or platform.processor() or platform.machine(),
            "avx512f": "avx512f" in found.get("flags", "").split(), "machine": platform.machine()}
    if os.environ.get("OPENBLAS_CORETYPE"):
        kind["openblas_coretype"] = os.environ["OPENBLAS_CORETYPE"]
    return kind


def model_digests(detector) -> dict:
    """{network: SHA-256 hex} of the detector's models ({} for a stand-in)."""
    models = getattr(detector, "models", None)
    return dict(getattr(models, "sha256", None) or {})


def manifest_data(settings: Settings, every: int, items, digests: dict, shard_size: int) -> dict:
    """The manifest of a run: the same bytes from every process given the same
    command (nothing about the host or the time goes in)."""
    listed = inputs_bytes(items)
    return {
        "tool": "mtcnn-cli", "version": __version__, "layout": LAYOUT,
        "params": {"min_face": settings.min_face, "t1": settings.t1, "t2": settings.t2, "t3": settings.t3},
        "landmarks": settings.landmarks, "max_pixels": settings.max_pixels, "every": every,
        "models": {"folder": None if settings.models is None else os.path.abspath(settings.models),
                   "sha256": digests},
        "inputs": {"file": INPUTS, "count": len(items), "sha256": hashlib.sha256(listed).hexdigest(),
                   "videos": any(is_video(item) for item in items)},
        "shard_size": shard_size, "shards": shard_count(len(items), shard_size),
    }


def manifest_text(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def differences(there: dict, here: dict) -> list[str]:
    """What makes two manifests describe different runs, one phrase each
    ("min_face 60 there, 40 here"). The models' folder may differ (the same
    files on another node): only their digests count."""
    found = []

    def compare(name, a, b):
        if a != b:
            found.append(f"{name} {a} there, {b} here")

    compare("version", there.get("version"), here.get("version"))
    compare("layout", there.get("layout"), here.get("layout"))
    for key in ("min_face", "t1", "t2", "t3"):
        compare(key, (there.get("params") or {}).get(key), here["params"][key])
    compare("landmarks", there.get("landmarks"), here["landmarks"])
    compare("max_pixels", there.get("max_pixels"), here["max_pixels"])
    compare("every", there.get("every"), here["every"])
    theirs = (there.get("models") or {}).get("sha256") or {}
    for name in sorted(set(theirs) | set(here["models"]["sha256"])):
        a, b = theirs.get(name), here["models"]["sha256"].get(name)
        if a != b:
            found.append(f"{name} model sha256 {str(a)[:12]}... there, {str(b)[:12]}... here")
    listed = there.get("inputs") or {}
    if (listed.get("count"), listed.get("sha256")) != (here["inputs"]["count"], here["inputs"]["sha256"]):
        found.append(f"input list of {listed.get('count')} entries (sha256 {str(listed.get('sha256'))[:12]}...) "
                     f"there, {here['inputs']['count']} (sha256 {here['inputs']['sha256'][:12]}...) here")
    compare("shard size", there.get("shard_size"), here["shard_size"])
    return found


def publish(path: str, data: bytes) -> bool:
    """Create `path` holding `data` unless it exists, atomically: the data
    goes to a temporary file that is hard-linked to `path` (which fails if
    `path` exists), so a reader sees the whole file or none, and of two
    processes only one creates it. Returns whether this call created it.
    On a file system without hard links, a rename (the content is the same
    for every process of one run, so a lost race costs nothing)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if os.path.exists(path):
                return False
            os.replace(temp, path)
            return True
    finally:
        try:
            os.unlink(temp)
        except OSError:
            pass


@dataclass
class Manifest:
    """A run's output folder and its manifest (`data`, as in _manifest.json)."""
    folder: str
    data: dict
    _items: list | None = field(default=None, repr=False)

    @classmethod
    def read(cls, folder) -> "Manifest":
        """Raises ManifestProblem."""
        folder = os.fspath(folder)
        path = os.path.join(folder, MANIFEST)
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
            data["shards"], data["shard_size"], data["inputs"]["sha256"]  # noqa: B018 (checked)
        except FileNotFoundError:
            raise ManifestProblem(f"{display(folder)}: no {MANIFEST}: not an output folder of "
                                  f"mtcnn detect --out-dir (or its run never started)") from None
        except OSError as e:
            raise ManifestProblem(f"cannot read {display(path)}: {e.strerror or e}") from None
        except (ValueError, TypeError, KeyError):
            raise ManifestProblem(f"{display(path)} is not a manifest written by mtcnn detect --out-dir") from None
        return cls(folder, data)

    @property
    def shards(self) -> int:
        return int(self.data["shards"])

    @property
    def shard_size(self) -> int:
        return int(self.data["shard_size"])

    @property
    def params(self) -> dict:
        return dict(self.data["params"])

    @property
    def settings(self) -> Settings:
        p = self.data["params"]
        return Settings(models=self.data["models"].get("folder"), min_face=p["min_face"], t1=p["t1"],
                        t2=p["t2"], t3=p["t3"], max_pixels=self.data["max_pixels"],
                        landmarks=self.data["landmarks"])

    def items(self) -> list:
        """The input list, checked against the manifest's digest (read once)."""
        if self._items is None:
            path = os.path.join(self.folder, INPUTS)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise ManifestProblem(f"cannot read {display(path)}: {e.strerror or e}") from None
            if hashlib.sha256(data).hexdigest() != self.data["inputs"]["sha256"]:
                raise ManifestProblem(f"{display(path)} is not the input list {MANIFEST} describes "
                                      f"(its SHA-256 differs)")
            self._items = parse_inputs(data)
        return self._items

    def shard_items(self, index: int) -> list:
        if not 0 <= index < self.shards:
            raise ValueError(f"shard {index}: the run has shards 0 to {self.shards - 1}")
        size = self.shard_size
        return self.items()[index * size:(index + 1) * size]

    def part_path(self, index: int) -> str:
        return os.path.join(self.folder, part_name(index))

    def stats_path(self, index: int) -> str:
        return os.path.join(self.folder, stats_name(index))

    def is_done(self, index: int) -> bool:
        """A part is done when it and its statistics exist (both are written
        atomically, the part first)."""
        return os.path.isfile(self.part_path(index)) and os.path.isfile(self.stats_path(index))

    def missing(self) -> list[int]:
        return [index for index in range(self.shards) if not self.is_done(index)]


def _check_folder(folder: str) -> None:
    """The folder is ours or empty: it holds only our own names."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ManifestProblem(f"--out-dir {display(folder)}: exists and is not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        names = os.listdir(folder)
    except OSError as e:
        raise ManifestProblem(f"--out-dir {display(folder)}: {e.strerror or e}") from None
    foreign = sorted(name for name in names if not _OURS.fullmatch(name))
    if foreign:
        raise ManifestProblem(f"--out-dir {display(folder)} holds files that are not a run's parts "
                              f"({display(foreign[0])}{', ...' if len(foreign) > 1 else ''}): "
                              f"give an empty or new folder")


def open_folder(folder: str, data: dict, items) -> Manifest:
    """The run's folder, created or joined: its manifest and input list
    published by the first process, checked by every other. Raises
    ManifestProblem naming the differences."""
    _check_folder(folder)
    manifest_path, inputs_path = os.path.join(folder, MANIFEST), os.path.join(folder, INPUTS)
    try:
        if not os.path.exists(manifest_path):
            if not publish(inputs_path, inputs_bytes(items)):
                with open(inputs_path, "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != data["inputs"]["sha256"]:
                        raise ManifestProblem(
                            f"--out-dir {display(folder)}: its {INPUTS} holds another input list "
                            f"(and no {MANIFEST}: a start was cut short?): give another folder")
            publish(manifest_path, manifest_text(data).encode("utf-8"))
    except OSError as e:
        raise ManifestProblem(f"--out-dir {display(folder)}: cannot write: {e.strerror or e}") from None
    manifest = Manifest.read(folder)
    found = differences(manifest.data, data)
    if found:
        raise ManifestProblem(f"--out-dir {display(folder)} holds a run made with other settings: "
                              f"{'; '.join(found)}: give the same inputs and options, or another folder")
    manifest._items = list(items)
    return manifest


# --- one part ----------------------------------------------------------------------------

class PartWriter:
    """One part file being written (atomically: renamed into place by
    commit), with its statistics."""

    def __init__(self, manifest: Manifest, index: int):
        self.manifest, self.index = manifest, index
        # the records plain `--format jsonl` writes, provenance included
        made_with = provenance_of(manifest.params, manifest.data["models"]["sha256"],
                                  manifest.data["landmarks"], manifest.data["every"])
        self.format = make_format("jsonl", manifest.params, manifest.data["landmarks"], provenance=made_with)
        self.file = AtomicFile(manifest.part_path(index), "wb")
        self.started = time.perf_counter()
        self.images = self.faces = self.failures = 0
        self.seconds = 0.0
        self.skipped = []  # [path, reason] of each record with an error

    def add(self, outcome) -> None:
        result = outcome.result
        self.file.write(self.format.record(result).encode("utf-8", "surrogateescape"))
        self.images += 1
        if result.error is not None:
            self.failures += 1
            self.skipped.append([result.path, result.error])
        self.faces += len(result.faces or ())
        self.seconds += outcome.seconds

    def stats(self) -> dict:
        return {"part": self.index, "images": self.images, "faces": self.faces,
                "failures": self.failures, "seconds": round(self.seconds, 3),
                "wall_seconds": round(time.perf_counter() - self.started, 3),
                "host": socket.gethostname(), "cpu": cpu_kind(), "version": __version__,
                "skipped": self.skipped}

    def commit(self) -> dict:
        """The part renamed into place, then its statistics; returns them."""
        self.file.commit()
        stats = self.stats()
        write_text(self.manifest.stats_path(self.index), json.dumps(stats, indent=2) + "\n")
        return stats

    def discard(self) -> None:
        self.file.discard()


def shard_tasks(manifest: Manifest, index: int):
    """The tasks of one shard, in order (a video as its frames)."""
    options = DetectOptions(manifest.settings, every=int(manifest.data["every"]))
    return make_tasks(Plan(manifest.shard_items(index)), options)


_detectors: dict = {}  # Settings -> detector: run_shard loads the models once per process


def shard_detector(settings: Settings):
    """This process's detector for `settings`, loaded once."""
    if settings not in _detectors:
        _detectors[settings] = make_detector(settings)
    return _detectors[settings]


def check_models(manifest: Manifest, detector) -> None:
    """The models this process loaded are the manifest's (a node with
    another $MTCNN_MODELS would write other bits)."""
    wanted, have = manifest.data["models"]["sha256"], model_digests(detector)
    if wanted and have and wanted != have:
        raise ManifestProblem(f"the models loaded here ({getattr(detector.models, 'source', '?')}) are not "
                              f"those of {display(os.path.join(manifest.folder, MANIFEST))}")


def as_manifest(manifest) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else Manifest.read(manifest)


def run_shard(manifest, index: int, detector=None) -> dict:
    """Detect the faces of shard `index` (from 0) and write its part file and
    statistics, atomically; returns the statistics. manifest: a Manifest or
    the run's folder. Pure and repeatable: run again (a retried task, a
    second engine), it writes the same part bytes. The models are loaded
    once per process (and checked against the manifest's digests)."""
    manifest = as_manifest(manifest)
    detector = detector if detector is not None else shard_detector(manifest.settings)
    check_models(manifest, detector)
    settings = manifest.settings
    writer = PartWriter(manifest, index)
    try:
        for task in shard_tasks(manifest, index):
            writer.add(process_one(detector, settings, task))
        return writer.commit()
    except BaseException:
        writer.discard()
        raise


def read_stats(manifest: Manifest, index: int) -> dict:
    """A done part's statistics ({} when unreadable: they only inform)."""
    try:
        with open(manifest.stats_path(index), "rb") as f:
            stats = json.loads(f.read())
        return stats if isinstance(stats, dict) else {}
    except (OSError, ValueError):
        return {}


# --- many parts in one process pool (the CLI's --jobs) --------------------------------------

def run_parts(manifest: Manifest, indexes, jobs: int, detector, reporter: Reporter,
              interrupts: Interrupts | None = None) -> list[dict]:
    """Run the shards `indexes` (in order) through one pool of `jobs`
    workers, each part committed as soon as its last record is in; returns
    their statistics. Outcomes come in task order, so each is matched with
    its shard by a queue the task stream fills."""
    interrupts = interrupts or Interrupts()
    owner: deque = deque()  # the shard of each task handed out, in order
    waiting = deque(indexes)  # shards not yet committed, in order
    stats, writer = [], None

    def tasks():
        for index in indexes:
            for task in shard_tasks(manifest, index):
                owner.append(index)
                yield task

    def commit_through(index):  # commit the open part, and empty shards, up to `index`
        nonlocal writer
        while waiting and (index is None or waiting[0] != index):
            done = waiting.popleft()
            part = writer if writer is not None and writer.index == done else PartWriter(manifest, done)
            with interrupts.critical():
                stats.append(part.commit())
            writer = None

    try:
        with closing(run_tasks(tasks(), manifest.settings, jobs, detector)) as outcomes:
            for outcome in outcomes:
                index = owner.popleft()
                if writer is None or writer.index != index:
                    commit_through(index)
                    with interrupts.critical():
                        writer = PartWriter(manifest, index)
                with interrupts.critical():
                    writer.add(outcome)
                reporter.image(outcome.result, outcome.seconds)
        commit_through(None)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    return stats


def expected_records(manifest: Manifest, indexes, every: int) -> int:
    total = 0
    for index in indexes:
        for item in manifest.shard_items(index):
            total += max(1, -(-video.frame_count(item.path) // every)) if is_video(item) else 1
    return total


# --- the CLI's --out-dir -------------------------------------------------------------------

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
                        ("--bboxdir", options.bboxdir), ("--annotate-root", options.annotate_root)):
        if value is not None:
            raise UsageProblem(f"{name} and --out-dir exclude each other: --out-dir writes JSONL "
                               f"parts; join them with mtcnn merge DIR -o FILE")


def run_to_dir(options: DetectOptions, read_stdin, reporter: Reporter, distributor: str | None = None,
               scheduler: str = "local") -> int:
    """`mtcnn detect ... --out-dir DIR`; returns the exit status. Raises
    UsageProblem (2). distributor "dask": the shards are Dask tasks, on the
    cluster at `scheduler` (or a local one of --jobs workers)."""
    with Interrupts() as interrupts:
        try:
            return _run_to_dir(options, read_stdin, reporter, interrupts, distributor, scheduler)
        except KeyboardInterrupt:
            reporter.stop()
            reporter.message(f"interrupted after {reporter.images} images (finished parts are kept)")
            return interrupt.exit_status()


@dataclass
class DirRun:
    """A run into an output folder, ready to go: its shards `todo` of `mine`."""
    manifest: Manifest
    detector: object
    mine: list
    todo: list


def prepare_dir(options: DetectOptions, read_stdin, reporter: Reporter) -> DirRun:
    """The input list, the models, the folder (created or joined and checked)
    and the shards to run. Raises UsageProblem."""
    refuse_with_out_dir(options)
    items, empty = gather(options, read_stdin)
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
    return DirRun(manifest, detector, mine, todo)


def _run_to_dir(options: DetectOptions, read_stdin, reporter: Reporter, interrupts: Interrupts,
                distributor: str | None, scheduler: str) -> int:
    run = prepare_dir(options, read_stdin, reporter)
    manifest, todo = run.manifest, run.todo
    before = [read_stats(manifest, index) for index in run.mine if index not in todo]
    reporter.start(expected_records(manifest, todo, options.every), sum(s.get("images", 0) for s in before),
                   already_failed=sum(s.get("failures", 0) for s in before))
    try:
        if distributor == "dask":
            from .dask_cluster import run_on_dask

            stats = run_on_dask(manifest, todo, scheduler=scheduler, jobs=options.jobs, reporter=reporter)
        else:
            stats = run_parts(manifest, todo, options.jobs, run.detector, reporter, interrupts)
    except OutputError as e:
        reporter.stop()
        reporter.message(str(e))
        return EXIT_SKIPPED
    finally:
        reporter.stop()
    failures = sum(part["failures"] for part in stats)
    reporter.summary(failures)
    if not reporter.quiet and todo:
        reporter.message(f"wrote {plural(len(stats), 'part')} to {display(options.out_dir)}; "
                         f"{plural(len(manifest.missing()), 'part')} of {manifest.shards} still missing")
    return EXIT_SKIPPED if failures or reporter.already_failed else EXIT_OK


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


def detect_to_dir(paths, out_dir, client=None, shard_size: int = DEFAULT_SHARD_SIZE, resume: bool = False, *,
                  jobs: int = 1, models=None, min_face: int = defaults.MIN_FACE, t1: float = defaults.T1,
                  t2: float = defaults.T2, t3: float = defaults.T3, max_pixels: int = defaults.MAX_PIXELS,
                  landmarks: bool = True, every: int = 1) -> list[dict]:
    """Detect faces in `paths` (image files, folders, videos, as `mtcnn
    detect` takes them) into the output folder `out_dir`, as `mtcnn detect
    PATHS --out-dir OUT_DIR` does; returns the statistics of the parts
    written. client: a dask.distributed Client to run the shards on (its
    workers must read the same paths), else `jobs` local worker processes.
    resume: run only the missing parts. Raises UsageProblem (bad
    arguments, a folder of another run)."""
    options = _library_options(paths, out_dir, shard_size, resume, jobs, models, min_face, t1, t2, t3,
                               max_pixels, landmarks, every)
    reporter = Silent(quiet=True)
    run = prepare_dir(options, None, reporter)
    if client is not None:
        from .dask_cluster import run_on_dask

        return run_on_dask(run.manifest, run.todo, client=client, reporter=reporter)
    return run_parts(run.manifest, run.todo, jobs, run.detector, reporter)


# --- merging the parts ---------------------------------------------------------------------

@dataclass(frozen=True)
class RecordedFace:
    """A face as a part file records it."""
    x: float
    y: float
    width: float
    height: float
    confidence: float
    landmarks: tuple = ()


def result_of(record: dict) -> Result:
    """A part's record as the Result that wrote it."""
    faces = record.get("faces")
    if faces is not None:
        faces = [RecordedFace(f["x"], f["y"], f["width"], f["height"], f["confidence"],
                              tuple(tuple(point) for point in f.get("landmarks", ()))) for f in faces]
    return Result(record["path"], record.get("width"), record.get("height"), faces, record.get("error"),
                  record.get("frame"), record.get("time"))


def _belongs(path: str, item) -> bool:
    return path == item.path or (is_video(item) and video.video_of(path) == item.path)


def read_part(manifest: Manifest, index: int) -> list[bytes]:
    """The part's record lines, checked against its shard of the input list:
    one record per entry (a video: its frames), in order. Raises
    ManifestProblem."""
    path = manifest.part_path(index)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ManifestProblem(f"cannot read {display(path)}: {e.strerror or e}") from None
    lines = data.splitlines(keepends=True)
    items, at = manifest.shard_items(index), 0
    for number, line in enumerate(lines, 1):
        try:
            record_path = json.loads(line)["path"]
        except (ValueError, TypeError, KeyError):
            raise ManifestProblem(f"{display(path)} line {number} is not a record of mtcnn detect") from None
        if not line.endswith(b"\n"):
            raise ManifestProblem(f"{display(path)} line {number} is cut short")
        if at < len(items) and record_path == items[at].path and not is_video(items[at]):
            at += 1
        elif at < len(items) and _belongs(record_path, items[at]):
            if number == len(lines) or not _belongs(json.loads(lines[number])["path"], items[at]):
                at += 1  # the video's last record
        else:
            expected = display(items[at].path) if at < len(items) else "the end of the part"
            raise ManifestProblem(f"{display(path)} line {number}: {display(record_path)} where the input "
                                  f"list has {expected}: the part is not of this run")
    if at != len(items):
        raise ManifestProblem(f"{display(path)} ends at {display(items[at].path)}: {len(items) - at} of its "
                              f"{len(items)} entries have no record")
    return lines


def check_parts(manifest: Manifest) -> None:
    """Every part is there, and no other. Raises ManifestProblem."""
    missing = manifest.missing()
    if missing:
        names = ", ".join(part_name(index) for index in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ManifestProblem(f"{display(manifest.folder)}: {len(missing)} of {manifest.shards} parts are "
                              f"missing ({names}): run the same mtcnn detect --out-dir with --resume")
    for name in os.listdir(manifest.folder):
        found = _PART.fullmatch(name)
        if found and int(found.group(1)) >= manifest.shards:
            raise ManifestProblem(f"{display(manifest.folder)}: {name} is not a part of this run "
                                  f"(it has {manifest.shards})")


def merge_to(folder, fmt_name: str, sink, reporter: Reporter | None = None) -> dict:
    """Check the run in `folder` and write it to `sink` (write/finish/abort)
    in the format `fmt_name`: the bytes `mtcnn detect` writes for the whole
    input list. Every part is read and checked before anything is written.
    Returns {"images", "faces", "failures", "parts"}. Raises ManifestProblem."""
    manifest = as_manifest(folder)
    if manifest.data.get("version") != __version__:
        raise ManifestProblem(f"{display(folder)} was written by mtcnn-cli {manifest.data.get('version')}, "
                              f"this is {__version__}: merge it with that version")
    check_parts(manifest)
    for index in range(manifest.shards):
        read_part(manifest, index)
    fmt = make_format(fmt_name, manifest.params, manifest.data["landmarks"], manifest.data["inputs"]["videos"])
    counts = {"images": 0, "faces": 0, "failures": 0, "parts": manifest.shards}
    sink.write(fmt.start())
    for index in range(manifest.shards):
        for line in read_part(manifest, index):
            record = json.loads(line)
            counts["images"] += 1
            counts["failures"] += "error" in record
            counts["faces"] += len(record.get("faces") or ())
            if fmt_name == "jsonl":
                sink.write(line.decode("utf-8", "surrogateescape"))  # the part's own bytes
            else:
                sink.write(fmt.record(result_of(record)))
    sink.write(fmt.end())
    sink.finish()
    return counts


def merge_run(folder, fmt: str | None = None, output: str | None = None) -> dict:
    """`mtcnn merge DIR [-o FILE] [--format F]`: the format chosen as detect
    chooses it; stdout or FILE (atomically, left as it was on any failure).
    Raises ManifestProblem, UsageProblem, OutputError."""
    from .detect import FileSink, StdoutSink, choose_format, to_stdout

    fmt_name = choose_format(fmt, output, False)
    manifest = Manifest.read(folder)  # before -o is created
    if not to_stdout(output) and os.path.isdir(output):
        raise FileProblem(f"-o {display(output)}: is a folder")
    if not to_stdout(output):
        from ..atomic_file import write_target

        landing = write_target(output)[0]  # where the bytes go: through links, and ..
        inside = os.path.realpath(os.path.dirname(os.path.abspath(landing))) == os.path.realpath(manifest.folder)
        if inside:
            raise UsageProblem(f"-o {display(output)} is inside {display(folder)}, which holds only the run's parts")
    if to_stdout(output):
        sink = StdoutSink(hold=False)
    else:
        try:
            sink = FileSink(output, OutputLock(output))  # atomic, whatever the format; locked
        except OutputError as e:
            raise FileProblem(str(e)) from None
    with Interrupts():  # SIGTERM too: the temporary file goes, -o is left as it was
        try:
            return merge_to(manifest, fmt_name, sink)
        except BaseException:
            sink.abort()
            raise
