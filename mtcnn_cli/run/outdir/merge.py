"""Joining an output folder's parts into the run as one plain `mtcnn
detect` writes it, every part read (with the records' one reader) and
checked against the input list before a byte is written."""
from __future__ import annotations

import os

from ...base.atomic import OutputError, OutputLock, write_target
from ...base.defaults import VERSION
from ...base.errors import FileProblem, UsageProblem
from ...base.signals import Interrupts
from ...base.text import display
from ...io import records, video
from ...io.records import make_format
from ...io.sinks import FileSink, StdoutSink
from ..plan import choose_format, is_video, to_stdout
from ..report import Reporter
from .manifest import _PART, Manifest, ManifestProblem, as_manifest, part_name


def _belongs(path: str, item) -> bool:
    return path == item.path or (is_video(item) and video.video_of(path) == item.path)


def read_part(manifest: Manifest, index: int) -> list[tuple[bytes, dict]]:
    """The part's records, each with its line's bytes, checked by the
    records' reader and against its shard of the input list: one record per
    entry (a video: its frames), in order. Raises ManifestProblem."""
    path = manifest.part_path(index)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ManifestProblem(f"cannot read {display(path)}: {e.strerror or e}") from None
    lines = data.splitlines(keepends=True)
    found = []
    for number, line in enumerate(lines, 1):
        try:
            found.append((line, records.read_line(line, number)))
        except records.RecordError:
            raise ManifestProblem(f"{display(path)} line {number} is not a record of mtcnn detect") from None
        if not line.endswith(b"\n"):
            raise ManifestProblem(f"{display(path)} line {number} is cut short")
    items, at = manifest.shard_items(index), 0
    for number, (_, record) in enumerate(found, 1):
        record_path = record["path"]
        if at < len(items) and record_path == items[at].path and not is_video(items[at]):
            at += 1
        elif at < len(items) and _belongs(record_path, items[at]):
            if number == len(found) or not _belongs(found[number][1]["path"], items[at]):
                at += 1  # the video's last record
        else:
            expected = display(items[at].path) if at < len(items) else "the end of the part"
            raise ManifestProblem(f"{display(path)} line {number}: {display(record_path)} where the input "
                                  f"list has {expected}: the part is not of this run")
    if at != len(items):
        raise ManifestProblem(f"{display(path)} ends at {display(items[at].path)}: {len(items) - at} of its "
                              f"{len(items)} entries have no record")
    return found


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
    if manifest.data.get("version") != VERSION:
        raise ManifestProblem(f"{display(folder)} was written by mtcnn-cli {manifest.data.get('version')}, "
                              f"this is {VERSION}: merge it with that version")
    check_parts(manifest)
    for index in range(manifest.shards):
        read_part(manifest, index)
    fmt = make_format(fmt_name, manifest.params, manifest.data["landmarks"], manifest.data["inputs"]["videos"])
    counts = {"images": 0, "faces": 0, "failures": 0, "parts": manifest.shards}
    sink.write(fmt.start())
    for index in range(manifest.shards):
        for line, record in read_part(manifest, index):
            counts["images"] += 1
            counts["failures"] += "error" in record
            counts["faces"] += len(record.get("faces") or ())
            if fmt_name == "jsonl":
                sink.write(line.decode("utf-8", "surrogateescape"))  # the part's own bytes
            else:
                sink.write(fmt.record(records.result_of(record)))
    sink.write(fmt.end())
    sink.finish()
    return counts


def merge_run(folder, fmt: str | None = None, output: str | None = None) -> dict:
    """`mtcnn merge DIR [-o FILE] [--format F]`: the format chosen as detect
    chooses it; stdout or FILE (atomically, left as it was on any failure).
    Raises ManifestProblem, UsageProblem, OutputError."""
    fmt_name = choose_format(fmt, output, False)
    manifest = Manifest.read(folder)  # before -o is created
    if not to_stdout(output) and os.path.isdir(output):
        raise FileProblem(f"-o {display(output)}: is a folder")
    if not to_stdout(output):
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
