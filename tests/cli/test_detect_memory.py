"""Memory over long batches: `mtcnn detect` keeps flat memory, image after
image, with the real detector and the bundled weights.

A real process runs over 1,000 tiny corpus images (four images of 112 to 150
pixels, linked 250 times each under distinct names: a few milliseconds per
image). As each image is reported (-v), the test reads the resident set size
of the process and of its workers from /proc. From about the 200th image to
about the 950th (medians of 25 images), it may grow by at most 320 KiB, under
0.5 KiB per image. Measured on the project's machine: about 100 KiB (the
allocator settling; flat afterwards), while a change keeping every image's
Result in a list makes it about 700 KiB, and keeping any image data megabytes.

A full-size run (2,000 corpus images of up to 14 MP) takes minutes, so it is
not part of the suite; rss_after_each_image serves it as well."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_detect_process import environment

ROOT = Path(__file__).resolve().parents[2]
TINY = ["dlib__000179_02159509.jpg", "openface__frame_det_000000_112x112_0.7.bmp",
        "insightface__no_face.png", "insightface__Tom_Hanks_54745.png"]
IMAGES = 1000
SETTLED, LAST = 200, 950  # the workers stop as the last images are reported: not measured there
WINDOW = 25  # images whose median RSS is taken at each end
MAX_GROWTH_KIB = 320

pytestmark = [pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc"), pytest.mark.process]


def rss_kib(pid: int) -> int:
    """VmRSS of a process, 0 when it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(child) for child in f.read().split()]
        except OSError:
            pass
    return found


def tree_rss_kib(pid: int) -> int:
    """The process's RSS plus its workers' (and their helpers')."""
    return rss_kib(pid) + sum(rss_kib(child) for child in children(pid))


def rss_after_each_image(paths, jobs: int, cwd) -> tuple[list[int], int, bytes]:
    """Run detect -v over `paths`; the tree's RSS (KiB) read as each image is
    reported, the exit status, and the output file's bytes."""
    out = Path(cwd) / "out.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", "from mtcnn_cli.cli import main; main(prog_name='mtcnn')",
         "detect", "-", "-v", "--jobs", str(jobs), "--format", "jsonl", "-o", str(out)],
        cwd=cwd, env=environment(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, bufsize=0)
    process.stdin.write("".join(f"{path}\n" for path in paths).encode())
    process.stdin.close()
    sizes, loaded = [], False
    for line in process.stderr:
        if b"loaded the models" in line:
            loaded = True
        elif loaded and (b" in " in line or b"skipped" in line):
            sizes.append(tree_rss_kib(process.pid))
    status = process.wait(timeout=120)
    return sizes, status, out.read_bytes() if out.exists() else b""


def growth(sizes: list[int]) -> int:
    """KiB from about the SETTLED-th image to about the LAST-th: medians of
    the WINDOW images before each."""
    def median(end: int) -> int:
        return sorted(sizes[end - WINDOW:end])[WINDOW // 2]
    return median(LAST) - median(SETTLED)


@pytest.mark.parametrize("jobs", [1, 2])
def test_memory_stays_flat_over_a_long_batch(tmp_path, corpus, jobs):
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(IMAGES):
        name = TINY[i % len(TINY)]
        link = folder / f"{i:04d}_{name}"
        link.symlink_to(corpus / name)
        paths.append(link)
    sizes, status, written = rss_after_each_image(paths, jobs, tmp_path)
    assert status == 0
    assert written.count(b"\n") == IMAGES and len(sizes) == IMAGES
    assert growth(sizes) <= MAX_GROWTH_KIB, (
        f"RSS grew by {growth(sizes)} KiB from image {SETTLED} to {LAST}; every 100 images: "
        f"{sizes[::100]}")
