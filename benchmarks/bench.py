"""`make bench`: speed and memory of the detector on the shared corpus.

Prints, per image, its size, faces and milliseconds (median of repeats; and
"cold", with what is kept per image size dropped before each run) next to the
C++'s; per stage, milliseconds and share; the effective arithmetic rate; peak
memory; totals; a 12-megapixel image's time and memory; the gain of batching
RNet/ONet over a per-crop path of our own, measured in the same run; and
images per second of whole `mtcnn detect` runs over the corpus 8 times with
--jobs 1 and one worker per CPU, next to the time of a run on two small
images (about the start-up). It asserts nothing.

The C++ is OpenFace's own detector, the oracle of ../shared/tools/oracle, run
side by side when it is built ($ORACLE_BUILD, else ${TMPDIR:-/tmp}/openface-oracle):
per image in alternated rounds, whole processes in interleaved rounds with
per-round ratios (benchmarks/against.py). Without it, the ratio is to the
stored C++ times, from another machine: not comparable. pymtcnn on ONNX
Runtime, the peer, is timed the same way when benchmarks/peer_setup.sh has
set it up ($MTCNN_PEER, else ${TMPDIR:-/tmp}/pymtcnn-peer). Then the speed
targets, each beside its measurement (PASS or MISS).

Usage: python benchmarks/bench.py [--shared DIR] [--repeat N] [--rounds N] [--quick] [--only SECTIONS]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import against

STAGES = ("pnet", "rnet", "onet", "boxes")


def shared_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("MTCNN_SHARED"):
        return Path(os.environ["MTCNN_SHARED"])
    return Path(__file__).resolve().parent.parent.parent / "shared"


def network_macs(network, h: int, w: int, n: int = 1) -> int:
    """Multiply-accumulates of one forward pass over n inputs of h x w."""
    from mtcnn_cli.detector import layers
    from mtcnn_cli.detector.datfile import Conv, FullyConnected, MaxPool

    total, c, flat = 0, 3, None
    for layer in network.layers:
        if isinstance(layer, Conv):
            c_in, c_out, kh, kw = layer.kernels.shape
            h, w = h - kh + 1, w - kw + 1
            total += h * w * (c_in * kh * kw + 1) * c_out
            c = c_out
        elif isinstance(layer, MaxPool):
            h = layers.pooled_size(h, layer.kernel_y, layer.stride_y)
            w = layers.pooled_size(w, layer.kernel_x, layer.stride_x)
        elif isinstance(layer, FullyConnected):
            f_in, f_out = layer.weights.shape
            total += (h * w if flat is None and f_in == c else 1) * f_in * f_out
            flat = f_out
    return total * n


def image_macs(detector, trace: dict) -> int:
    cascade = detector.cascade
    macs = sum(network_macs(cascade.pnet, s["h_pyr"], s["w_pyr"]) for s in trace.get("scales", []))
    macs += network_macs(cascade.rnet, 24, 24, len(trace.get("pnet_boxes", ())))
    macs += network_macs(cascade.onet, 48, 48, len(trace.get("rnet_boxes", ())))
    return macs


class PerCropCascade:
    """Our own unbatched baseline: RNet and ONet run on one crop at a time."""

    def __init__(self, cascade):
        from mtcnn_cli.detector.cascade import Cascade

        self.inner = Cascade(cascade.pnet, cascade.rnet, cascade.onet)
        batched = self.inner.refine

        def one_at_a_time(network, img, boxes, size):
            outs = [batched(network, img, boxes[i:i + 1], size) for i in range(len(boxes))]
            if not outs:
                return batched(network, img, boxes, size)
            return np.concatenate([b for b, _ in outs]), np.concatenate([r for _, r in outs])

        self.inner.refine = one_at_a_time

    def run(self, *args, **kwargs):
        return self.inner.run(*args, **kwargs)


def timing_file() -> str:
    """The C++ times of this machine's kind: timed with AVX-512 kernels or with AVX2 ones."""
    try:
        with open("/proc/cpuinfo") as f:
            avx512 = any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        avx512 = False
    return "timing_mf60.json" if avx512 else "timing_mf60_avx2.json"


def load_corpus(shared: Path, quick: bool):
    timing = json.loads((shared / "reference" / "openface-2.2-cpp" / timing_file()).read_text())
    images = timing["images"]
    if quick:
        images = images[::8]
    return images


def conv_names(cascade) -> dict:
    """{(K, O): "PNet conv1 3->10 3x3", ...}: each convolution by its weight matrix's shape."""
    from mtcnn_cli.detector.datfile import Conv

    names = {}
    for net_name in ("pnet", "rnet", "onet"):
        convs = [layer for layer in getattr(cascade, net_name).layers if isinstance(layer, Conv)]
        for i, layer in enumerate(convs, 1):
            c_in, c_out, kh, kw = layer.kernels.shape
            names[(c_in * kh * kw + 1, c_out)] = f"{net_name[0].upper()}Net conv{i} {c_in}->{c_out} {kh}x{kw}"
    return names


def measure_convolutions(detector, images) -> dict:
    """{name: [seconds, multiply-accumulates]} per convolution layer over one more
    run of every image, each call timed (apart from the per-image times)."""
    from mtcnn_cli.detector import layers

    original, totals = layers.conv, {}
    names = conv_names(detector.cascade)

    def timed(maps, weights, kh, kw, slopes=None):
        start = time.perf_counter()
        out = original(maps, weights, kh, kw, slopes)
        seconds = time.perf_counter() - start
        k, o = weights.shape
        entry = totals.setdefault(names.get((k, o), f"{k - 1}->{o}"), [0.0, 0])
        entry[0] += seconds
        entry[1] += (k - 1) * out[0].size * o  # one multiply-add per weight and output
        return out

    layers.conv = timed
    try:
        for image in images:
            detector.detect(image)
    finally:
        layers.conv = original
    return totals


def measure(args) -> dict:
    """One process's measurements (BLAS threads fixed by the environment)."""
    import cv2

    from mtcnn_cli.detector.cascade import Detector, as_bgr_float

    shared = shared_dir(args.shared)
    t0 = time.perf_counter()
    detector = Detector(models=args.models)
    load_s = time.perf_counter() - t0
    rows, stage_totals, decoded = [], dict.fromkeys(STAGES, 0.0), []
    per_crop = PerCropCascade(detector.cascade)
    batched_s = unbatched_s = 0.0
    total_macs = 0
    for item in load_corpus(shared, args.quick):
        image = cv2.imread(str(shared / item["path"]), cv2.IMREAD_COLOR)
        decoded.append(image)
        img = as_bgr_float(image)
        trace = {}
        faces = detector.cascade.run(img, 60, 0.6, 0.7, 0.7, trace=trace)[0]
        cold = []
        for _ in range(args.repeat):
            detector.cascade.forget_image_sizes()
            start = time.perf_counter()
            detector.detect(image)
            cold.append(time.perf_counter() - start)
        cold_ms = statistics.median(cold) * 1000
        times, stages = [], []
        for _ in range(args.repeat):
            timings = {}
            start = time.perf_counter()
            detector.detect(image, timings=timings)
            times.append(time.perf_counter() - start)
            stages.append(timings)
        best = int(np.argsort(times)[len(times) // 2])
        ms = times[best] * 1000
        for k in STAGES:
            stage_totals[k] += stages[best].get(k, 0.0)
        macs = image_macs(detector, trace)
        total_macs += macs
        start = time.perf_counter()
        per_crop.run(img, 60, 0.6, 0.7, 0.7)
        unbatched_s += time.perf_counter() - start
        batched_s += times[best]
        rows.append({"path": item["path"], "w": image.shape[1], "h": image.shape[0], "faces": len(faces),
                     "ms": ms, "cold_ms": cold_ms, "cpp_ms": item.get("ms_median"), "macs": macs})
    return {"rows": rows, "stages": stage_totals, "load_s": load_s, "macs": total_macs,
            "convs": measure_convolutions(detector, decoded),
            "batched_s": batched_s, "unbatched_s": unbatched_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure_large(args) -> dict:
    """A 12-megapixel image (a corpus photo scaled to 4000x3000) and the same
    photo at 1000x750: time and peak memory, for linearity."""
    import cv2

    from mtcnn_cli.detector.cascade import Detector

    shared = shared_dir(args.shared)
    photo = cv2.imread(str(shared / "corpus" / "openface__sample6.jpg"), cv2.IMREAD_COLOR)
    detector = Detector(models=args.models)
    out = {}
    for w, h in ((1000, 750), (2000, 1500), (4000, 3000)):
        image = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
        detector.detect(image)
        start = time.perf_counter()
        detector.detect(image)
        out[f"{w}x{h}"] = (time.perf_counter() - start) * 1000
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


PASSES = 8  # the corpus this many times: a batch of a few hundred images


def link_corpus(batch: Path, shared: Path, items, passes: int) -> None:
    """batch/pass0 ... : links to the corpus images, `passes` times over."""
    for copy in range(passes):
        folder = batch / f"pass{copy}"
        folder.mkdir(parents=True)
        for item in items:
            (folder / Path(item["path"]).name).symlink_to(shared / item["path"])


def timed_detect(arguments, args, label: str) -> float:
    """Seconds of one whole `mtcnn detect ARGUMENTS --quiet` process."""
    cmd = [sys.executable, "-c", "from mtcnn_cli.cli import main; main()", "detect", *arguments,
           "--quiet"] + (["--models", args.models] if args.models else [])
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"bench: mtcnn detect ({label}) failed:\n{done.stderr}")
    return time.perf_counter() - start


def measure_jobs(args) -> dict:
    """Whole `mtcnn detect` runs, --jobs 1 and one worker per CPU, in
    JOBS_ROUNDS alternated rounds: seconds over the corpus PASSES times (links
    to its images in PASSES folders; the fastest round counts, and each
    round's own speed-up is kept), and seconds for two small images alone,
    about the start-up (interpreter start, imports, model loading, workers)."""
    import tempfile

    shared = shared_dir(args.shared)
    items = load_corpus(shared, args.quick)
    out = {"images": PASSES * len(items), "batch": {}, "start": {}, "round_speedups": []}
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="mtcnn-bench-") as tmp:
        link_corpus(Path(tmp, "batch"), shared, items, PASSES)
        small = sorted(items, key=lambda item: item["width"] * item["height"])[:2]
        for _ in range(JOBS_ROUNDS):
            this_round = {}
            for jobs in sorted({1, cpus}):
                for kind, inputs in (("start", [str(shared / item["path"]) for item in small]),
                                     ("batch", [str(Path(tmp, "batch"))])):
                    seconds = timed_detect([*inputs, "--format", "jsonl", "-o", str(Path(tmp, f"{kind}{jobs}.jsonl")),
                                            "--jobs", str(jobs)], args, f"--jobs {jobs}")
                    out[kind][jobs] = min(seconds, out[kind].get(jobs, seconds))
                    this_round[kind, jobs] = seconds
            out["round_speedups"].append(this_round["batch", 1] / this_round["batch", cpus])
    return out


JOBS_ROUNDS = 2


DISTRIBUTE_PASSES = 14  # the 76 reference images this many times: about 1,000 images


def measure_distributors(args) -> dict:
    """Whole runs with 2 workers over about 1,000 images: plain --jobs 2 into one
    JSONL file, --out-dir with --jobs 2, and --out-dir with Dask's LocalCluster
    of 2 workers (when Dask is installed); each also over two small images
    alone, its start-up."""
    import importlib.util
    import tempfile

    shared = shared_dir(args.shared)
    items = load_corpus(shared, args.quick)
    ways = {"--jobs 2": [], "--out-dir, --jobs 2": ["--out-dir", "{out}", "--shard-size", "50"]}
    if importlib.util.find_spec("distributed") is not None:
        ways["--out-dir, Dask local, 2 workers"] = ["--out-dir", "{out}", "--shard-size", "50",
                                                   "--distributor", "dask", "--scheduler", "local"]
    out = {"images": DISTRIBUTE_PASSES * len(items), "batch": {}, "start": {}}
    with tempfile.TemporaryDirectory(prefix="mtcnn-bench-") as tmp:
        link_corpus(Path(tmp, "batch"), shared, items, DISTRIBUTE_PASSES)
        small = sorted(items, key=lambda item: item["width"] * item["height"])[:2]
        for number, (name, extra) in enumerate(ways.items()):
            for kind, inputs in (("start", [str(shared / item["path"]) for item in small]),
                                 ("batch", [str(Path(tmp, "batch"))])):
                target = str(Path(tmp, f"{kind}{number}"))
                extra_args = [a.replace("{out}", target) for a in extra] or ["-o", target + ".jsonl"]
                out[kind][name] = timed_detect([*inputs, "--jobs", "2", *extra_args], args, name)
    return out


def report_distributors(result: dict) -> None:
    n, base = result["images"], result["batch"]["--jobs 2"]
    print(f"\nshards ({n} images, 2 workers, whole runs; start-up: two small images alone):")
    for name, seconds in result["batch"].items():
        print(f"  {name:34} {n / seconds:6.1f} images/s, {base / seconds:4.2f}x of --jobs 2; "
              f"start-up {result['start'][name]:.1f} s")


def in_subprocess(mode: str, args, threads: int) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--repeat", str(args.repeat)]
    if args.shared:
        cmd += ["--shared", args.shared]
    if args.models:
        cmd += ["--models", args.models]
    if args.quick:
        cmd.append("--quick")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"bench: {mode} measurement failed:\n{done.stderr}")
    return json.loads(done.stdout)


def report(one: dict | None, large: dict | None, jobs: dict | None, threads: int) -> None:
    """What was measured (a section not run is None)."""
    if one:
        report_corpus(one)
    if large:
        report_large(large)
    if jobs:
        report_jobs(jobs, threads)


def report_corpus(one: dict) -> None:
    rows = one["rows"]
    print("ms: median of the runs; cold: the same, each run after dropping what is kept per image size\n")
    label = one.get("cpp_label") or (f"C++: the stored times ({timing_file()}), FROM ANOTHER MACHINE, NOT COMPARABLE "
                                      f"(build the C++ to compare: {against.BUILD_HINT})")
    print(label)
    print(f"{'image':48} {'size':>10} {'faces':>5} {'ms':>8} {'cold':>8} {'C++ ms':>8} {'ratio':>6}")
    slower, slower_cold = [], []
    for r in rows:
        ratio = r["ms"] / r["cpp_ms"] if r["cpp_ms"] else float("nan")
        if ratio > 1:
            slower.append(r["path"])
        if r["cpp_ms"] and r["cold_ms"] > r["cpp_ms"]:
            slower_cold.append(r["path"])
        print(f"{Path(r['path']).name[:48]:48} {r['w']:>4}x{r['h']:<5} {r['faces']:>5} {r['ms']:8.1f} "
              f"{r['cold_ms']:8.1f} {r['cpp_ms'] or float('nan'):8.1f} {ratio:6.2f}")
    ours = sum(r["ms"] for r in rows)
    cpp = sum(r["cpp_ms"] for r in rows if r["cpp_ms"])
    stage_sum = sum(one["stages"].values()) or 1.0
    print("\nper stage (1 thread, sum over images):")
    names = {"pnet": "pyramid + PNet", "rnet": "RNet", "onet": "ONet", "boxes": "NMS and boxes"}
    for k in STAGES:
        v = one["stages"][k]
        print(f"  {names[k]:16} {v * 1000:9.1f} ms {100 * v / stage_sum:5.1f} %")
    print(f"\narithmetic: {one['macs'] / 1e9:.2f} GMAC, {2 * one['macs'] / (ours / 1000) / 1e9:.1f} GFLOP/s effective")
    print("per convolution (its calls timed alone, in one more run over the images; the peak of one")
    print("core is 2 FMA units x 8 (AVX2) or 16 (AVX-512) floats x 2 flops per cycle):")
    for name, (seconds, macs) in sorted(one["convs"].items()):
        print(f"  {name:26} {seconds * 1000:8.1f} ms {macs / 1e9:7.3f} GMAC {2 * macs / seconds / 1e9:6.1f} GFLOP/s")
    print(f"model loading: {one['load_s'] * 1000:.1f} ms")
    print(f"peak memory (corpus run): {one['peak_rss_mb']:.0f} MiB")
    where = "this machine" if one.get("cpp_label") else f"{timing_file()}, another machine: not comparable"
    print(f"\ntotal, 1 thread:  {ours:9.1f} ms   C++ ({where}, 1 thread) {cpp:9.1f} ms   "
          f"ratio {ours / cpp:.2f}")
    for label, names in (("", slower), (", cold", slower_cold)):
        listed = f" ({', '.join(Path(p).name for p in names)})" if names else ""
        print(f"images slower than the C++{label}: {len(names)}{listed}")
    cold = sum(r["cold_ms"] for r in rows)
    print(f"total, cold: {cold:9.1f} ms   ratio {cold / cpp:.2f}")
    print(f"\nbatching: RNet/ONet over all crops {one['batched_s'] * 1000:.1f} ms vs one crop at a time "
          f"{one['unbatched_s'] * 1000:.1f} ms: {one['unbatched_s'] / max(one['batched_s'], 1e-9):.2f}x")


def report_large(large: dict) -> None:
    sizes = [k for k in large if "x" in k]
    print("\nlarge images (1 thread): " + ", ".join(f"{k} {large[k]:.0f} ms" for k in sizes))
    mp = {k: int(k.split("x")[0]) * int(k.split("x")[1]) / 1e6 for k in sizes}
    print("  ms per megapixel: " + ", ".join(f"{k} {large[k] / mp[k]:.1f}" for k in sizes))
    print(f"  peak memory with the 4000x3000 image: {large['peak_rss_mb']:.0f} MiB")


def report_jobs(jobs: dict, threads: int) -> None:
    n = jobs["images"]
    print(f"\nall threads: whole `mtcnn detect` runs over the corpus {PASSES} times ({n} images; start-up,")
    print("imports, decoding and writing included; the fastest of the rounds). Each detector call runs")
    print("on one thread, as the C++ did, so more cores mean more worker processes:")
    for k in ("1", str(threads)):
        print(f"  --jobs {k}: {n / jobs['batch'][k]:.1f} images/s, total {jobs['batch'][k] * 1000:.0f} ms; "
              f"two small images alone {jobs['start'][k] * 1000:.0f} ms")
    print(f"  speed-up {jobs['batch']['1'] / jobs['batch'][str(threads)]:.2f}x")


SECTIONS = ("corpus", "large", "jobs", "distribute", "whole", "startup", "first", "crops", "memory")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", help="the shared data folder (default $MTCNN_SHARED or ../shared)")
    parser.add_argument("--models", help="model folder (default: $MTCNN_MODELS, then the bundled weights)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs per image (the C++ reference took the median of 5); the median counts")
    parser.add_argument("--rounds", type=int, default=3,
                        help="side-by-side rounds: per image (x1), whole processes (x2), start-up (x5), "
                             "crops (x8 at --jobs 1)")
    parser.add_argument("--quick", action="store_true", help="every 8th image only")
    parser.add_argument("--only", help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        fn = {"corpus": measure, "large": measure_large, "jobs": measure_jobs,
              "distribute": measure_distributors}[args.child]
        json.dump(fn(args), sys.stdout)
        return
    wanted = set(args.only.split(",")) if args.only else set(SECTIONS)
    if wanted - set(SECTIONS):
        parser.error(f"--only: unknown sections {', '.join(sorted(wanted - set(SECTIONS)))}")
    threads = os.cpu_count() or 1
    shared = shared_dir(args.shared).resolve()
    items = load_corpus(shared, args.quick)
    oracle, peer = against.oracle_build(), against.peer_folder()
    print(f"mtcnn-cli benchmark: {len(items)} images, median of {args.repeat} runs each; "
          + (f"the C++ oracle side by side ({oracle})" if oracle else
             f"no C++ oracle built (build it in one command: {against.BUILD_HINT})")
          + (f"; pymtcnn side by side ({peer})" if peer else
             f"; no pymtcnn set up (set it up in one command: {against.PEER_HINT})"), file=sys.stderr)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mtcnn-bench-") as tmp:
        runner = against.Runner(shared, Path(tmp), oracle, peer)
        images = [item["path"] for item in items]
        one = large = jobs = None
        if "corpus" in wanted:
            if oracle or peer:
                one = against.per_image(runner, images, lambda: in_subprocess("corpus", args, 1), args.rounds,
                                        args.repeat)
            else:
                one = in_subprocess("corpus", args, 1)
        if "large" in wanted:
            large = in_subprocess("large", args, 1)
        if "jobs" in wanted:
            try:
                jobs = in_subprocess("jobs", args, 1)
            except SystemExit as exc:
                print(exc, file=sys.stderr)
        report(one, large, jobs, threads)
        if "distribute" in wanted:
            try:
                report_distributors(in_subprocess("distribute", args, 1))
            except SystemExit as exc:
                print(exc, file=sys.stderr)
        if "whole" in wanted:
            if oracle or peer:
                against.whole_process(runner, images, 2 * args.rounds)
            if oracle and "large" in wanted:
                against.big_side_by_side(runner, args.rounds)
            if not oracle:
                print(f"\nwhole process against the C++: not measured, no oracle built "
                      f"(build it in one command: {against.BUILD_HINT})")
        print("\n--- the speed targets, side by side on this machine (measured, not asserted) ---")
        if "startup" in wanted:
            against.target_startup(runner, 5 * args.rounds)
        if "first" in wanted:
            against.target_first_run(runner)
        if "jobs" in wanted:
            against.target_jobs(jobs, threads)
        if "crops" in wanted:
            against.target_crops(runner, images, args.rounds, threads)
        if "memory" in wanted:
            against.target_memory(runner)


if __name__ == "__main__":
    main()
