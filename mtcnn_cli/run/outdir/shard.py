"""One shard of an output folder's run: its part file and statistics,
written atomically (run_shard, what every engine calls), and many shards
through the CLI's own pool of workers (run_parts)."""
from __future__ import annotations

import json
import os
import socket
import time
from collections import deque
from contextlib import closing

from ...base.atomic import AtomicFile, write_text
from ...base.defaults import VERSION
from ...base.signals import Interrupts
from ...base.text import display
from ...io import video
from ...io.records import make_format, provenance_of
from ..batch import Settings, make_detector, process_one, run_tasks
from ..plan import DetectOptions, Plan, is_video, make_tasks
from ..report import Reporter
from .manifest import MANIFEST, Manifest, ManifestProblem, as_manifest, cpu_kind, model_digests


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
                "host": socket.gethostname(), "cpu": cpu_kind(), "version": VERSION,
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
