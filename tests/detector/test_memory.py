"""The detector's working memory stays with the process (detector/memory.py):
detecting again does not fault every page in anew. Fresh processes, since the
allocator's settings are per process and made once."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]
PHOTO = "dlib__scream.jpg"  # 448x352: its arrays are past glibc's first mmap threshold

REPEATED = """
import json, resource, sys
import cv2
from mtcnn_cli.detector import memory
from mtcnn_cli.detector.cascade import Detector
image = cv2.imread(sys.argv[1])
detector = Detector()
for _ in range(3):
    detector.detect(image)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    detector.detect(image)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"kept": memory.keep_working_memory(), "faults": faults}))
"""


def repeated(photo, **settings):
    """Detections in a fresh process whose malloc settings are only `settings`
    (the suite's own environment may hold some: importing Dask's distributed
    sets MALLOC_TRIM_THRESHOLD_)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", REPEATED, str(photo)], capture_output=True, timeout=300,
                          env=dict(env, PYTHONPATH=str(ROOT), **settings))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_detecting_again_faults_no_page_in(corpus):
    """Measured: 0 faults per image kept, 1246 when glibc hands the memory back."""
    if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
        pytest.skip("not glibc")
    result = repeated(corpus / PHOTO)
    assert result["kept"] is True
    assert result["faults"] < 50, result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_the_users_own_malloc_settings_are_left_alone(corpus):
    result = repeated(corpus / PHOTO, MALLOC_TRIM_THRESHOLD_="131072")
    assert result["kept"] is False
    assert result["faults"] > 200, result  # the user's small trim threshold is what runs
    assert repeated(corpus / PHOTO, GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")["kept"] is False
    assert repeated(corpus / PHOTO, GLIBC_TUNABLES="glibc.cpu.x86_rep_movsb_threshold=4096")["kept"] is True
