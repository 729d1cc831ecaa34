"""Running the detector over many images, in one process or in several.

`detect_images` is the library entry point: paths in, one Result per path out,
in input order. Worker processes (jobs > 1) each load the models once; they
are started with one BLAS/OpenMP/OpenCV thread each so that N workers use N
cores, and they ignore Ctrl-C: the parent decides when to stop them.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from contextlib import closing, contextmanager
from dataclasses import replace
from typing import Iterator, NamedTuple, Sequence

import cv2
import numpy as np

from ..base import collector, defaults
from ..detector import align
from ..io.draw import PARTS as DRAW_PARTS
from ..io.draw import annotate, encode
from ..io.images import ImageError, read_image
from ..io.records import Result


class Settings(NamedTuple):
    """What every worker needs to process an image."""
    models: str | None = None
    min_face: int = defaults.MIN_FACE
    t1: float = defaults.T1
    t2: float = defaults.T2
    t3: float = defaults.T3
    max_pixels: int = defaults.MAX_PIXELS
    landmarks: bool = True
    draw: tuple = DRAW_PARTS  # what an annotated copy shows (--draw): never changes the records
    crop: tuple | None = None  # --crops: (style, size, margin) of each face's crop
    crop_compression: int = 0  # --crop-compression: the crops' PNG deflate level, 0 (stored) to 9


class Task(NamedTuple):
    """One image to process; annotate_as, when set, asks for an annotated
    copy encoded in the format of that file name's extension. A video frame
    comes decoded (image, frame, time); an input already known to be
    unusable comes with its error."""
    path: str
    annotate_as: str | None = None
    image: object = None  # uint8 BGR array: a decoded video frame
    frame: int | None = None
    time: float | None = None
    error: str | None = None
    crop: bool = False  # cut each face out (Settings.crop)


class Outcome(NamedTuple):
    result: Result
    seconds: float
    annotated: bytes | None = None
    annotate_error: str | None = None
    warning: str | None = None  # e.g. faces dropped for non-finite values
    crops: tuple = ()  # per face: (PNG bytes or None, the 2 x 3 matrix, why not or None)


def detector_class():
    """The Detector class (importing it loads the numpy networks' code)."""
    from ..detector.cascade import Detector  # the networks' numpy code: only when a detector is made

    return Detector


def make_detector(settings: Settings):
    """Load the models once. Raises ModelError (bad model folder) or
    ValueError (bad parameters)."""
    return detector_class()(models=settings.models, min_face=settings.min_face,
                            t1=settings.t1, t2=settings.t2, t3=settings.t3)


def _annotated_copy(image, faces, task: Task, settings: Settings):
    """(bytes, None) or (None, reason)."""
    try:
        return encode(annotate(image, faces, settings.landmarks, settings.draw), task.annotate_as), None
    except Exception as e:  # an encoder failure costs the copy, not the batch
        return None, f"cannot draw the annotated copy: {e}"


def process_one(detector, settings: Settings, task: Task) -> Outcome:
    """Read, detect and (when asked) draw one image. Never raises for a bad
    image or a detector failure on it: the Result carries the reason."""
    start = time.perf_counter()
    where = {"frame": task.frame, "time": task.time}
    if task.error is not None:
        return Outcome(Result(task.path, None, None, None, task.error, **where), 0.0)
    try:
        image = task.image if task.image is not None else read_image(task.path, settings.max_pixels)
    except ImageError as e:
        result = Result(task.path, e.width, e.height, None, e.reason)
        return Outcome(result, time.perf_counter() - start)
    height, width = image.shape[:2]  # (H, W, 3) uint8 BGR
    try:
        with np.errstate(all="ignore"):  # an overflow in a network is handled below, not printed
            faces = list(detector.detect(image))  # on one BLAS thread, as the C++
    except MemoryError:
        result = Result(task.path, width, height, None, "out of memory", **where)
        return Outcome(result, time.perf_counter() - start)
    except Exception as e:  # one image must not stop a batch of thousands
        if isinstance(e.__context__, KeyboardInterrupt) or isinstance(e.__cause__, KeyboardInterrupt):
            raise KeyboardInterrupt from None  # a stop that compiled code wrapped (SystemError)
        result = Result(task.path, width, height, None, f"detector failed: {type(e).__name__}: {e}", **where)
        return Outcome(result, time.perf_counter() - start)
    finite = [face for face in faces if _finite(face)]
    warning = None
    if len(finite) < len(faces):
        dropped = len(faces) - len(finite)
        warning = (f"dropped {dropped} face{'s' * (dropped > 1)} with non-finite values (infinite or NaN "
                   f"network outputs: are the models sound?)")
        faces = finite
    if not settings.landmarks:
        faces = [replace(face, landmarks=()) for face in faces]
    annotated, annotate_error = None, None
    if task.annotate_as is not None:
        annotated, annotate_error = _annotated_copy(image, faces, task, settings)
    crops = ()
    if task.crop and settings.crop:
        crops = tuple(_face_crop(image, face, settings.crop, settings.crop_compression) for face in faces)
    result = Result(task.path, width, height, faces, None, **where)
    return Outcome(result, time.perf_counter() - start, annotated, annotate_error, warning, crops)


def _face_crop(image, face, crop: tuple, level: int):
    """(PNG bytes, matrix, None) of one face's crop, or (None, matrix, why not).
    Level 0 stores the pixels with no filter and no deflate: measured with
    OpenCV 5.1 on the 169 faces of the 76 public images, 0.06 ms a face and
    37.0 KiB (112 px), against 0.52 ms and 23.3 KiB at OpenCV's default."""
    style, size, margin = crop
    matrix = align.face_matrix(face, size, style, margin)
    options = [cv2.IMWRITE_PNG_COMPRESSION, level]
    if level == 0 and hasattr(cv2, "IMWRITE_PNG_FILTER"):
        options += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]  # a filter only costs, when nothing deflates
    try:
        ok, png = cv2.imencode(".png", align.crop(image, matrix, size), options)
        if not ok:
            raise ValueError("OpenCV could not encode it")
        return png.tobytes(), matrix.tolist(), None
    except Exception as e:  # an encoder failure costs the crop, not the batch
        return None, matrix.tolist(), f"cannot cut the crop: {e}"


def _finite(face) -> bool:
    """Every number of a face is finite (JSON has no NaN or Infinity)."""
    values = [face.x, face.y, face.width, face.height, face.confidence]
    values += [v for point in (face.landmarks or ()) for v in point]
    return bool(np.all(np.isfinite(np.asarray(values, np.float64))))


# --- worker processes -----------------------------------------------------------

_worker_state = None
PARENT_CHECK_SECONDS = 0.5


def exit_with_parent(parent: int) -> None:
    """End this worker when its parent is gone (killed with SIGKILL, say):
    nothing else would, as a worker holds both ends of its task pipe."""
    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(settings: Settings, parent: int) -> None:
    exit_with_parent(parent)
    import cv2

    cv2.setNumThreads(1)
    global _worker_state
    _worker_state = (make_detector(settings), settings)
    collector.resume()  # a worker's start is over too (it ran the program's module: base/collector.py)


class WorkerStartError(Exception):
    """A worker process could not get ready (its models did not load, say):
    every image would fail the same way, so the run stops."""


_start_error: str | None = None  # why this worker's initializer failed


def _guarded_init(initializer, *args) -> None:
    """Run the initializer; a failure is kept, so that the worker's tasks
    report it (an initializer that raises only breaks the pool, reason lost).
    First the worker ignores SIGINT, which it was started with blocked, and
    unblocks it: a Ctrl-C pending since it started is dropped."""
    global _start_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        initializer(*args)
    except Exception as e:
        _start_error = f"a worker process could not start: {type(e).__name__}: {e}"


def _guarded_work(work, task: Task) -> Outcome:
    if _start_error is not None:
        raise WorkerStartError(_start_error)
    return work(task)


def _work(task: Task) -> Outcome:
    detector, settings = _worker_state
    return process_one(detector, settings, task)


MAX_JOBS_PER_CPU = 4  # more workers than this per CPU only add memory (each holds its models)


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def check_jobs(jobs: int) -> None:
    """ValueError for a --jobs no machine is helped by: above MAX_JOBS_PER_CPU
    times the CPUs this process may use."""
    cpus = usable_cpus()
    if jobs > MAX_JOBS_PER_CPU * cpus:
        raise ValueError(f"--jobs {jobs}: more than {MAX_JOBS_PER_CPU} workers per CPU "
                         f"({cpus} CPU{'s' * (cpus > 1)} usable here); each worker loads its own "
                         f"copy of the models and numpy, so more only costs memory: use at most "
                         f"{MAX_JOBS_PER_CPU * cpus}, or 0 for one per CPU")


def resolve_jobs(jobs: int) -> int:
    """--jobs 0 means one worker per CPU this process may use."""
    return jobs if jobs > 0 else usable_cpus()


STOPS = (signal.SIGINT, signal.SIGTERM)
RESULT_WAIT_SECONDS = 0.05  # how long a stop may be put off while a result is awaited


@contextmanager
def _stops_put_off():
    """SIGINT and SIGTERM arriving inside the block are handled when it ends,
    by the handlers they were meant for. Every call into the process pool is
    made inside one: a KeyboardInterrupt raised in the pool's own code can
    leave one of its locks held (a Condition's __exit__ is Python code), and
    the pool's manager thread would then hang the program's exit. Only in the
    main thread, where signals are handled.

    signal.signal() first runs the handlers of signals already waiting, and
    the real one may raise: then it has changed nothing, and the handlers
    swapped so far are put back all the same (a recorder left in place would
    swallow every later stop)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    old_handlers = {}
    try:
        for sig in STOPS:
            old_handlers[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
        yield
    finally:
        stopped = None
        for sig, handler in old_handlers.items():
            while True:
                try:
                    signal.signal(sig, handler)
                    break
                except KeyboardInterrupt as e:  # a stop handled on the way: first put everything back
                    stopped = stopped or e
        if stopped is not None:
            raise stopped
        if received:
            signal.raise_signal(received[-1])


@contextmanager
def _workers_may_start():
    """Around a call that may start worker processes: stops are put off (a
    process cut off halfway through its launch would print a traceback of its
    own), and SIGINT is blocked in this thread.

    Worker processes must not see the terminal's Ctrl-C: the parent decides
    when they stop. A child inherits its parent's signal mask through exec,
    so each worker starts with SIGINT blocked, then ignores it and unblocks
    it (`_guarded_init`): a Ctrl-C that reached it in between is dropped
    there. (Ignoring SIGINT in the parent instead would lose a Ctrl-C that the
    kernel hands to one of its other threads, OpenBLAS's say.)"""
    with _stops_put_off():
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _ready() -> None:
    """A task that does nothing: submitting one per worker starts them all."""


class _Workers:
    """A process pool started all at once (spawn: fresh interpreters, so the
    thread limits apply before numpy loads) and stoppable at once."""

    def __init__(self, processes: int, initializer, initargs):
        # the pool's machinery (about 10 ms of imports): only when worker processes are started
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import resource_tracker

        context = multiprocessing.get_context("spawn")
        self.executor = None
        # multiprocessing's resource tracker, when it starts, unblocks SIGINT: start it first
        resource_tracker.ensure_running()
        try:
            with _workers_may_start():
                self.executor = ProcessPoolExecutor(processes, context, _guarded_init,
                                                    (initializer, *initargs))
                # the executor starts a process per submission until it has them all
                for _ in range(processes):
                    self.executor.submit(_ready)
        except BaseException:  # a stop once they started: none of them is left behind
            if self.executor is not None:
                self.stop()
            raise

    def submit(self, fn, *args):
        with _workers_may_start():  # the pool may start a worker here (one that died, or not yet started)
            return self.executor.submit(fn, *args)

    @staticmethod
    def result(future):
        """The future's result; a stop meanwhile is handled within
        RESULT_WAIT_SECONDS, outside the pool's code."""
        from concurrent.futures import TimeoutError as ResultNotReady  # not the builtin before 3.11; see __init__

        while True:
            with _stops_put_off():
                try:
                    return future.result(RESULT_WAIT_SECONDS)
                except ResultNotReady:
                    pass

    def stop(self) -> None:
        """Kill the workers now (a running detection is not waited for), then
        let the pool's manager thread end: left running, it races the
        interpreter's exit ("Exception ignored ... Bad file descriptor")."""
        with _stops_put_off():
            processes = list((getattr(self.executor, "_processes", None) or {}).values())
            manager = getattr(self.executor, "_executor_manager_thread", None)
            self.executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(5)
                if process.is_alive():
                    process.kill()
                    process.join(5)
            if manager is not None:
                manager.join(5)


WORKER_DIED = "the worker process died on this image (out of memory?)"


class TaskStream:
    """Tasks from a list or a lazy iterable (video frames decoded on the way),
    read ahead only as far as asked, and let go of once done."""

    def __init__(self, tasks):
        self.source = iter(tasks)
        self.read: dict = {}  # index -> Task, from the oldest still needed
        self.count = 0  # tasks read so far

    def available(self, index: int) -> bool:
        """Whether task `index` exists (reading ahead to it)."""
        while self.count <= index:
            task = next(self.source, None)
            if task is None:
                return False
            self.read[self.count] = task
            self.count += 1
        return True

    def __getitem__(self, index: int) -> Task:
        return self.read[index]

    def release_before(self, index: int) -> None:
        for done in [i for i in self.read if i < index]:
            del self.read[done]


def pool_outcomes(tasks: Sequence[Task], settings: Settings, processes: int,
                  work=None, initializer=None) -> Iterator[Outcome]:
    """Outcomes in task order from `processes` workers, at most 8 tasks per
    worker in flight. If a worker dies (killed by the kernel for lack of
    memory, a crash in native code), the tasks in flight are run again one at
    a time in a new pool; the one whose worker dies then gets an error
    Result, and the batch goes on. A worker that cannot start (its
    initializer failed) raises WorkerStartError. work/initializer: for tests."""
    from concurrent.futures.process import BrokenProcessPool  # the pool's: see _Workers

    work = work or _work
    tasks = TaskStream(tasks)

    def start():
        return _Workers(processes, initializer or _init_worker, (settings, os.getpid()))

    workers = start()
    # Results come out in task order, so a slow image at the head holds back the
    # rest: a deep window keeps the other workers busy meanwhile.
    window = 8 * processes
    in_flight: deque = deque()  # (index, future), in task order
    next_index, alone = 0, 0  # alone: how many upcoming tasks run one at a time
    try:
        while tasks.available(next_index) or in_flight:
            try:
                while len(in_flight) < (1 if alone else window) and tasks.available(next_index):
                    in_flight.append((next_index, workers.submit(_guarded_work, work, tasks[next_index])))
                    next_index += 1
                outcome = workers.result(in_flight[0][1])
                in_flight.popleft()
            except BrokenProcessPool:
                first = in_flight[0][0] if in_flight else next_index
                workers.stop()
                workers = start()
                in_flight.clear()
                if not alone:  # run the tasks that were in flight again, one at a time
                    alone, next_index = max(1, next_index - first), first
                    continue
                # running alone, this task killed its worker
                outcome = Outcome(Result(tasks[first].path, None, None, None, WORKER_DIED), 0.0)
                next_index = first + 1
            alone = max(0, alone - 1)
            tasks.release_before(in_flight[0][0] if in_flight else next_index)
            yield outcome
    finally:
        workers.stop()


def run_tasks(tasks: Sequence[Task], settings: Settings, jobs: int = 1,
              detector=None) -> Iterator[Outcome]:
    """Outcomes in the order of tasks (a list, or a lazy iterable, read as
    the work goes). jobs == 1 runs here (with `detector` if given); jobs > 1
    starts min(jobs, len(tasks)) worker processes (jobs for an iterable), which
    are stopped when the iterator finishes, fails or is closed."""
    processes = min(resolve_jobs(jobs), len(tasks)) if isinstance(tasks, list) else resolve_jobs(jobs)
    if processes <= 1:
        detector = detector if detector is not None else make_detector(settings)
        for task in tasks:
            yield process_one(detector, settings, task)
        return
    yield from pool_outcomes(tasks, settings, processes)


def detect_images(paths: Sequence[str], *, models=None, min_face: int = defaults.MIN_FACE,
                  t1: float = defaults.T1, t2: float = defaults.T2, t3: float = defaults.T3,
                  jobs: int = 1, max_pixels: int = defaults.MAX_PIXELS, landmarks: bool = True) -> Iterator[Result]:
    """Detect faces in each image file of `paths`, yielding one Result per path,
    in input order (repeats included). The models are loaded before this
    returns, so a bad model folder (ModelError) or bad parameters (ValueError)
    raise here, not on the first next(). An unreadable image gives a Result
    with `error` set and the iteration goes on. jobs: worker processes (0 =
    one per CPU; more than MAX_JOBS_PER_CPU per CPU is a ValueError; never more
    workers than paths). landmarks=False gives faces with empty landmarks."""
    settings = Settings(None if models is None else os.fspath(models), min_face, t1, t2, t3,
                        max_pixels, landmarks)
    check_jobs(jobs)
    detector = make_detector(settings)
    tasks = [Task(os.fspath(path)) for path in paths]
    return _results(run_tasks(tasks, settings, jobs, detector))


def _results(outcomes) -> Iterator[Result]:
    with closing(outcomes):
        for outcome in outcomes:
            yield outcome.result
