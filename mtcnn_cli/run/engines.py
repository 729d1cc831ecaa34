"""Which engine runs an output folder's shards: this process's own pool of
workers (--jobs), or Dask (--distributor dask, or a Client handed to
detect_to_dir). Above run/outdir/ and run/dask_cluster.py, which import
nothing from here."""
from __future__ import annotations

from ..base import defaults, exits, signals
from ..base.atomic import OutputError
from ..base.signals import Interrupts
from ..base.text import display, plural
from .outdir.manifest import DEFAULT_SHARD_SIZE, read_stats
from .outdir.plan import Silent, _library_options, prepare_dir
from .outdir.shard import expected_records, run_parts
from .plan import DetectOptions
from .report import Reporter


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
            return signals.exit_status()


def _run_to_dir(options: DetectOptions, read_stdin, reporter: Reporter, interrupts: Interrupts,
                distributor: str | None, scheduler: str) -> int:
    run = prepare_dir(options, read_stdin, reporter)
    manifest, todo = run.manifest, run.todo
    before = [read_stats(manifest, index) for index in run.mine if index not in todo]
    reporter.start(expected_records(manifest, todo, options.every), sum(s.get("images", 0) for s in before),
                   already_failed=sum(s.get("failures", 0) for s in before))
    try:
        if distributor == "dask":
            from .dask_cluster import run_on_dask  # Dask: an optional extra, imported only when asked for

            stats = run_on_dask(manifest, todo, scheduler=scheduler, jobs=options.jobs, reporter=reporter)
        else:
            stats = run_parts(manifest, todo, options.jobs, run.detector, reporter, interrupts)
    except OutputError as e:
        reporter.stop()
        reporter.message(str(e))
        return exits.SKIPPED
    finally:
        reporter.stop()
    failures = sum(part["failures"] for part in stats)
    reporter.summary(failures, unknown_files=run.unknown_files)
    if not reporter.quiet and todo:
        reporter.message(f"wrote {plural(len(stats), 'part')} to {display(options.out_dir)}; "
                         f"{plural(len(manifest.missing()), 'part')} of {manifest.shards} still missing")
    return exits.SKIPPED if failures or reporter.already_failed else exits.OK


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
        from .dask_cluster import run_on_dask  # Dask: an optional extra, imported only when asked for

        return run_on_dask(run.manifest, run.todo, client=client, reporter=reporter)
    return run_parts(run.manifest, run.todo, jobs, run.detector, reporter)
