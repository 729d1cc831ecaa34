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
  130  interrupted by Ctrl-C (SIGINT), 143 by SIGTERM: -o FILE (and
       stdout) holds every completed record, a json document closed
       (--resume goes on); --out-dir keeps every finished part
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
@click.option("--ext", "ext", multiple=True, metavar="EXTS",
              help="Folder search: also take files with these extensions (repeatable, or a comma "
                   "list: --ext .pgm, --ext pgm,ppm; read as images unless a video's); --ext =jpg,png "
                   "takes only those (videos too are then only those named). Files skipped for their "
                   "extension are counted in the summary.")
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="Search folders' subfolders too; --no-recursive takes only the images directly "
                   "in each named folder, as OpenFace's -fdir does.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Video files: detect in every N-th frame only (frames 0, N, 2N, ...).")
@click.option("--min-face", type=click.IntRange(min=12), default=defaults.MIN_FACE, show_default=True,
              help="The smallest face the pyramid searches for, in pixels (at least 12): its first "
                   "scale, 12/N, fits PNet's 12-pixel window to N pixels of the image. The boxes "
                   "written may come out smaller than N (the later networks and OpenFace's final "
                   "correction tighten them). An image whose shorter side is below N gives no faces; "
                   "when that is every image, the run says so.")
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
                   ".json, .jsonl/.ndjson, .csv. jsonl is written line by line; json and csv "
                   "atomically from a journal (.FILE.journal, a line per finished image, removed "
                   "when the run ends), also when interrupted. A link is followed; a device or "
                   "FIFO is written in place. Locked for the run: a second run on FILE stops (exit 2).")
@click.option("--bboxdir", metavar="DIR",
              help="Also write a box file per image, one 'min_x min_y max_x max_y' line per face "
                   "(OpenFace's FaceLandmarkImg -bboxdir format), named as --annotate names its copies "
                   "with the extension replaced by .txt: x.jpg gives DIR/x.txt, a/x.jpg and b/x.jpg "
                   "give DIR/a/x.txt and DIR/b/x.txt (with --annotate-root, relative to it). Two "
                   "images of one folder whose names differ only in their extension are refused "
                   "before anything runs (OpenFace looks boxes up by stem).")
@click.option("--annotate", metavar="DIR",
              help="Also write a copy of each image with boxes, face indexes, confidences and the "
                   "five points drawn (--draw chooses), at DIR/<path as given> ('..' parts become '__', "
                   "absolute paths lose the leading /; see --annotate-root). Refused if it would "
                   "overwrite an input image. Colours: green box, its index (#0, as in the record) and "
                   "confidence (as in the output) in black on green above it; points with a black "
                   "outline: eyes blue, nose yellow, mouth corners red. Lines, labels and points are "
                   "sized by each face and by the image.")
@click.option("--annotate-root", metavar="DIR",
              help="Mirror the images' paths relative to DIR inside the --annotate folder "
                   "(/data/set/a.jpg with --annotate-root /data: ANN/set/a.jpg), instead of the "
                   "paths as given; an image outside DIR is refused before anything runs.")
@click.option("--draw", metavar="PARTS",
              help="What --annotate draws: a comma list of boxes, landmarks (the five points), index "
                   "(the face's number in its record, from 0) and scores (its confidence). The records "
                   "are the same whatever is drawn (--no-landmarks, by contrast, leaves the points out "
                   "of the records).  [default: boxes,landmarks,index,scores]")
@click.option("--no-landmarks", is_flag=True, help="Leave the five facial points out of the output.")
@click.option("--annotate-video", metavar="OUT",
              help="Draw the run's one video into OUT (.mp4, .m4v, .mov or .avi), a frame per "
                   "record (--every N: every N-th frame, at 1/N of the rate), as --annotate draws; "
                   "besides --annotate's per-frame PNGs when that is given too. A stopped run keeps "
                   "the frames drawn so far as a video.")
@click.option("--crops", metavar="DIR",
              help="Write each face cut out as a PNG, DIR/<path as given, without its extension>_K.png "
                   "(K: the face's number in its record, from 0; a video frame's: "
                   "DIR/VIDEO#frame=N_K.png), mirroring the paths as --annotate does; each face's "
                   "record then also holds its \"crop\" path and the 2 x 3 \"matrix\" (image to crop).")
@click.option("--crop-style", type=click.Choice(["arcface", "box"]),
              help="arcface: aligned by the five points onto ArcFace's 112 x 112 template (a "
                   "least-squares similarity); box: the box squared about its centre.  [default: arcface]")
@click.option("--crop-size", type=click.IntRange(min=1), metavar="N",
              help="The crops' side in pixels (arcface: the template scaled by N/112).  [default: 112]")
@click.option("--margin", type=click.FloatRange(min=0), metavar="F",
              help="Show more around the face: F times the crop's side (box), or the template "
                   "shrunk by 1/(1+F) (arcface). Outside the image is black.  [default: 0]")
@click.option("--crop-compression", type=click.IntRange(0, 9), metavar="LEVEL",
              help="The crops' PNG deflate level, 0-9. 0 stores the pixels as they are, the fastest "
                   "(37 KiB for a 112 px face, as OpenFace's own aligned BMPs); 1-9 are about 40% "
                   "smaller and cost about ten times as much to encode, more with the level; the "
                   "pixels are the same.  [default: 0]")
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
              help="With -o FILE: go on with an interrupted or killed run, skipping the images "
                   "already done (in a JSONL FILE; in a JSON or CSV FILE's journal) and retrying those "
                   "that failed; the file ends as an uninterrupted run writes it. Run with the same "
                   "PATHs and options (other parameters or models are refused). A torn last line from "
                   "a killed run is cut off first.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar and no summary (skipped images are still reported).")
@click.option("-v", "--verbose", is_flag=True,
              help="Also report import and model-loading times, and each image's time.")
@click.option("--max-pixels", type=PixelCount(), default=defaults.MAX_PIXELS, show_default=True,
              help="Skip larger images (checked in the file header before decoding when possible). "
                   "A whole number, 1e6, or with a K, M or G suffix (10M = 10 000 000).")
@click.version_option(VERSION, "--version", prog_name="mtcnn")
@click.pass_context
def detect(ctx, paths, null, exclude, ext, recursive, every, min_face, t1, t2, t3, models, fmt, output, bboxdir, annotate,
           annotate_root, annotate_video, draw, no_landmarks, crops, crop_style, crop_size, margin,
           crop_compression,
           jobs, shard, out_dir, shard_size, distributor, scheduler, resume, quiet, verbose, max_pixels):
    """Detect faces with OpenFace 2.2's MTCNN.

    Each PATH is an image file, a folder, or - for a list of paths read from
    stdin (one per line, or NUL-separated with -0). Folders are searched
    recursively, in sorted order, for the image files cv2.imread documents
    (.bmp .dib .gif .jpeg .jpg .jpe .jp2 .png .webp .avif .pbm .pgm .ppm .pxm
    .pnm .pfm .sr .ras .tif .tiff .hdr .pic) and videos, in any case (--ext
    changes the list); symbolic links are followed, each folder once. Hidden
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
    --bboxdir writes BOXES/<VIDEO without its extension>#frame=N.txt. A
    video that breaks (truncated, corrupt) keeps the frames before, and the
    frame where it broke gets a record with the error.

    Unreadable images (missing, not an image, truncated, too large, ...) are
    skipped with one line on stderr, "mtcnn: skipped PATH: reason", and a
    record with an "error" field; the batch goes on. URLs are not read
    (download the file first); a Windows path, or a pattern the shell passed
    through unexpanded, is named as such. Only data goes to
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
        from ..io.draw import PARTS, parse_parts
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

    if draw is not None and annotate is None and annotate_video is None:
        usage_error("--draw chooses what --annotate draws: give --annotate DIR too")
    for name, value in (("--crop-style", crop_style), ("--crop-size", crop_size), ("--margin", margin),
                        ("--crop-compression", crop_compression)):
        if value is not None and crops is None:
            usage_error(f"{name} shapes the crops of --crops: give --crops DIR too")
    crop = (crop_style or "arcface", crop_size or 112, float(margin or 0.0)) if crops is not None else None
    if crop is not None and crop[0] == "arcface" and no_landmarks:
        usage_error("--crop-style arcface aligns by the five points: drop --no-landmarks, or give --crop-style box")
    try:
        parts = PARTS if draw is None else parse_parts(draw)
    except ValueError as e:
        usage_error(str(e))

    reporter = Reporter(quiet=quiet, verbose=verbose)
    reporter.verbose(f"imported numpy and OpenCV in {time.perf_counter() - started:.3f} s")
    settings = Settings(models=models, min_face=min_face, t1=t1, t2=t2, t3=t3,
                        max_pixels=max_pixels, landmarks=not no_landmarks, draw=parts, crop=crop,
                        crop_compression=crop_compression or 0)
    options = DetectOptions(
        settings, paths=tuple(paths), null=null, fmt=fmt, output=output, bboxdir=bboxdir,
        annotate=annotate, annotate_root=annotate_root, annotate_video=annotate_video, crops=crops, jobs=jobs, shard=shard, resume=resume, recursive=recursive,
        exclude=exclude, ext=ext, every=every, out_dir=out_dir, shard_size=shard_size)
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
