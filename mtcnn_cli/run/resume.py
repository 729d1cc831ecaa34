"""--resume and the output lock: what an earlier run of the same command
already wrote to -o FILE (read with the records' one reader and checked
against this run's provenance and inputs), and what a killed run left
beside it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..base import atomic
from ..base.atomic import OutputError, OutputLock
from ..base.errors import FileProblem
from ..base.text import display
from ..io import inputs, records, sinks, video
from .plan import DetectOptions, Plan, is_video, to_stdout
from .report import Reporter


@dataclass
class Resumed:
    """What --resume found in -o FILE."""
    done: set = field(default_factory=set)  # normalised paths recorded without an error
    failed: list = field(default_factory=list)  # paths whose records had an error: retried
    kept: list = field(default_factory=list)  # the lines of the records kept (bytes, with newline)
    torn: bytes = b""  # a torn last line (from a kill)


def read_done(path: str, provenance: dict | None = None, listed: set | None = None) -> Resumed:
    """--resume: the records already in the JSONL file. Every complete line
    is checked first (records.read_line, and, with `provenance`, the same
    parameters and models; with `listed`, the normalised paths of this run's
    inputs, an image, or a video's frame, among them; no image recorded
    twice), so that a file that is not ours, made otherwise, or by another
    run, is left untouched. An error record followed by a record of the same
    image (a retry whose file could not be rewritten) is superseded. Raises
    FileProblem."""
    found = Resumed()
    if not os.path.exists(path):
        return found
    number = 0
    recorded = {}  # normalised path -> the line that recorded it without an error (found.done: its keys)
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    found.torn = line
                    break
                try:
                    record = records.read_line(line, number)
                except records.RecordError as e:
                    raise FileProblem(f"--resume: {display(path)} {e}") from None
                difference = provenance and records.provenance_difference(record.get("run"), provenance)
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
    if found.torn and not records.torn_record(found.torn):
        raise FileProblem(f"--resume: {display(path)} line {number} {records.NOT_A_RECORD}")
    found.done = set(recorded)
    return found


def resume_plan(plan: Plan, options: DetectOptions, lock: OutputLock | None,
                provenance: dict | None, fmt_name: str = "jsonl") -> tuple[int, int]:
    """--resume: leave out of plan the images already in -o FILE (a JSONL
    file; a JSON or CSV file's journal, see io/sinks.py), read under the
    run's lock, and a video's frames already there. Records of images that
    failed are taken out, to be tried again; a torn last line is cut off.
    Returns (bytes of the torn line, failed records retried)."""
    if lock is not None and lock.in_place:
        raise FileProblem(f"--resume: {display(options.output)} is not a regular file")
    journal = fmt_name != "jsonl"
    source = sinks.journal_path(lock.target if lock is not None else options.output) if journal else options.output
    if journal and not os.path.exists(source) and lock is not None and not lock.created:
        raise FileProblem(f"--resume: {display(options.output)} has no journal of an unfinished run beside it "
                          f"({display(os.path.basename(source))}): it is complete, or not a file of this "
                          f"run; drop --resume to write it anew")
    found = read_done(source, provenance, plan.listed_paths)
    try:
        if found.failed and journal:
            atomic.write_bytes(source, b"".join(found.kept))
        elif found.failed and lock is not None and lock.fd >= 0:
            lock.rewrite(b"".join(found.kept))  # atomically, keeping the lock
        elif found.torn:
            atomic.cut_torn_tail(source)
    except (OutputError, OSError) as e:
        raise FileProblem(f"--resume: cannot repair {display(source)}: {e}") from None
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
    crop = options.settings.crop if options.crops is not None else None
    crops = None if crop is None else {"style": crop[0], "size": crop[1], "margin": crop[2]}
    return records.provenance_of(options.params(), digests, options.settings.landmarks, options.every, crops)


def hold_output(options: DetectOptions, reporter: Reporter, fmt_name: str = "jsonl") -> OutputLock | None:
    """Lock -o FILE for this run (exit 2 when another run holds it), and deal
    with the temporary files a killed run of ours left beside it: with
    --resume and no FILE, the largest is adopted as FILE; the others go."""
    if to_stdout(options.output) or os.path.isdir(options.output):
        return None  # a folder is refused by make_plan
    try:
        lock = OutputLock(options.output)
    except OutputError as e:
        raise FileProblem(f"-o {e}") from None
    if lock.unlocked:
        reporter.message(f"-o {display(options.output)} cannot be locked here (no file locks on this file "
                         f"system or platform): run no second run on it at the same time")
    if lock.in_place or lock.fd < 0:
        return lock
    temps = atomic.stale_temps(lock.target)
    if temps and options.resume and lock.created and fmt_name == "jsonl":
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
