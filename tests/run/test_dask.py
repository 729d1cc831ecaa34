"""--distributor dask: the shards of an --out-dir run as Dask tasks, on a
LocalCluster on 127.0.0.1. Dask is an optional extra: without it these tests
are skipped, except the one that checks the message saying how to install it."""
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from mtcnn_cli.cli import main
from mtcnn_cli.run import dask_cluster, engines

from ..cli_support import usage_error
from ..detect_support import make_image, stand_in  # noqa: F401
from ..cli.test_detect_process import batch_folder, command, environment, run  # noqa: F401

pytestmark = [pytest.mark.process, pytest.mark.slow]


def mtcnn(*args):
    result = CliRunner().invoke(main, [*map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def merge(folder, *args, cwd):
    return subprocess.run(command()[:-1] + ["merge", str(folder), *map(str, args)], cwd=cwd,
                          env=environment(), capture_output=True, timeout=300)


def test_without_dask_the_option_says_how_to_install_it(tmp_path, stand_in, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "a.png", 1)
    monkeypatch.setitem(sys.modules, "distributed", None)  # what `import distributed` does when it is missing
    line = usage_error(mtcnn("detect", "a.png", "--out-dir", "out", "--distributor", "dask"), "detect",
                       "pip install -e '.[dask]'")
    assert "optional extra" in line
    assert not (tmp_path / "out").exists()


def test_dask_options_need_out_dir(tmp_path, stand_in, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "a.png", 1)
    usage_error(mtcnn("detect", "a.png", "--distributor", "dask"), "detect", "give --out-dir DIR too")
    usage_error(mtcnn("detect", "a.png", "--out-dir", "o", "--scheduler", "local"), "detect",
                "give --distributor dask too")


# --- with Dask ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def someone_elses_cluster():
    """Two workers with Dask's defaults (MALLOC_TRIM_THRESHOLD_=65536, the
    profiler on), as a cluster set up by other people has them."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _faults_per_image(folder, index):
    """Minor page faults per image of a second run of shard `index` here."""
    import resource

    from mtcnn_cli.run.outdir import manifest as manifests, shard as shards

    manifest = manifests.Manifest.read(folder)
    shards.run_shard(manifest, index)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    images = shards.run_shard(manifest, index)["images"]
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / images


PHOTOS = ["deepface__img47.jpg", "deepface__img49.jpg", "deepface__img5.jpg", "skimage__astronaut.png"]


def test_the_worker_plugin_undoes_dasks_allocator_and_profiler_settings(someone_elses_cluster, corpus,
                                                                        tmp_path):
    client = someone_elses_cluster
    out = str(tmp_path / "out")
    photos = [str(corpus / name) for name in PHOTOS]
    engines.detect_to_dir(photos, out, shard_size=2)  # here, to have parts to run again
    envs = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert set(envs.values()) == {"65536"}  # Dask's default, which the plugin must undo
    worker = list(envs)[0]
    untuned = client.submit(_faults_per_image, out, 0, workers=[worker], pure=False).result()
    stats = engines.detect_to_dir(photos, out, client=client, shard_size=2)
    assert [part["images"] for part in stats] == [2, 2]
    tuned = client.submit(_faults_per_image, out, 0, workers=[worker], pure=False).result()
    callbacks = client.run(lambda dask_worker: sorted(dask_worker.periodic_callbacks))
    assert all("profile" not in names and "profile-cycle" not in names for names in callbacks.values())
    print(f"page faults per image: {untuned:.0f} with Dask's defaults, {tuned:.0f} after the plugin")
    assert untuned > 5000 and untuned > 5 * tuned


def test_a_worker_killed_mid_run_gives_a_complete_output_without_duplicates(someone_elses_cluster,
                                                                           batch_folder, tmp_path):
    client = someone_elses_cluster
    out = tmp_path / "out"
    outcome = {}

    def go():
        try:
            outcome["stats"] = engines.detect_to_dir([batch_folder], str(out), client=client, shard_size=1)
        except BaseException as e:  # noqa: BLE001 (reported below)
            outcome["error"] = e

    runner = threading.Thread(target=go)
    runner.start()
    deadline = time.monotonic() + 120
    while not list(out.glob("part-*.stats.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    pids = client.run(os.getpid)
    os.kill(list(pids.values())[0], signal.SIGKILL)
    runner.join(300)
    assert "error" not in outcome, outcome
    assert sorted(part["part"] for part in outcome["stats"]) == list(range(13))
    plain = run(batch_folder, cwd=tmp_path)
    merged = merge(out, cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout == plain.stdout  # every image once, in order


def test_the_command_on_a_local_cluster_and_on_a_scheduler_address(someone_elses_cluster, batch_folder,
                                                                    tmp_path):
    address = someone_elses_cluster.scheduler.address
    plain = run(batch_folder, "--format", "csv", cwd=tmp_path)
    for name, scheduler in (("local", "local"), ("remote", address)):
        out = tmp_path / name
        done = run(batch_folder, "--out-dir", out, "--shard-size", 4, "--distributor", "dask", "--scheduler",
                   scheduler, "--jobs", 2, cwd=tmp_path)
        assert done.returncode == 1, done.stderr  # broken.jpg
        err = done.stderr.decode()
        assert "Traceback" not in err and "skipped" in err and "broken.jpg" in err
        assert "mtcnn: 13 images, " in err and done.stdout == b""
        assert merge(out, "--format", "csv", cwd=tmp_path).stdout == plain.stdout
