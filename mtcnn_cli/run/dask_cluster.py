"""The shards of an --out-dir run as Dask tasks (`--distributor dask`), on a
cluster someone runs (`--scheduler tcp://HOST:PORT`) or on a LocalCluster of
--jobs worker processes bound to 127.0.0.1 (`--scheduler local`).

Dask is an optional extra (`pip install -e '.[dask]'` in the checkout): this module is
imported only when it is asked for. Each task is `run_shard(manifest, index)`,
which writes its part atomically, so a task retried after a failure, or run
again after its worker died, rewrites the same bytes and never duplicates a
record. The manifest (with the input list) is sent to every worker once.

Dask's defaults cost us, measured on a 2-core machine: its nanny starts
workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes glibc's mmap
threshold at 128 KiB, so every large array of every image is mapped and
unmapped again (2.3x the CPU per image, 45,000 page faults per image instead
of 721); its statistical profiler samples every running thread every 10 ms
(12-32%). A LocalCluster of ours is started without either; on any cluster
the worker plugin undoes both in the worker process itself, since clusters
set up by other people keep their settings: glibc's thresholds raised with
mallopt (to the ceiling its dynamic adjustment would reach), the profiler's
periodic callbacks stopped. It also loads the models once per worker and
keeps OpenCV to one thread.
"""
from __future__ import annotations

import ctypes
import logging
import ctypes.util
import os
import uuid
from dataclasses import replace

from ..base.errors import UsageProblem
from .batch import resolve_jobs
from .outdir.shard import run_shard, shard_detector

INSTALL_HINT = ("--distributor dask needs Dask's distributed scheduler, which is an optional extra: "
                "pip install -e '.[dask]' in the checkout (or pip install 'distributed>=2024.1')")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling for its dynamic mmap threshold (64-bit)
RETRIES = 3  # a task that raises is run again this many times


def distributed_module():
    """dask.distributed, or UsageProblem saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise UsageProblem(INSTALL_HINT) from None
    return distributed


def undo_malloc_trim() -> bool:
    """glibc's allocator as without MALLOC_TRIM_THRESHOLD_: large blocks
    reused from the heap instead of mapped and unmapped per image. Returns
    whether it was done (glibc only)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD))


def stop_profiler(worker) -> None:
    """Stop the worker's statistical profiler (sampling every thread's stack)."""
    for name in ("profile", "profile-cycle"):
        callback = worker.periodic_callbacks.pop(name, None)
        if callback is not None:
            callback.stop()


def _plugin_class():
    distributed = distributed_module()

    class ShardWorker(distributed.WorkerPlugin):
        """Readies a worker for run_shard: allocator and profiler as above,
        one OpenCV thread, the models loaded once."""
        idempotent = True

        def __init__(self, settings):
            self.settings = settings

        def setup(self, worker):
            undo_malloc_trim()
            stop_profiler(worker)
            import cv2

            cv2.setNumThreads(1)

            shard_detector(self.settings)

    return ShardWorker


def local_cluster(jobs: int):
    """A LocalCluster of `jobs` worker processes (one thread each) on
    127.0.0.1, without the trim threshold and the profiler."""
    import dask

    distributed = distributed_module()

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                          "distributed.worker.profile.enabled": False,
                          "distributed.scheduler.allowed-failures": RETRIES}):
        return distributed.LocalCluster(n_workers=resolve_jobs(jobs), threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)


def connect(scheduler: str, jobs: int):
    """(client, cluster or None): a client of the scheduler at `scheduler`,
    or of a new LocalCluster for "local". Raises UsageProblem."""
    distributed = distributed_module()
    if scheduler == "local":
        cluster = local_cluster(jobs)
        return distributed.Client(cluster), cluster
    try:
        return distributed.Client(scheduler, timeout="30s"), None
    except (OSError, TimeoutError, ValueError) as e:
        raise UsageProblem(f"--scheduler {scheduler}: cannot connect: {e}") from None


def run_on_dask(manifest, indexes, *, client=None, scheduler: str = "local", jobs: int = 1,
                reporter=None) -> list[dict]:
    """Run the shards `indexes` as Dask tasks (on `client`, else on a new
    client of `scheduler`); returns their statistics as parts finish. A task
    that fails is retried; one whose worker dies is run again elsewhere."""

    if not indexes:
        return []
    distributed = distributed_module()
    own = client is None
    cluster = None
    if own:
        client, cluster = connect(scheduler, jobs)
    try:
        client.register_plugin(_plugin_class()(manifest.settings), name=f"mtcnn-shards-{uuid.uuid4().hex[:8]}")
        # the folder as an absolute path: a worker's working folder may be another
        manifest = replace(manifest, folder=os.path.abspath(manifest.folder))
        manifest.items()
        shared = client.scatter(manifest, broadcast=True, hash=False)
        run = uuid.uuid4().hex[:8]
        futures = [client.submit(run_shard, shared, index, key=f"mtcnn-part-{index:05d}-{run}",
                                 retries=RETRIES, pure=False) for index in indexes]
        stats = []
        for future, part in distributed.as_completed(futures, with_results=True):
            stats.append(part)
            future.release()  # done: nothing left for a dying worker to recompute
            if reporter is not None:
                reporter.images_elsewhere(part["images"], part["faces"], part.get("skipped", ()))
        return sorted(stats, key=lambda part: part["part"])
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
