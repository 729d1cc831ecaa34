"""`make bench`, the side-by-side part: our detector and OpenFace's C++ (the
oracle of ../shared/tools/oracle) timed on this machine in the same minutes,
and the speed targets, each printed beside its measurement (PASS or MISS).
Asserts nothing.

Whole commands are timed by ../shared/tools/oracle/sidebyside.py (interleaved,
rotated rounds; per-round ratios are the steady figure on a machine whose
speed drifts) and per-image times compared by per_image.py, both called as
they are, not re-implemented.
"""
from __future__ import annotations

import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD_HINT = "../shared/tools/oracle/build.sh"  # from the project's folder: builds the C++ oracle, once
MODEL = "models/openface-2.2.0/MTCNN_detector.txt"
ONE = "corpus/dlib__000179_02159509.jpg"  # 150x150: a run of it is about the start-up
BIG = "corpus/deepface__img49.jpg"  # a 12.6-megapixel photo

# the speed targets (the team's speed issue), side by side on this machine
STARTUP_OVER_IMPORT_S = 0.05  # `mtcnn detect one.jpg` over `python -c "import numpy, cv2"`
FIRST_COMPILE_S = 4.0  # compiling the kernels on a machine that never ran the detector
JOBS_SPEEDUP = 1.85  # --jobs 2 over --jobs 1 (on 2 cores)
BIG_PEAK_MIB = 300  # peak RSS of `mtcnn detect` on the 12 MP photo
CROPS_OVERHEAD = 0.05  # `mtcnn detect --crops DIR` over the same run without, 76 images, --jobs 1
PEER_DETECTION_LEAD = 2.5  # pymtcnn on ONNX Runtime (one thread) over ours: detection alone, summed over images
PEER_WHOLE_LEAD = 2.0  # the same, whole processes over the 76 images
PEER_HINT = "benchmarks/peer_setup.sh"  # from the project's folder: sets up the peer, once


def oracle_build() -> Path | None:
    """The oracle's build folder when it holds a built oracle: $ORACLE_BUILD,
    else ${TMPDIR:-/tmp}/openface-oracle (where build.sh puts it)."""
    folder = Path(os.environ.get("ORACLE_BUILD") or Path(os.environ.get("TMPDIR") or "/tmp", "openface-oracle"))
    return folder if os.access(folder / "bin" / "oracle", os.X_OK) else None


def peer_folder() -> Path | None:
    """The peer's folder when peer_setup.sh has set it up: $MTCNN_PEER, else
    ${TMPDIR:-/tmp}/pymtcnn-peer (a venv with pymtcnn[onnx], its models in models/)."""
    folder = Path(os.environ.get("MTCNN_PEER") or Path(os.environ.get("TMPDIR") or "/tmp", "pymtcnn-peer"))
    return folder if os.access(folder / "bin" / "python", os.X_OK) and (folder / "models").is_dir() else None


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


class Runner:
    """How this bench starts whole commands: ours as an installed `mtcnn` is
    started (the script beside this interpreter), bytecode cached as a normal
    install's is (PYTHONDONTWRITEBYTECODE dropped, a cache folder of the
    bench's own), one BLAS thread; the C++ with one BLAS and one OpenCV thread."""

    def __init__(self, shared: Path, tmp: Path, oracle: Path | None, peer: Path | None = None):
        self.shared, self.tmp, self.oracle, self.peer = shared, tmp, oracle, peer
        self.tools = shared / "tools" / "oracle"
        script = Path(sys.executable).with_name("mtcnn")
        self.mtcnn = shlex.quote(str(script)) if script.exists() else \
            f"{shlex.quote(sys.executable)} -c 'from mtcnn_cli.cli import main; main()'"
        self.python = shlex.quote(sys.executable)
        self.env = (f"env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX={shlex.quote(str(tmp / 'pyc'))} "
                    "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1")

    def ours(self, arguments: str) -> str:
        return f"{self.env} {self.mtcnn} {arguments}"

    def cpp(self, arguments: str) -> str:
        return (f"OPENBLAS_NUM_THREADS=1 {shlex.quote(str(self.oracle / 'bin' / 'oracle'))} --quiet "
                f"--cv-threads 1 --model {MODEL} {arguments}")

    def peer_detect(self, arguments: str) -> str:
        """pymtcnn timed by the oracle's peer_detect.py: ONNX Runtime on one thread
        (OpenCV's own threads left as pymtcnn leaves them), one BLAS thread."""
        return (f"OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENFACE_MODELS_DIR={shlex.quote(str(self.peer / 'models'))} "
                f"{shlex.quote(str(self.peer / 'bin' / 'python'))} {shlex.quote(str(self.tools / 'peer_detect.py'))} "
                f"--threads 1 {arguments}")

    def side_by_side(self, name: str, commands: dict, rounds: int, warmup: int, baseline: str) -> dict:
        """sidebyside.py over the commands; its table printed; returns its JSON
        ({"wall_s": {name: [per round]}, ...})."""
        out = self.tmp / f"{name}.json"
        cmd = [sys.executable, str(self.tools / "sidebyside.py"), "--rounds", str(rounds), "--warmup", str(warmup),
               "--cwd", str(self.shared), "--baseline", baseline, "--json", str(out),
               *(f"{k}={v}" for k, v in commands.items())]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"bench: sidebyside.py ({name}) failed:\n{done.stderr[-2000:]}")
        print(done.stdout.rstrip())
        return json.loads(out.read_text())


def spread(values) -> str:
    return f"{min(values):.3f}..{max(values):.3f} (median {statistics.median(values):.3f})"


# --- detection alone, per image ---------------------------------------------------------

def per_image(runner: Runner, images: list[str], ours_child, rounds: int, repeat: int) -> dict:
    """Rounds of our per-image measurement (`bench.py --child corpus`), the
    oracle's --repeat and the peer's (whichever are set up), alternated;
    per_image.py's table printed. Returns the first of our rounds (stages,
    GFLOP/s, memory: bench.report prints them) with the C++ times of this
    machine ("cpp_ms": the minimum of its rounds) when the oracle ran."""
    ours_files, cpp_files, peer_files, first = [], [], [], None
    quoted = " ".join(map(shlex.quote, images))
    for r in range(rounds):
        result = ours_child()
        first = first or result
        path = runner.tmp / f"ours{r}.json"
        path.write_text(json.dumps(result))
        ours_files.append(str(path))
        if runner.oracle:
            out = runner.tmp / f"cpp{r}.json"
            _run_timer(runner, runner.cpp(f"--repeat {repeat} --out {shlex.quote(str(out))} {quoted}"), "the oracle")
            cpp_files.append(str(out))
        if runner.peer:
            out = runner.tmp / f"peer{r}.json"
            _run_timer(runner, runner.peer_detect(f"--repeat {repeat} --out {shlex.quote(str(out))} {quoted}"),
                       "the peer (pymtcnn)")
            peer_files.append(str(out))
    against = "cpp" if runner.oracle else "peer"
    print(f"\ndetection alone, per image, side by side ({rounds} alternated rounds; ours: median of "
          f"{repeat} runs per image" + (f", the C++: --repeat {repeat}" if runner.oracle else "")
          + (f", pymtcnn: --repeat {repeat}" if runner.peer else "") + "):")
    sources = ["ours=" + ",".join(ours_files)] + (["cpp=" + ",".join(cpp_files)] if cpp_files else []) \
        + (["peer=" + ",".join(peer_files)] if peer_files else [])
    table = subprocess.run([sys.executable, str(runner.tools / "per_image.py"), "--ours", "ours", "--against",
                            against, *sources], capture_output=True, text=True, check=False)
    text = table.stdout if table.returncode == 0 else f"(per_image.py failed: {table.stderr[-500:]})"
    print(text[text.find("totals"):].rstrip())  # its table is the one bench.report prints, with faces
    ours_sums = [sum(row["ms"] for row in json.loads(Path(f).read_text())["rows"]) for f in ours_files]
    if peer_files:
        peer_sums = [sum(_medians(f).values()) for f in peer_files]
        leads = [p / o for p, o in zip(peer_sums, ours_sums)]
        best = statistics.median(leads)
        print(f"TARGET detection alone against pymtcnn on ONNX Runtime (one thread), per-round ratio of the sums, "
              f"pymtcnn / ours: {spread(leads)}; target at least {PEER_DETECTION_LEAD:.1f}x: "
              f"{verdict(best >= PEER_DETECTION_LEAD)}")
    if not cpp_files:
        return first
    cpp_runs = [_medians(f) for f in cpp_files]
    ratios = [o / sum(c.values()) for o, c in zip(ours_sums, cpp_runs)]
    print(f"per-round ratio of the sums, ours / C++: {spread(ratios)}")
    for row in first["rows"]:
        times = [c[row["path"]] for c in cpp_runs if row["path"] in c]
        row["cpp_ms"] = min(times) if times else None
    first["cpp_label"] = f"C++ on this machine, min of {rounds} rounds"
    first["round_ratios"] = ratios
    return first


def _medians(path: str) -> dict:
    """{image: ms_median} of an oracle or peer_detect.py JSON."""
    return {im["path"]: im["ms_median"] for im in json.loads(Path(path).read_text())["images"] if "ms_median" in im}


def _run_timer(runner: Runner, command: str, what: str) -> None:
    done = subprocess.run(["bash", "-c", command], cwd=runner.shared, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 3):  # 3: an image the C++ could not take, written as an error
        raise SystemExit(f"bench: {what} failed:\n{done.stderr[-2000:]}")


# --- whole commands -----------------------------------------------------------------

def whole_process(runner: Runner, images: list[str], rounds: int) -> dict:
    """Whole commands side by side: ours, the C++ and pymtcnn (peer_detect.py,
    one run per image), whichever are set up; the target against the peer."""
    arguments = " ".join(map(shlex.quote, images))
    commands = {"ours": runner.ours(f"detect --format json -o {runner.tmp / 'whole_ours.json'} {arguments}")}
    if runner.oracle:
        commands["cpp"] = runner.cpp(f"--out {runner.tmp / 'whole_cpp.json'} {arguments}")
    if runner.peer:
        commands["peer"] = runner.peer_detect(f"--out {runner.tmp / 'whole_peer.json'} {arguments}")
    base = "cpp" if runner.oracle else "ours"
    print(f"\nwhole process, {len(images)} images, one thread, {rounds} rounds + 1 warm-up (ratios to the "
          f"{'C++' if runner.oracle else 'ours'}" + ("; pymtcnn: peer_detect.py" if runner.peer else "") + "):")
    measured = runner.side_by_side("whole", commands, rounds, 1, base)
    if runner.peer:
        walls = measured["wall_s"]
        leads = [p / o for p, o in zip(walls["peer"], walls["ours"])]
        best = statistics.median(leads)
        print(f"TARGET whole process against pymtcnn, per round pymtcnn / ours: {spread(leads)}; target at least "
              f"{PEER_WHOLE_LEAD:.1f}x: {verdict(best >= PEER_WHOLE_LEAD)}")
    return measured


def target_startup(runner: Runner, rounds: int) -> None:
    print(f"\nstart-up: `mtcnn detect {ONE}` against `python -c \"import numpy, cv2\"` (same interpreter), "
          f"{rounds} rounds + 2 warm-up:")
    commands = {"ours": runner.ours(f"detect --format json -o {runner.tmp / 'one.json'} {ONE}"),
                "import": f"{runner.env} {runner.python} -c 'import numpy, cv2'",
                "python": f"{runner.env} {runner.python} -c pass"}
    if runner.oracle:
        commands["cpp"] = runner.cpp(f"--out {runner.tmp / 'one_cpp.json'} {ONE}")
    walls = runner.side_by_side("startup", commands, rounds, 2, "import")["wall_s"]
    over = [a - b for a, b in zip(walls["ours"], walls["import"])]
    late = statistics.median(over)
    print(f"TARGET start-up: ours over the import, per round {min(over):.3f}..{max(over):.3f} s, median "
          f"{late:.3f} s; target at most {STARTUP_OVER_IMPORT_S:.2f} s: {verdict(late <= STARTUP_OVER_IMPORT_S)}")


def target_first_run(runner: Runner, runs: int = 2) -> None:
    """`mtcnn detect -v one.jpg` with an empty kernel cache (a fresh machine):
    the time it says it spent readying the kernels, and the whole run."""
    print(f"\nfirst run: `mtcnn detect -v {ONE}` with an empty MTCNN_CACHE_DIR, {runs} runs:")
    compile_s = []
    for r in range(runs):
        with tempfile.TemporaryDirectory(prefix="mtcnn-bench-cache-", dir=runner.tmp) as cache:
            cmd = f"MTCNN_CACHE_DIR={shlex.quote(cache)} " + runner.ours(f"detect -v --format json -o "
                                                                       f"{runner.tmp / 'first.json'} {ONE}")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(["bash", "-c", cmd], cwd=runner.shared, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - start
            cpu = _cpu(before)
        said = [line for line in done.stderr.splitlines() if "readied the compiled kernels in" in line]
        if done.returncode or not said:
            print(f"  run {r + 1} failed: {done.stderr.strip()[-500:]}")
            return
        seconds = float(said[0].split(" in ")[1].split()[0])
        compile_s.append(seconds)
        spoke = [line for line in done.stderr.splitlines() if "compiling" in line]
        print(f"  run {r + 1}: kernels readied in {seconds:.2f} s, whole run {wall:.2f} s wall, {cpu:.2f} s CPU"
              + (f"; said: {spoke[0]}" if spoke else "; said nothing before compiling"))
    best = min(compile_s)
    print(f"TARGET first run: compiling the kernels {best:.2f} s (min of {runs}); target at most "
          f"{FIRST_COMPILE_S:.0f} s: {verdict(best <= FIRST_COMPILE_S)}")


def target_jobs(jobs: dict | None, threads: int) -> None:
    if not jobs:
        print("\nTARGET --jobs: not measured (the jobs measurement failed)")
        return
    ratios = jobs.get("round_speedups") or [jobs["batch"]["1"] / jobs["batch"][str(threads)]]
    best = statistics.median(ratios)
    print(f"\nTARGET --jobs {threads} over --jobs 1 ({jobs['images']} images, whole runs, per round): "
          f"{spread(ratios)}; target at least {JOBS_SPEEDUP:.2f}x on 2 cores: "
          + (verdict(best >= JOBS_SPEEDUP) if threads == 2 else f"not applicable ({threads} CPUs)"))


def target_crops(runner: Runner, images: list[str], rounds: int, threads: int) -> None:
    """Whole `mtcnn detect` runs over the images with and without `--crops
    DIR` (arcface, the default; each run into a new folder, as a first run
    writes them), in interleaved rounds (the runs of a round seconds apart,
    so that the machine's drift between them is small).

    --jobs 1, the target's: 8 x rounds rounds of three runs, the plain run
    twice. The figure is each round's crops run over the mean of its two
    plain runs, and its median over the rounds; the second plain run over the
    first is a control, printed beside it: the same command, so its spread is
    this machine's noise, and its median how far a figure here can be off
    with no difference at all. Then one worker per CPU, 2 x rounds rounds of
    the pair, for information. CPU times' ratios beside the wall times'."""
    arguments = " ".join(map(shlex.quote, images))
    out = runner.tmp / "crops"
    out.mkdir(exist_ok=True)

    def command(jobs: int, crops: bool) -> str:  # each run makes a fresh folder, so that they differ by --crops alone
        return (f"d=$(mktemp -d {shlex.quote(str(out))}/runXXXXXX) && "
                + runner.ours(f"detect --format jsonl -o \"$d/faces.jsonl\" --jobs {jobs} "
                              + ("--crops \"$d/crops\" " if crops else "") + arguments))

    for jobs in sorted({1, threads}):
        count = 8 * rounds if jobs == 1 else 2 * rounds
        commands = {f"plain{jobs}": command(jobs, False), f"crops{jobs}": command(jobs, True)}
        if jobs == 1:
            commands["again1"] = command(1, False)
        print(f"\n--crops, --jobs {jobs}: whole `mtcnn detect` runs over the {len(images)} images with and without "
              f"`--crops DIR`{' (the plain run twice)' if jobs == 1 else ''}, {count} rounds + 1 warm-up:")
        measured = runner.side_by_side(f"crops{jobs}", commands, count, 1, f"plain{jobs}")
        walls, cpus = measured["wall_s"], measured["cpu_s"]
        plains = [f"plain{jobs}"] + (["again1"] if jobs == 1 else [])
        added = _added(walls, f"crops{jobs}", plains)
        median = statistics.median(added)
        line = (f"crops add, --jobs {jobs}, per round {100 * min(added):+.1f}%..{100 * max(added):+.1f}% "
                f"(median {100 * median:+.1f}%; CPU time: median "
                f"{100 * statistics.median(_added(cpus, f'crops{jobs}', plains)):+.1f}%)")
        if jobs == 1:
            control = _added(walls, "again1", ["plain1"])
            print(f"  control, the plain run again over the plain run, per round {100 * min(control):+.1f}%.."
                  f"{100 * max(control):+.1f}% (median {100 * statistics.median(control):+.1f}%): this machine's noise")
            print(f"TARGET {line}; target at most {100 * CROPS_OVERHEAD:.0f}%: {verdict(median <= CROPS_OVERHEAD)}")
        else:
            print(f"  {line} (the target is for --jobs 1)")


def _added(times: dict, name: str, bases: list[str]) -> list[float]:
    """Per round: name's time over the mean of the bases' times, less 1."""
    return [t / (sum(b) / len(b)) - 1 for t, *b in zip(times[name], *(times[base] for base in bases))]


def target_memory(runner: Runner, runs: int = 2) -> None:
    print(f"\n12 MP photo ({BIG}): peak memory of whole runs ({runs} each; ours first, the C++ beside):")
    ours = []
    for _ in range(runs):
        ours.append(_peak(runner.ours(f"detect --quiet --format json -o {runner.tmp / 'big.json'} {BIG}"),
                          runner.shared))
    line = f"  ours {min(ours):.0f} MiB (runs: {', '.join(f'{m:.0f}' for m in ours)})"
    if runner.oracle:
        cpp = [_peak(runner.cpp(f"--out {runner.tmp / 'big_cpp.json'} {BIG}"), runner.shared) for _ in range(runs)]
        line += f"; C++ {min(cpp):.0f} MiB"
    print(line)
    print(f"TARGET 12 MP peak memory: {min(ours):.0f} MiB; target at most {BIG_PEAK_MIB} MiB: "
          f"{verdict(min(ours) <= BIG_PEAK_MIB)}")


def big_side_by_side(runner: Runner, rounds: int) -> None:
    print(f"\n12 MP photo, whole runs side by side, {rounds} rounds + 1 warm-up:")
    runner.side_by_side("big", {"ours": runner.ours(f"detect --format json -o {runner.tmp / 'big.json'} {BIG}"),
                                "cpp": runner.cpp(f"--out {runner.tmp / 'big_cpp.json'} {BIG}")}, rounds, 1, "cpp")


def _peak(command: str, cwd: Path) -> float:
    """Peak RSS in MiB of one command, measured by GNU time's wait4 (exact for
    the process itself, whatever this process's other children did)."""
    report = subprocess.run(["python3", "-c", _WAIT4, command], cwd=cwd, capture_output=True, text=True, check=False)
    if report.returncode:
        raise SystemExit(f"bench: {command[:120]} failed:\n{report.stderr[-1000:]}")
    return float(report.stdout) / 1024


# one child, reaped with wait4: its own peak, not the largest of all children so far (bash -c
# runs a lone command in its own place)
_WAIT4 = ("import os, subprocess, sys\n"
          "p = subprocess.Popen(['bash', '-c', sys.argv[1]], stdout=subprocess.DEVNULL, "
          "stderr=subprocess.PIPE)\n"
          "err = p.stderr.read()\n"
          "_, status, usage = os.wait4(p.pid, 0)\n"
          "if status:\n    sys.stderr.write(err.decode(errors='replace')); sys.exit(1)\n"
          "print(usage.ru_maxrss)\n")


def _cpu(before) -> float:
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
