"""`mtcnn compare`: proof, image by image, that our detector gives what OpenFace's C++ gives."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from ..base import defaults, signals
from .options import Threshold
from .program import CONTEXT, Command, fail, usage_error
from .streams import silence_stdout



@click.command(cls=Command, context_settings=CONTEXT, options_metavar="--cpp REF [OPTIONS]")
@click.option("--cpp", "ref_path", required=True, type=click.Path(path_type=Path), metavar="REF",
              help="The C++ side: OpenFace reference JSON, an OpenFace -bboxdir folder, or an "
                   "output of `mtcnn detect`.")
@click.argument("ours_path", required=False, type=click.Path(path_type=Path), metavar="[OURS]")
@click.option("--cpp-format", type=click.Choice(defaults.COMPARE_FORMATS), help="Read REF as this format (default: detected).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              help="Folder REF's image paths are relative to (default: REF's folder or the nearest "
                   "of its parents holding them, else the current folder).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the images, when REF is a bbox folder (<stem>.txt -> <stem>.*).")
@click.option("--models", type=click.Path(path_type=Path), metavar="DIR",
              help="Model folder, as for `mtcnn detect`.")
@click.option("--min-face", type=click.IntRange(min=12), help="Override REF's min_face (at least 12).")
@click.option("--t1", type=Threshold(), help="Override REF's PNet threshold, in [0, 1].")
@click.option("--t2", type=Threshold(), help="Override REF's RNet threshold, in [0, 1].")
@click.option("--t3", type=Threshold(), help="Override REF's ONet threshold, in [0, 1].")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Worker processes, as for `mtcnn detect` (0: one per CPU).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.01, show_default=True, metavar="PX",
              help="Largest |difference| allowed in x, y, width, height (pixels).")
@click.option("--conf-tolerance", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Largest |difference| allowed in confidence.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write every image and face compared, as JSON (checked before anything is "
                   "compared: a FILE that cannot be written is exit 2).")
@click.option("--count-only-ours", is_flag=True,
              help="Images only in OURS fail the comparison (by default they are listed, not "
                   "counted: OURS may cover more images than REF).")
@click.option("--ignore-params", is_flag=True,
              help="Compare even when REF and OURS record different detector parameters "
                   "(min_face, t1, t2, t3); by default that is a usage error.")
def compare(ref_path, ours_path, cpp_format, root, images_dir, models, min_face, t1, t2, t3, jobs,
            tolerance, conf_tolerance, report_path, count_only_ours, ignore_params):
    """Compare face detections with OpenFace 2.2's C++, image by image.

    REF (--cpp) is the C++ side: the C++ reference JSON, an OpenFace
    -bboxdir folder (<stem>.txt per image; its images come from --images),
    or an output of `mtcnn detect`, so that two runs of ours compare too.
    OURS is a JSON, JSONL or CSV written by `mtcnn detect`. Formats are
    detected from the content.

    Without OURS, compare runs our detector on REF's images with REF's
    parameters (min_face, t1, t2, t3; detect's defaults when REF has none)
    unless overridden: `mtcnn compare --cpp ref.json` is the common case.

    Faces of an image are paired by an optimal one-to-one assignment on
    IoU; faces that overlap nothing are missing (only in REF) or extra (only
    in OURS). An image passes when no face is missing or extra and every
    pair is within --tolerance (box) and --conf-tolerance (confidence).
    Images the C++ itself failed on are listed, not compared; so are images
    only in OURS (--count-only-ours makes them fail). A bbox folder's
    <stem>.txt pairs with the image whose name without its last extension
    is <stem>, dots and all.

    REF and OURS must have been made with the same parameters (min_face, t1,
    t2, t3) when both files record them (a JSON of `mtcnn detect` or of the
    C++ does, our JSONL too; CSV and bbox folders do not): otherwise a usage
    error names both values, unless --ignore-params.

    The summary table goes to stderr, a one-line verdict (PASS/FAIL) to
    stdout, every image and face to --report FILE (JSON).

    \b
    Exit codes:
      0  every image has the same faces, every pair within tolerance
      1  some image differs, is missing, or could not be read; or the
         comparison ran but --report FILE could not be written
      2  nothing was compared: unreadable or malformed REF/OURS, unknown
         format, bad option, different parameters, a --report FILE that
         cannot be written or is a file compare reads
      130  interrupted (143 for SIGTERM)
      141  stdout's reader went away (| head)
    """
    # numpy, the readers and the detector: slow, so imported only when the command runs
    from ..base.errors import UsageProblem
    from ..compare.report import print_summary
    from ..compare.run import ReportNotWritten, run_compare
    from ..compare.sets import CompareError
    from ..compare.stats import verdict

    overrides = {"min_face": min_face, "t1": t1, "t2": t2, "t3": t3}
    if ours_path is not None:
        check_no_run_options(overrides, models, jobs, images_dir, root)
    try:
        result = run_compare(ref_path, ours_path, cpp_format=cpp_format, root=root, images_dir=images_dir,
                             models=models, overrides=overrides, jobs=jobs, tolerance=tolerance,
                             conf_tolerance=conf_tolerance, count_only_ours=count_only_ours,
                             ignore_params=ignore_params, report_path=report_path, progress=progress_bar)
    except ReportNotWritten as e:
        fail(str(e), 1)  # the comparison ran: an output failed, as in detect
    except CompareError as e:
        fail(str(e))
    except UsageProblem as e:
        usage_error(str(e))
    except KeyboardInterrupt:
        fail("interrupted", signals.exit_status())
    try:
        print_summary(result)
    except OSError:  # stderr closed or full: the table is lost, the verdict is not
        pass
    try:
        click.echo(verdict(result))
    except BrokenPipeError:
        raise
    except OSError as e:  # stdout on a full disk
        silence_stdout()
        fail(f"cannot write to stdout: {e.strerror or e}", 1)
    click.get_current_context().exit(0 if result.passed else 1)


@contextmanager
def progress_bar(total: int):
    """A progress bar on stderr when it is a terminal; yields the step function."""
    from rich.console import Console  # rich: only when a comparison runs our detector
    from rich.progress import Progress

    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("detecting", total=total)
        yield lambda: progress.advance(task)


def check_no_run_options(overrides, models, jobs, images_dir, root):
    given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
    given += ["--models"] * (models is not None) + ["--jobs"] * (jobs != 1)
    given += ["--images"] * (images_dir is not None) + ["--root"] * (root is not None)
    if given:
        usage_error(f"{', '.join(given)}: only used when compare runs the detector itself "
                    f"(no OURS given)")
