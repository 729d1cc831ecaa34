"""`mtcnn detect`: options in, plain functions (mtcnn_cli.run.detect) do the work.

Heavy imports (numpy, OpenCV, the detector) happen inside the command, so
that `mtcnn --help` stays fast and `-v` can time them."""
import os
import sys
import time

import click

from ..base import defaults
from ..base.defaults import VERSION
from ..base import signals
from .options import PixelCount, Threshold
from .program import CONTEXT, Command, fail, refuse_closed_stdout, stopped, usage_error
from .streams import silence_stdout


class Shard(click.ParamType):
    """I/N with 1 <= I <= N, or slurm (read from the job array's variables
    when the command runs)."""
    name = "I/N"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple) or value == "slurm":
            return value
        try:
            index, count = (int(part) for part in str(value).split("/"))
        except ValueError:
            self.fail(f"{value!r} is not of the form I/N, e.g. 3/8", param, ctx)
        if count < 1 or not 1 <= index <= count:
            self.fail(f"{value}: need 1 <= I <= N (I counts from 1)", param, ctx)
        return index, count


EPILOG = """\b
Formats (--format):
  json   one document: {"detector", "version", "params", "images": [...]};
         each image {"path", "width", "height", "faces": [{"x", "y",
         "width", "height", "confidence", "landmarks": [[x, y] x 5]}]},
         or "error": "reason" instead of "faces" for a skipped image.
  jsonl  one image record per line, written as each image is done.
  csv    path,face,x,y,width,height,confidence,lx1,ly1,...,lx5,ly5,error:
         one row per face (face counts from 0); an image without faces, or
         skipped, has one row with empty face fields. A run with videos
         has frame,time columns after path (empty for images), and their
         JSON records have "frame" and "time" after "path".
The format is --format, else -o FILE's extension (.json, .jsonl or .ndjson,
.csv; any other needs --format, and a --format contradicting the extension
is refused), else jsonl: on stdout the default is jsonl whatever stdout is
(terminal, pipe or file), so what you see is what a script gets. Numbers are
float32 values written with the fewest digits that read back exactly.

\b
Exit status:
  0    every image was processed
  1    the run went ahead, but some images were skipped (each named on
       stderr, with the reason, and recorded with "error" in the output)
       or an output failed while being written
  2    nothing was processed: bad option, no PATH, unusable model folder,
       an output that cannot be created (its folder missing), outputs
       that would collide or overwrite an input (images, model files,
       the list on stdin), an output another run is writing, stdout
       closed with no -o, an -o extension that names no format or
       contradicts --format, an --out-dir holding another run (the
       differences named) or other files
  130  interrupted by Ctrl-C (SIGINT), 143 by SIGTERM: a json or csv -o
       file is left as it was; a jsonl one holds every completed record;
       --out-dir keeps every finished part
  141  stdout's reader went away (| head): stopped quietly
"""


@click.command(cls=Command, epilog=EPILOG, context_settings={**CONTEXT, "max_content_width": 100})
@click.argument("paths", nargs=-1, metavar="PATH...")
@click.option("-0", "--null", is_flag=True,
              help="The list read from stdin (PATH -) is NUL-separated, as find -print0 writes it.")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB",
              help="Skip files and folders matching this shell pattern when searching folders "
                   "(repeatable): a pattern without / is matched against names ('*_mask.png', "
                   "'raw'), one with / against the path as found ('photos/2019/*').")
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="Search folders' subfolders too; --no-recursive takes only the images directly "
                   "in each named folder, as OpenFace's -fdir does.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Video files: detect in every N-th frame only (frames 0, N, 2N, ...).")
@click.option("--min-face", type=click.IntRange(min=12), default=defaults.MIN_FACE, show_default=True,
              help="Smallest face searched for, in pixels (at least 12).")
@click.option("--t1", type=Threshold(), default=defaults.T1, show_default=True, help="PNet score threshold, in [0, 1].")
@click.option("--t2", type=Threshold(), default=defaults.T2, show_default=True, help="RNet score threshold, in [0, 1].")
@click.option("--t3", type=Threshold(), default=defaults.T3, show_default=True, help="ONet score threshold, in [0, 1].")
@click.option("--models", metavar="DIR",
              help="An OpenFace model folder (MTCNN_detector.txt and its .dat files). "
                   "Default: $MTCNN_MODELS, else the bundled weights.")
@click.option("--format", "fmt", type=click.Choice(defaults.DETECT_FORMATS),
              help="Output format (see below). Default: -o FILE's extension, else jsonl.")
@click.option("-o", "--output", metavar="FILE",
              help="Write the output to FILE instead of stdout. Its extension chooses the format: "
                   ".json, .jsonl/.ndjson, .csv. json and csv are written atomically (a temporary "
                   "file renamed at the end), jsonl line by line. A link is followed; a device or "
                   "FIFO is written in place. Locked for the run: a second run on FILE stops (exit 2).")
@click.option("--bboxdir", metavar="DIR",
              help="Also write DIR/<image name stem>.txt per image, one 'min_x min_y max_x max_y' "
                   "line per face: OpenFace's FaceLandmarkImg -bboxdir format. Two images with the "
                   "same stem are refused before anything runs (OpenFace looks boxes up by stem).")
@click.option("--annotate", metavar="DIR",
              help="Also write a copy of each image with boxes, confidences and the five points "
                   "drawn, at DIR/<path as given> ('..' parts become '__', absolute paths lose the "
                   "leading /; see --annotate-root). Refused if it would overwrite an input image. "
                   "Colours: green box, its confidence (as in the output) in black on green above "
                   "it, sized by the face; points with a black outline: eyes blue, nose yellow, "
                   "mouth corners red.")
@click.option("--annotate-root", metavar="DIR",
              help="Mirror the images' paths relative to DIR inside the --annotate folder "
                   "(/data/set/a.jpg with --annotate-root /data: ANN/set/a.jpg), instead of the "
                   "paths as given; an image outside DIR is refused before anything runs.")
@click.option("--no-landmarks", is_flag=True, help="Leave the five facial points out of the output.")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Worker processes, each loading the models once; 0 = one per CPU; never more "
                   "than images; more than 4 per CPU is refused. The output is the same as with "
                   "--jobs 1, in the same order.")
@click.option("--shard", type=Shard(), metavar="I/N|slurm",
              help="Process only the I-th of N contiguous slices of the image list, I counting "
                   "from 1 (1/4 ... 4/4). Concatenating the shards' records in order gives the "
                   "whole list's. With --out-dir, the I-th of N contiguous runs of parts. slurm: I "
                   "and N from SLURM_ARRAY_TASK_ID, _COUNT and _MIN (a task of sbatch --array).")
@click.option("--out-dir", metavar="DIR",
              help="Write the run as part files DIR/part-00000.jsonl ... (each --shard-size entries "
                   "of the input list, records as --format jsonl, each written atomically), with "
                   "DIR/_manifest.json and per-part statistics; join them with mtcnn merge DIR. "
                   "Array tasks may share DIR; --resume runs only the missing parts; a DIR made "
                   "with other inputs, options or models is refused.")
@click.option("--shard-size", type=click.IntRange(min=1), metavar="N",
              help="With --out-dir: input entries per part.  [default: 1000]")
@click.option("--distributor", type=click.Choice(["processes", "dask"]), default="processes",
              show_default=True,
              help="With --out-dir: who runs the parts. processes: --jobs worker processes here; "
                   "dask: each part a Dask task, on --scheduler (needs Dask's distributed: "
                   "pip install -e '.[dask]' in the checkout). Inputs must be paths every worker can read.")
@click.option("--scheduler", metavar="tcp://HOST:PORT|local",
              help="With --distributor dask: the Dask scheduler's address, or local (a cluster of "
                   "--jobs worker processes on 127.0.0.1).  [default: local]")
@click.option("--resume", is_flag=True,
              help="With -o FILE, a JSONL file (any extension but .json and .csv): skip images "
                   "already in FILE and append the rest; images that failed are retried. Run with the "
                   "same PATHs and options (other parameters or models are refused). A torn last line "
                   "from a killed run is cut off first.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar and no summary (skipped images are still reported).")
@click.option("-v", "--verbose", is_flag=True,
              help="Also report import and model-loading times, and each image's time.")
@click.option("--max-pixels", type=PixelCount(), default=defaults.MAX_PIXELS, show_default=True,
              help="Skip larger images (checked in the file header before decoding when possible). "
                   "A whole number, 1e6, or with a K, M or G suffix (10M = 10 000 000).")
@click.version_option(VERSION, "--version", prog_name="mtcnn")
@click.pass_context
def detect(ctx, paths, null, exclude, recursive, every, min_face, t1, t2, t3, models, fmt, output, bboxdir, annotate,
           annotate_root, no_landmarks,
           jobs, shard, out_dir, shard_size, distributor, scheduler, resume, quiet, verbose, max_pixels):
    """Detect faces with OpenFace 2.2's MTCNN.

    Each PATH is an image file, a folder, or - for a list of paths read from
    stdin (one per line, or NUL-separated with -0). Folders are searched
    recursively, in sorted order, for .jpg .jpeg .png .bmp .tif .tiff .webp
    files (any case); symbolic links are followed, each folder once. Hidden
    files and folders (names starting with a dot, such as .thumbs/ or macOS's
    ._x.jpg), --exclude matches and this run's --annotate and --bboxdir
    folders are skipped in that search; a PATH you name is always taken. A
    named folder without images is reported, naming what was looked for.
    Images are processed and reported in input order; repeats are processed
    once.

    Video files (.mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .wmv .flv .ts .mts,
    named or found in folders) give one record per frame, as OpenCV's
    VideoCapture decodes them, with "frame" (from 0), "time" (seconds: frame
    / the container's frame rate) and the path VIDEO#frame=N; --every N
    samples them. --annotate draws each frame to DIR/VIDEO#frame=N.png,
    --bboxdir writes BOXES/<video stem>#frame=N.txt. A
    video that breaks (truncated, corrupt) keeps the frames before, and the
    frame where it broke gets a record with the error.

    Unreadable images (missing, not an image, truncated, too large, ...) are
    skipped with one line on stderr, "mtcnn: skipped PATH: reason", and a
    record with an "error" field; the batch goes on. Only data goes to
    stdout; progress (on a terminal), messages and the summary go to stderr.
    """
    started = time.perf_counter()
    if quiet and verbose:
        usage_error("-q/--quiet and -v/--verbose exclude each other")
    refuse_closed_stdout(output)
    if "cv2" not in sys.modules:  # OpenCV reads its decoders' pixel limit once, when it loads
        os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(max_pixels)
    try:
        # numpy, OpenCV and the detector's code: slow, so imported only here (timed for -v)
        from ..base.errors import FileProblem, UsageProblem
        from ..run.batch import Settings
        from ..run.detect import run_detect
        from ..run.plan import DetectOptions
        from ..run.report import Reporter
    except KeyboardInterrupt:
        fail("interrupted", signals.exit_status())
    if shard_size is not None and out_dir is None:
        usage_error("--shard-size sizes the parts of --out-dir: give --out-dir DIR too")
    if distributor == "dask" and out_dir is None:
        usage_error("--distributor dask runs the parts of --out-dir: give --out-dir DIR too")
    if scheduler is not None and distributor != "dask":
        usage_error("--scheduler is Dask's: give --distributor dask too")

    reporter = Reporter(quiet=quiet, verbose=verbose)
    reporter.verbose(f"imported numpy and OpenCV in {time.perf_counter() - started:.3f} s")
    settings = Settings(models=models, min_face=min_face, t1=t1, t2=t2, t3=t3,
                        max_pixels=max_pixels, landmarks=not no_landmarks)
    options = DetectOptions(
        settings, paths=tuple(paths), null=null, fmt=fmt, output=output, bboxdir=bboxdir,
        annotate=annotate, annotate_root=annotate_root, jobs=jobs, shard=shard, resume=resume, recursive=recursive,
        exclude=exclude, every=every, out_dir=out_dir, shard_size=shard_size)
    try:
        if shard == "slurm":
            from ..run.outdir.plan import slurm_shard  # the output folders' code: only when asked for

            options.shard = slurm_shard()
        if distributor == "dask":
            from ..run.dask_cluster import distributed_module  # Dask: an optional extra

            distributed_module()  # or how to install it
        if out_dir is None:
            status = run_detect(options, lambda: sys.stdin.buffer.read(), reporter)
        else:
            from ..run import engines  # the output folders' code (manifests, parts): only with --out-dir

            status = engines.run_to_dir(options, lambda: sys.stdin.buffer.read(), reporter,
                                       distributor, scheduler or "local")
    except FileProblem as e:
        fail(e)
    except UsageProblem as e:
        usage_error(str(e))
    except Exception as e:  # a bug or an unforeseen system error: one line, no traceback
        if stopped(e):
            fail("interrupted", signals.exit_status())
        fail(f"stopped by an unexpected error: {type(e).__name__}: {e}", 1)
    if status != 0 and _stdout_failed():
        silence_stdout()
    ctx.exit(status)


def _stdout_failed() -> bool:
    try:
        sys.stdout.flush()
    except OSError:  # a closed pipe, a full disk
        return True
    return False
