"""The version, the detector's default parameters and the limits and formats the commands
share, in one place. No numpy or OpenCV here: the click commands import this
module to show the defaults in --help, and `mtcnn --help` stays fast."""

VERSION = "0.1.0"  # also in pyproject.toml; a test keeps the two equal

MIN_FACE = 60  # smallest face searched for, in pixels (OpenFace's default)
T1, T2, T3 = 0.6, 0.7, 0.7  # PNet, RNet, ONet score thresholds (OpenFace's defaults)
PARAMS = {"min_face": MIN_FACE, "t1": T1, "t2": T2, "t3": T3}

MAX_PIXELS = 100_000_000  # larger images are skipped (width x height)

DETECT_FORMATS = ("json", "jsonl", "csv")  # what detect writes
# detect's one default on stdout, whatever stdout is (a terminal, a pipe, a file):
# a record per line, written as each image is done (see the README)
DEFAULT_FORMAT = "jsonl"
EXTENSION_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}  # -o FILE
COMPARE_FORMATS = ("json", "jsonl", "csv", "bboxdir")  # what compare reads
