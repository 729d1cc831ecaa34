"""`mtcnn detect --out-dir` and `mtcnn merge` end to end: real processes, the
real detector with the bundled weights, corpus images; a run killed and
resumed; a part run under another OpenBLAS kernel."""
import json
import signal
import subprocess
import time

import pytest

from ..cli.test_detect_process import batch_folder, command, environment, run  # noqa: F401

pytestmark = pytest.mark.process


def merge(folder, *args, cwd):
    return subprocess.run(command()[:-1] + ["merge", str(folder), *map(str, args)], cwd=cwd,
                          env=environment(), capture_output=True, timeout=300)


def test_out_dir_with_jobs_merges_to_the_bytes_of_a_plain_run_in_each_format(batch_folder, tmp_path):
    out = tmp_path / "out"
    done = run(batch_folder, "--out-dir", out, "--shard-size", 4, "--jobs", 2, cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # broken.jpg
    assert done.stdout == b"" and b"Traceback" not in done.stderr
    assert sorted(p.name for p in out.glob("part-*.jsonl")) == [f"part-0000{i}.jsonl" for i in range(4)]
    for fmt in ("jsonl", "json", "csv"):
        plain = run(batch_folder, "--format", fmt, cwd=tmp_path)
        merged = merge(out, "--format", fmt, cwd=tmp_path)
        assert merged.returncode == 0, merged.stderr
        assert merged.stdout == plain.stdout and plain.stdout
    stats = [json.loads((out / f"part-0000{i}.stats.json").read_text()) for i in range(4)]
    assert [s["images"] for s in stats] == [4, 4, 4, 1] and sum(s["failures"] for s in stats) == 1


def _wait_for(path, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists()


def test_a_killed_run_resumes_only_the_missing_parts(batch_folder, tmp_path):
    out = tmp_path / "out"
    args = [batch_folder, "--out-dir", out, "--shard-size", 2, "--jobs", 2]
    process = subprocess.Popen(command(*args), cwd=tmp_path, env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _wait_for(out / "part-00000.stats.json")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    time.sleep(1)  # the workers notice their parent is gone
    done = {p.name: p.stat().st_ino for p in out.glob("part-*.jsonl") if (out / p.name.replace(
        ".jsonl", ".stats.json")).exists()}
    assert "part-00000.jsonl" in done and len(done) < 7, done  # killed inside the run
    finished = run(*args, "--resume", cwd=tmp_path)
    assert finished.returncode == 1, finished.stderr
    assert {name: (out / name).stat().st_ino for name in done} == done  # not written again
    plain = run(batch_folder, cwd=tmp_path)
    assert merge(out, cwd=tmp_path).stdout == plain.stdout  # a killed part's temporary file is no part


@pytest.mark.parametrize("coretype", ["Sandybridge"])
def test_a_part_run_under_another_blas_kernel_merges_to_the_same_bytes(batch_folder, tmp_path, coretype):
    """A cluster may mix CPUs. The part records where it ran;
    the merged output does not depend on it."""
    out = tmp_path / "out"
    assert run(batch_folder, "--out-dir", out, "--shard-size", 5, cwd=tmp_path).returncode == 1
    (out / "part-00001.jsonl").unlink()
    env = dict(environment(), OPENBLAS_CORETYPE=coretype)
    other = subprocess.run(command(batch_folder, "--out-dir", out, "--shard-size", 5, "--resume"), cwd=tmp_path,
                           env=env, capture_output=True, timeout=300)
    assert other.returncode == 1, other.stderr
    kinds = [json.loads((out / f"part-0000{i}.stats.json").read_text())["cpu"] for i in range(3)]
    assert kinds[1]["openblas_coretype"] == coretype and "openblas_coretype" not in kinds[0]
    assert merge(out, "--format", "csv", cwd=tmp_path).stdout == run(batch_folder, "--format", "csv",
                                                                      cwd=tmp_path).stdout
