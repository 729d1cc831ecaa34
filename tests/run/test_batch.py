"""The batch layer: input lists, folder walking, sharding, detect_images, workers."""
import os

import pytest

from mtcnn_cli.io import inputs
from mtcnn_cli.io.inputs import Item
from mtcnn_cli.run import batch
from mtcnn_cli.io.records import Result
from mtcnn_cli.run.batch import Outcome, Settings, Task, detect_images, pool_outcomes

from ..detect_support import expected_faces, make_image, stand_in  # noqa: F401 (fixture)


# --- lists and folders -----------------------------------------------------------------

def test_parse_list_lines_and_nul():
    assert inputs.parse_list(b"a.jpg\nb c.png\r\n\n./d.jpg\n") == ["a.jpg", "b c.png", "./d.jpg"]
    assert inputs.parse_list(b"new\nline.jpg\0e.jpg\0", null=True) == ["new\nline.jpg", "e.jpg"]
    assert inputs.parse_list(b"caf\xe9.jpg\n") == [os.fsdecode(b"caf\xe9.jpg")]


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_walk_sorted_recursive_by_extension(tmp_path):
    root = tmp_path / "photos"
    for name in ["b.JPG", "a.png", "z/y.tiff", "z/x.webp", "c.txt", "d.jpeg", "A.bmp",
                 "album.jpg/inside.tif", "m/n/o.jpg", "noext"]:
        _touch(root / name)
    found = [item.path for item in inputs.expand([str(root)])]
    rel = [os.path.relpath(p, root) for p in found]
    assert rel == ["A.bmp", "a.png", "album.jpg/inside.tif", "b.JPG", "d.jpeg", "m/n/o.jpg",
                   "z/x.webp", "z/y.tiff"]
    assert all(p.startswith(str(root) + os.sep) for p in found)  # paths as found under the folder


def test_walk_survives_symlink_loops(tmp_path):
    root = tmp_path / "r"
    _touch(root / "sub" / "a.jpg")
    os.symlink("..", root / "sub" / "up")  # a loop back to r
    os.symlink("self.jpg", root / "self.jpg")  # a link to itself, named like an image
    found = [os.path.relpath(item.path, root) for item in inputs.expand([str(root)])]
    assert found == ["self.jpg", "sub/a.jpg"]


def test_unreadable_folder_becomes_an_item_with_a_reason(tmp_path, monkeypatch):
    root = tmp_path / "r"
    _touch(root / "a.jpg")
    _touch(root / "locked" / "b.jpg")
    real_scandir = os.scandir

    def scandir(path):
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(inputs.os, "scandir", scandir)
    items = inputs.expand([str(root)])
    assert items == [Item(str(root / "a.jpg")), Item(str(root / "locked"), "permission denied")]


def test_expand_keeps_order_and_reads_the_stdin_list_in_place(tmp_path):
    _touch(tmp_path / "f" / "b.jpg")
    _touch(tmp_path / "f" / "a.jpg")
    listed = f"{tmp_path}/x.png\n{tmp_path}/f\n".encode()
    items = inputs.expand(["first.jpg", "-", "last.jpg"], lambda: listed)
    assert [i.path for i in items] == ["first.jpg", f"{tmp_path}/x.png", f"{tmp_path}/f/a.jpg",
                                      f"{tmp_path}/f/b.jpg", "last.jpg"]


def test_unique_keeps_first_spelling():
    items = [Item("a/x.jpg"), Item("./a/x.jpg"), Item("b.jpg"), Item("a//x.jpg"), Item("b.jpg")]
    assert inputs.unique(items) == [Item("a/x.jpg"), Item("b.jpg")]


@pytest.mark.parametrize("n", [0, 1, 5, 7, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_shards_cover_everything_once_in_order(n, count):
    items = list(range(n))
    parts = [inputs.shard(items, i, count) for i in range(1, count + 1)]
    assert sum(parts, []) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shard_index_counts_from_one():
    with pytest.raises(ValueError):
        inputs.shard([1, 2], 0, 2)
    with pytest.raises(ValueError):
        inputs.shard([1, 2], 3, 2)


def test_safe_relative_never_leaves_the_folder():
    assert inputs.safe_relative("photos/a.jpg") == "photos/a.jpg"
    assert inputs.safe_relative("./photos/../x.jpg") == "x.jpg"
    assert inputs.safe_relative("../../etc/x.jpg") == "__/__/etc/x.jpg"
    assert inputs.safe_relative("/data/set/x.jpg") == "data/set/x.jpg"
    for path in ["../../x.jpg", "/x.jpg", "a/../../x.jpg", "..", "/"]:
        joined = os.path.normpath(os.path.join("/out", inputs.safe_relative(path)))
        assert joined.startswith("/out/")


def test_bbox_name_is_openfaces_in_the_mirrored_folder():
    assert inputs.bbox_name("a/b/photo.1.JPG") == "a/b/photo.1.txt"
    assert inputs.bbox_name("noext") == "noext.txt"
    assert inputs.bbox_name(inputs.safe_relative("../x.jpg")) == "__/x.txt"


# --- detect_images ---------------------------------------------------------------------

def test_detect_images_in_order_with_errors(tmp_path, stand_in):
    a = make_image(tmp_path / "a.png", faces=2)
    b = make_image(tmp_path / "b.jpg", faces=0)
    paths = [str(b), str(tmp_path / "missing.png"), str(a), str(b)]
    results = list(detect_images(paths, min_face=20))
    assert [r.path for r in results] == paths  # input order, repeats included
    assert results[0] == Result(str(b), 64, 48, [], None)
    assert results[1] == Result(paths[1], None, None, None, "no such file")
    assert results[2].faces == expected_faces(2) and (results[2].width, results[2].height) == (64, 48)


def test_detect_images_without_landmarks(tmp_path, stand_in):
    a = make_image(tmp_path / "a.png", faces=1)
    (result,) = detect_images([str(a)], landmarks=False)
    assert result.faces[0].landmarks == () and result.faces[0].x == expected_faces(1)[0].x


def test_detect_images_raises_model_errors_at_the_call(tmp_path, stand_in):
    from mtcnn_cli.detector.datfile import ModelError

    with pytest.raises(ModelError):
        detect_images([str(tmp_path / "a.png")], models=str(tmp_path))
    with pytest.raises(ValueError):
        detect_images([], min_face=5)


def test_detector_failure_on_one_image_is_that_images_error(tmp_path, stand_in, monkeypatch):
    a = make_image(tmp_path / "a.png", faces=1)
    b = make_image(tmp_path / "b.png", faces=1)

    def detect(self, image):
        if image[0, 0, 1] % 2:
            raise RuntimeError("boom")
        return []

    monkeypatch.setattr(stand_in, "detect", detect)
    import cv2

    image = cv2.imread(str(a))
    image[0, 0, 1] = 1
    cv2.imwrite(str(a), image)
    image[0, 0, 1] = 2
    cv2.imwrite(str(b), image)
    results = list(detect_images([str(a), str(b)]))
    assert results[0].error == "detector failed: RuntimeError: boom"
    assert results[1].faces == []


# --- worker processes ------------------------------------------------------------------

def quiet_init(settings, parent):
    """Worker initializer for the tests below: no detector needed."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def fragile_work(task):
    """Dies (as a worker killed for lack of memory would) on paths with 'crash'."""
    if "crash" in task.path:
        os._exit(9)
    return Outcome(Result(task.path, 1, 1, [], None), 0.0)


def test_a_dying_worker_costs_only_its_image(tmp_path):
    names = ["a", "b", "crash-c", "d", "e", "f", "crash-g", "h"]
    tasks = [Task(name) for name in names]
    outcomes = list(pool_outcomes(tasks, Settings(), 2, work=fragile_work, initializer=quiet_init))
    assert [o.result.path for o in outcomes] == names
    failed = [o.result.path for o in outcomes if o.result.error]
    assert failed == ["crash-c", "crash-g"]
    assert outcomes[2].result.error == batch.WORKER_DIED


def failing_init(settings, parent):
    """A worker whose models cannot load."""
    quiet_init(settings, parent)
    raise OSError("no space left for the weights")


def test_a_worker_that_cannot_start_stops_the_run_with_the_reason():
    tasks = [Task(name) for name in "abcdef"]
    with pytest.raises(batch.WorkerStartError, match="OSError: no space left for the weights"):
        list(pool_outcomes(tasks, Settings(), 2, work=fragile_work, initializer=failing_init))


def test_resolve_jobs():
    assert batch.resolve_jobs(3) == 3
    assert batch.resolve_jobs(0) == len(os.sched_getaffinity(0))


def test_real_detector_jobs_2_equals_jobs_1(corpus):
    paths = [str(corpus / name) for name in ("facerec__obama_small.jpg", "insightface__no_face.png",
                                            "openface__frame_det_000000_112x112_0.7.bmp",
                                            "kpzhang__test1.jpg")]
    paths.insert(2, str(corpus / "does-not-exist.jpg"))
    one = list(detect_images(paths, jobs=1))
    two = list(detect_images(paths, jobs=2))
    assert one == two
    assert [r.path for r in one] == paths
    assert one[2].error == "no such file"
    assert sum(len(r.faces) for r in one if r.faces) >= 2  # Obama's face, the 112x112 crop's


def test_a_stop_inside_the_pools_code_is_handled_when_it_ends():
    """Calls into the process pool are made with SIGINT and SIGTERM put off:
    raised inside the pool's own code, a KeyboardInterrupt can leave one of
    its locks held and hang the program's exit."""
    import signal

    from mtcnn_cli.run.batch import _stops_put_off

    seen = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(f"handled {signum}"))
    try:
        with _stops_put_off():
            signal.raise_signal(signal.SIGTERM)
            for _ in range(1000):  # a handler run meanwhile would have run by now
                pass
            seen.append("block ended")
        for _ in range(1000):
            pass
    finally:
        signal.signal(signal.SIGTERM, old)
    assert seen == ["block ended", f"handled {int(signal.SIGTERM)}"]
