"""The robustness soak: hostile inputs thrown at `mtcnn compare`,
`mtcnn detect --resume` and the image and model readers, counting what must
never happen: a traceback (an exception other than a clean exit), a hang, or
unbounded memory.

    python -m tests.soak --seconds 600     (make soak: the long version)
    tests/test_soak.py                     (make test: a few seconds of it)

Each case is one hostile file: JSON/JSONL/CSV detection files mutated from
valid ones (truncated, bytes flipped, values replaced by huge or 5,000-digit
integers, strings, nesting 100,000 deep, over-long fields and lines), the
same lines as a --resume file, and special files (FIFOs, sockets, links to
/dev/zero and /dev/null, character devices) where an image, a model file, a
REF or OURS is expected. compare and detect run in this process through
click's runner (the detector is the tests' stand-in); special files that
could block run in a child process with a timeout."""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE_SECONDS = 20  # a case taking longer is counted as a hang


def valid_image_record(rng, path="a.jpg"):
    faces = [{"x": rng.uniform(0, 500), "y": rng.uniform(0, 400), "width": rng.uniform(20, 99),
              "height": rng.uniform(20, 99), "confidence": rng.uniform(0.7, 1)} for _ in range(rng.randint(0, 3))]
    return {"path": path, "width": 640, "height": 480, "faces": faces}


HOSTILE_VALUES = [10 ** 400, "9" * 5000, -1e308, "x" * 200_000, None, True, [], {}, "NaN", 1e-320]


def deep(depth=100_000):
    return "[" * depth + "]" * depth


def mutate_text(rng, text: str) -> str:
    """One hostile change to a valid detection file's text."""
    kind = rng.randrange(9)
    if kind == 0 and text:
        return text[:rng.randrange(len(text))]  # truncated
    if kind == 1 and text:
        at = rng.randrange(len(text))
        return text[:at] + chr(rng.choice([0, 0x7B, 0x5B, 0x22, 0x2C, 0x0A, 0xFFFF, 0x1F600])) + text[at + 1:]
    if kind == 2:
        return text.replace("640", str(10 ** 400), 1)
    if kind == 3:
        return text.replace("480", "9" * 5000, 1)
    if kind == 4 and '"x": ' in text:
        at = text.index('"x": ') + 5
        return text[:at] + deep() + "," + text[at:]
    if kind == 5:
        return text.replace('"a.jpg"', '"' + "x" * 300 + '/' + "y" * 200_000 + '"', 1)
    if kind == 6:
        value = rng.choice(HOSTILE_VALUES)
        literal = json.dumps(value) if not (isinstance(value, str) and value.isdigit()) else value
        return text.replace('"width": 640', f'"width": {literal}', 1)
    if kind == 7:
        return deep() if rng.random() < 0.5 else "{" + '"images": ' + deep() + "}"
    return "".join(rng.choice(text) for _ in range(min(len(text), 300))) if text else "\x00"


def detection_texts(rng):
    """(name, text) of a valid file of each format, to be mutated."""
    images = [valid_image_record(rng, f"img{k}.jpg") for k in range(3)]
    images[0]["path"] = "a.jpg"
    as_json = json.dumps({"params": {"min_face": 60, "t1": 0.6, "t2": 0.7, "t3": 0.7}, "images": images})
    as_jsonl = "".join(json.dumps(i) + "\n" for i in images)
    rows = ["path,face,x,y,width,height,confidence,error"]
    for i in images:
        for k, f in enumerate(i["faces"]):
            rows.append(f"{i['path']},{k},{f['x']},{f['y']},{f['width']},{f['height']},{f['confidence']},")
    rows.append('a.jpg,,,,,,,' if not images[0]["faces"] else "")
    return [("set.json", as_json), ("set.jsonl", as_jsonl), ("set.csv", "\n".join(rows) + "\n")]


class Tally:
    def __init__(self):
        self.cases, self.tracebacks, self.hangs, self.slowest = 0, [], [], 0.0

    def record(self, name, seconds, problem=None):
        self.cases += 1
        self.slowest = max(self.slowest, seconds)
        if problem:
            self.tracebacks.append(f"{name}: {problem}")
        if seconds > CASE_SECONDS:
            self.hangs.append(f"{name}: {seconds:.1f} s")


def invoke(args, stdin=None):
    from click.testing import CliRunner

    from mtcnn_cli.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], input=stdin)
    problem = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        problem = f"{type(result.exception).__name__}: {str(result.exception)[:200]}"
    elif "Traceback" in result.stderr or "unexpected error" in result.stderr:
        # a traceback, or the catch-all line a crash becomes (a verdict over many
        # images may fill many lines: that is not a problem)
        problem = "a traceback or an unexpected error"
    elif result.exit_code not in (0, 1, 2):
        problem = f"exit {result.exit_code}"
    return problem


def compare_case(rng, folder: Path, tally: Tally):
    name, text = rng.choice(detection_texts(rng))
    bad = folder / f"bad-{name}"
    bad.write_bytes(mutate_text(rng, text).encode("utf-8", "surrogatepass"))
    good = folder / "good.json"
    good.write_text(json.dumps({"images": [valid_image_record(rng)]}))
    args = ["compare", "--cpp", bad, good] if rng.random() < 0.5 else ["compare", "--cpp", good, bad]
    started = time.monotonic()
    problem = invoke(args)
    tally.record(f"compare {bad.name}", time.monotonic() - started, problem)


def resume_case(rng, folder: Path, tally: Tally):
    from tests.detect_support import StandInDetector, make_image
    from mtcnn_cli.run import batch

    image = folder / "a.png"
    if not image.exists():
        make_image(image, 1)
    _, text = detection_texts(rng)[1]
    out = folder / "out.jsonl"
    out.write_bytes(mutate_text(rng, text).encode("utf-8", "surrogatepass"))
    saved = batch.detector_class
    batch.detector_class = lambda: StandInDetector
    cwd = os.getcwd()
    os.chdir(folder)
    started = time.monotonic()
    try:
        problem = invoke(["detect", "a.png", "--resume", "-o", "out.jsonl", "-q"])
    finally:
        os.chdir(cwd)
        batch.detector_class = saved
    tally.record("detect --resume", time.monotonic() - started, problem)


SPECIAL = ["fifo", "socket", "link to /dev/zero", "link to /dev/null", "char device", "link to a fifo",
           "dangling link", "folder"]


def make_special(path: Path, kind: str):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "link to /dev/null":
        path.symlink_to("/dev/null")
    elif kind == "char device":
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # a /dev/zero
        except PermissionError:
            path.symlink_to("/dev/zero")
    elif kind == "link to a fifo":
        os.mkfifo(path.with_suffix(".target"))
        path.symlink_to(path.with_suffix(".target"))
    elif kind == "dangling link":
        path.symlink_to(path.with_suffix(".nowhere"))
    elif kind == "folder":
        path.mkdir()
    return None


CHILD = "from mtcnn_cli.cli import main; main(prog_name='mtcnn')"


def special_case(rng, folder: Path, tally: Tally):
    """A special file where an image, a model file, REF or OURS is expected,
    in a child process (a blocking open must show as a hang, not stop us)."""
    kind = rng.choice(SPECIAL)
    role = rng.choice(["image", "model", "ref", "ours"])
    case = folder / f"case{tally.cases}"
    case.mkdir()
    keep = None
    if role == "image":
        keep = make_special(case / "x.jpg", kind)
        args = ["detect", case / "x.jpg", "--format", "jsonl"]
        # a stand-in free run: the real detector loads once per child
    elif role == "model":
        from mtcnn_cli.detector.models import export_models
        export_models(case / "models")
        victim = rng.choice(["PNet.dat", "RNet.dat", "ONet.dat", "MTCNN_detector.txt"])
        (case / "models" / victim).unlink()
        keep = make_special(case / "models" / victim, kind)
        args = ["models", "info", case / "models"]
    else:
        keep = make_special(case / "set.json", kind)
        good = case / "good.json"
        good.write_text(json.dumps({"images": [valid_image_record(rng)]}))
        args = ["compare", "--cpp", case / "set.json", good] if role == "ref" else \
            ["compare", "--cpp", good, case / "set.json"]
    started = time.monotonic()
    problem = None
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True,
                              timeout=CASE_SECONDS * 2, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdin=subprocess.DEVNULL, cwd=case)
        if b"Traceback" in done.stderr or done.returncode not in (0, 1, 2):
            problem = f"exit {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}"
    except subprocess.TimeoutExpired:
        problem = "timed out"
    seconds = time.monotonic() - started
    tally.record(f"{kind} as {role}", seconds if problem != "timed out" else CASE_SECONDS * 2, problem)
    if keep is not None:
        keep.close()


def peak_memory_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def soak(seconds: float, seed: int = 0, special_every: int = 10, verbose: bool = False) -> Tally:
    """Hostile cases for `seconds`; returns the tally."""
    rng = random.Random(seed)
    tally = Tally()
    folder = Path(tempfile.mkdtemp(prefix="mtcnn-soak-"))
    saved_cache = os.environ.get("MTCNN_CACHE_DIR")
    from mtcnn_cli.detector.native import cache_root

    kernels = cache_root() / "kernels" if cache_root() is not None else None
    if kernels is not None and kernels.is_dir():  # the compiled kernels: not compiled again per case
        shutil.copytree(kernels, folder / "cache" / "kernels")
    os.environ["MTCNN_CACHE_DIR"] = str(folder / "cache")
    deadline = time.monotonic() + seconds
    try:
        n = 0
        while time.monotonic() < deadline:
            work = folder / f"w{n}"
            work.mkdir()
            if n % special_every == special_every - 1:
                special_case(rng, work, tally)
            elif n % 2:
                resume_case(rng, work, tally)
            else:
                compare_case(rng, work, tally)
            shutil.rmtree(work, ignore_errors=True)
            n += 1
            if verbose and n % 50 == 0:
                print(f"{n} cases, {len(tally.tracebacks)} tracebacks, {len(tally.hangs)} hangs", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if saved_cache is None:
            os.environ.pop("MTCNN_CACHE_DIR", None)
        else:
            os.environ["MTCNN_CACHE_DIR"] = saved_cache
    return tally


def summary(tally: Tally, seconds: float) -> str:
    lines = [f"soak: {tally.cases} cases in {seconds:.0f} s, {len(tally.tracebacks)} tracebacks, "
             f"{len(tally.hangs)} hangs, slowest case {tally.slowest:.1f} s, peak memory "
             f"{peak_memory_mib():.0f} MiB"]
    lines += [f"  traceback: {t}" for t in tally.tracebacks[:20]]
    lines += [f"  hang: {h}" for h in tally.hangs[:20]]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    started = time.monotonic()
    print(f"soak for {args.seconds:.0f} s, seed {args.seed}", flush=True)
    tally = soak(args.seconds, args.seed, verbose=True)
    print(summary(tally, time.monotonic() - started))
    sys.exit(1 if tally.tracebacks or tally.hangs else 0)


if __name__ == "__main__":
    main()
