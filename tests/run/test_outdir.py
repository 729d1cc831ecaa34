"""`mtcnn detect --out-dir`, `mtcnn merge`, --shard slurm and run_shard, with
the stand-in detector of detect_support (answers known in advance), through
click's CliRunner. Real processes and the real detector: test_shards_process.py."""
import json
import os
import threading

import pytest
from click.testing import CliRunner

from mtcnn_cli import __version__
from mtcnn_cli.cli import main
from mtcnn_cli.run.outdir import manifest as manifests, plan as outdir_plan, shard as shards

from ..cli_support import one_line_error, usage_error
from ..detect_support import StandInDetector, make_image, stand_in  # noqa: F401


def mtcnn(*args, env=None):
    result = CliRunner().invoke(main, [*map(str, args)], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(autouse=True)
def fresh_detectors():
    shards._detectors.clear()  # run_shard keeps a detector per process: not across tests
    yield
    shards._detectors.clear()


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """Seven images (faces 2, 0, 1, 3, 1, 0, 2) and a broken file, cwd at tmp_path."""
    monkeypatch.chdir(tmp_path)
    for name, faces in zip("abcdefg", (2, 0, 1, 3, 1, 0, 2)):
        make_image(tmp_path / "photos" / f"{name}.png", faces)
    (tmp_path / "photos" / "h.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    return "photos"


def parts(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("part-") and name.endswith(".jsonl"))


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_merged_parts_are_byte_identical_to_a_plain_run(photos, stand_in, fmt):
    plain = mtcnn("detect", photos, "--format", fmt)
    assert plain.exit_code == 1  # h.jpg
    done = mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 3)
    assert done.exit_code == 1 and done.stdout == ""
    assert parts("out") == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    merged = mtcnn("merge", "out", "--format", fmt)
    assert merged.exit_code == 0, merged.stderr
    assert merged.stdout_bytes == plain.stdout_bytes
    assert merged.stderr == "mtcnn: merged 3 parts of out: 8 images, 9 faces, 1 failure\n"
    assert mtcnn("merge", "out", "-o", f"all.{fmt}").exit_code == 0
    assert open(f"all.{fmt}", "rb").read() == plain.stdout_bytes


def test_parts_hold_the_jsonl_records_in_input_order(photos, stand_in):
    plain = mtcnn("detect", photos).stdout.splitlines(keepends=True)
    mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 3)
    assert [open(f"out/{name}").read() for name in parts("out")] == \
        ["".join(plain[0:3]), "".join(plain[3:6]), "".join(plain[6:8])]


def test_the_manifest_and_the_statistics(photos, stand_in, monkeypatch):
    class WithModels(StandInDetector):
        class models:
            source = "stand-in"
            sha256 = {"PNet": "a" * 64, "RNet": "b" * 64, "ONet": "c" * 64}

    from mtcnn_cli.run import batch
    monkeypatch.setattr(batch, "detector_class", lambda: WithModels)
    assert mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 5, "--min-face", 40).exit_code == 1
    manifest = json.load(open("out/_manifest.json"))
    listed = open("out/_inputs.jsonl", "rb").read()
    import hashlib
    assert manifest["version"] == __version__ and manifest["tool"] == "mtcnn-cli"
    assert manifest["params"] == {"min_face": 40, "t1": 0.6, "t2": 0.7, "t3": 0.7}
    assert manifest["models"]["sha256"] == WithModels.models.sha256
    assert manifest["inputs"]["count"] == 8 and manifest["inputs"]["sha256"] == hashlib.sha256(listed).hexdigest()
    assert [json.loads(line)["path"] for line in listed.splitlines()][:2] == ["photos/a.png", "photos/b.png"]
    assert (manifest["shard_size"], manifest["shards"]) == (5, 2)
    first, second = (json.load(open(f"out/part-0000{i}.stats.json")) for i in (0, 1))
    assert (first["images"], first["faces"], first["failures"]) == (5, 7, 0)
    assert (second["images"], second["faces"], second["failures"]) == (3, 2, 1)
    assert first["seconds"] >= 0 and first["cpu"]["model"] and isinstance(first["cpu"]["avx512f"], bool)
    assert first["cpu"] == manifests.cpu_kind()


@pytest.mark.parametrize("change, named", [
    (["--min-face", 40], "min_face 60 there, 40 here"),
    (["--t2", 0.5], "t2 0.7 there, 0.5 here"),
    (["--no-landmarks"], "landmarks True there, False here"),
    (["--shard-size", 2], "shard size 3 there, 2 here"),
    (["--exclude", "a.png"], "input list of 8 entries (sha256"),
])
def test_a_folder_made_with_other_settings_is_refused(photos, stand_in, change, named):
    assert mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 3).exit_code == 1
    before = {name: open(f"out/{name}", "rb").read() for name in os.listdir("out")}
    args = [photos] + change + ([] if "--shard-size" in change else ["--shard-size", 3])
    for resume in ([], ["--resume"]):
        line = one_line_error(mtcnn("detect", *args, "--out-dir", "out", *resume), named)
        assert "holds a run made with other settings" in line
    assert {name: open(f"out/{name}", "rb").read() for name in os.listdir("out")} == before


def test_other_models_are_refused(photos, stand_in, monkeypatch):
    from mtcnn_cli.run import batch

    def with_digest(digest):
        class Models(StandInDetector):
            class models:
                source = "stand-in"
                sha256 = {"PNet": digest * 64}
        return Models

    monkeypatch.setattr(batch, "detector_class", lambda: with_digest("a"))
    mtcnn("detect", photos, "--out-dir", "out")
    monkeypatch.setattr(batch, "detector_class", lambda: with_digest("b"))
    one_line_error(mtcnn("detect", photos, "--out-dir", "out", "--resume"), "PNet model sha256 aaaaaaaaaaaa")


def test_resume_runs_only_the_missing_parts(photos, stand_in):
    mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 2)
    whole = mtcnn("merge", "out").stdout
    os.remove("out/part-00001.jsonl")
    os.remove("out/part-00002.stats.json")  # killed between a part and its statistics
    kept = os.stat("out/part-00003.jsonl").st_ino
    stand_in.calls.clear()
    result = mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 2, "--resume")
    assert result.exit_code == 1  # h.jpg (part 3) failed in the earlier run: the whole run's status
    assert len(stand_in.calls) == 4  # parts 1 and 2: c, d, e, f
    assert os.stat("out/part-00003.jsonl").st_ino == kept
    assert "mtcnn: 4 images (4 done before, 1 of them failed), 5 faces, 0 failures, " in result.stderr
    assert mtcnn("merge", "out").stdout == whole
    again = mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 2, "--resume")
    assert "all 4 parts already done" in again.stderr


def test_without_resume_the_parts_are_written_again(photos, stand_in):
    mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 4)
    stand_in.calls.clear()
    mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 4)
    assert len(stand_in.calls) == 7 and len(parts("out")) == 2


def test_shard_i_of_n_runs_contiguous_parts(photos, stand_in):
    plain = mtcnn("detect", photos).stdout
    for i in (1, 2, 3):
        mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 2, "--shard", f"{i}/3")
        if i == 1:
            assert parts("out") == ["part-00000.jsonl"]  # 4 parts over 3 tasks: 1, 1, 2
            one_line_error(mtcnn("merge", "out"), "3 of 4 parts are missing (part-00001.jsonl, "
                                                  "part-00002.jsonl, part-00003.jsonl)")
    assert parts("out") == [f"part-0000{i}.jsonl" for i in range(4)]
    assert mtcnn("merge", "out").stdout == plain


def slurm(task, count=3, first=0, step=None):
    env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": str(count),
           "SLURM_ARRAY_TASK_MIN": str(first)}
    if step:
        env["SLURM_ARRAY_TASK_STEP"] = str(step)
    return env


def test_shard_slurm_three_tasks_merge_to_the_whole_run(photos, stand_in, monkeypatch):
    plain = {fmt: mtcnn("detect", photos, "--format", fmt).stdout for fmt in ("jsonl", "csv")}
    for task in (2, 0, 1):  # in any order: the first to start publishes the manifest
        for name, value in slurm(task).items():
            monkeypatch.setenv(name, value)
        done = mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 1, "--shard", "slurm", "-q")
        assert done.exit_code in (0, 1) and done.stdout == ""
    assert len(parts("out")) == 8
    for fmt in plain:
        assert mtcnn("merge", "out", "--format", fmt).stdout == plain[fmt]


@pytest.mark.parametrize("env, shard", [
    (slurm(0), (1, 3)), (slurm(2), (3, 3)), (slurm(5, 3, 5), (1, 3)),
    (slurm(7, 5, 1, 2), (4, 5)),  # --array=1-9:2: tasks 1 3 5 7 9
])
def test_slurm_variables(env, shard):
    assert outdir_plan.slurm_shard(env) == shard


def test_shard_slurm_outside_an_array_is_a_usage_error(photos, stand_in, monkeypatch):
    for name in ("ID", "COUNT", "MIN", "STEP"):
        monkeypatch.delenv(f"SLURM_ARRAY_TASK_{name}", raising=False)
    usage_error(mtcnn("detect", photos, "--shard", "slurm"), "detect", "SLURM_ARRAY_TASK_ID is not set")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
    usage_error(mtcnn("detect", photos, "--shard", "slurm"), "detect", "task 4 is not among the 3 tasks")


def test_shard_slurm_without_out_dir_is_shard_i_of_n(photos, stand_in, monkeypatch):
    for name, value in slurm(1).items():
        monkeypatch.setenv(name, value)
    assert mtcnn("detect", photos, "--shard", "slurm").stdout == mtcnn("detect", photos, "--shard", "2/3").stdout


def test_the_manifest_is_published_once_whoever_comes_first(tmp_path):
    target = str(tmp_path / "_manifest.json")
    won = []
    threads = [threading.Thread(target=lambda i=i: won.append(manifests.publish(target, b"%d\n" % i)))
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False] * 7 + [True]
    assert open(target, "rb").read() in [b"%d\n" % i for i in range(8)]
    assert os.listdir(tmp_path) == ["_manifest.json"]  # no temporary file left


@pytest.mark.parametrize("args, fragment", [
    (["-o", "x.jsonl"], "-o and --out-dir exclude each other"),
    (["--format", "csv"], "--format and --out-dir"),
    (["--annotate", "drawn"], "--annotate and --out-dir"),
    (["--bboxdir", "boxes"], "--bboxdir and --out-dir"),
])
def test_out_dir_excludes_single_file_outputs(photos, stand_in, args, fragment):
    usage_error(mtcnn("detect", photos, "--out-dir", "out", *args), "detect", fragment)


def test_shard_size_needs_out_dir(photos, stand_in):
    usage_error(mtcnn("detect", photos, "--shard-size", 10), "detect", "give --out-dir DIR too")
    usage_error(mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 0), "detect", "--shard-size")


def test_a_folder_holding_other_files_is_refused(photos, stand_in):
    one_line_error(mtcnn("detect", photos, "--out-dir", photos), "holds files that are not a run's parts")
    open("file", "w").write("x")
    one_line_error(mtcnn("detect", photos, "--out-dir", "file"), "exists and is not a folder")


def test_merge_refuses_a_part_of_another_run(photos, stand_in):
    mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 3)
    lines = open("out/part-00001.jsonl").read().splitlines(keepends=True)
    open("out/part-00001.jsonl", "w").write(lines[1] + lines[0] + lines[2])
    open("all.json", "w").write("old")
    one_line_error(mtcnn("merge", "out", "-o", "all.json"), "part-00001.jsonl line 1: photos/e.png where "
                                                            "the input list has photos/d.png")
    assert open("all.json").read() == "old"
    open("out/part-00001.jsonl", "w").write("".join(lines[:2]))
    one_line_error(mtcnn("merge", "out"), "1 of its 3 entries have no record")


def test_merge_of_a_folder_that_is_no_run(photos):
    one_line_error(mtcnn("merge", photos), "no _manifest.json")
    usage_error(mtcnn("merge"), "merge", "DIR")


def test_merge_refuses_an_output_inside_the_run(photos, stand_in):
    mtcnn("detect", photos, "--out-dir", "out")
    usage_error(mtcnn("merge", "out", "-o", "out/all.jsonl"), "merge", "inside out")


def test_merge_help_documents_exit_codes():
    text = mtcnn("merge", "--help").stdout
    assert "Exit status:" in text and "same bytes a plain `mtcnn detect`" in " ".join(text.split())
    assert "2    nothing was written" in text


def test_run_shard_is_pure_and_repeatable(photos, stand_in):
    mtcnn("detect", photos, "--out-dir", "out", "--shard-size", 3)
    first = open("out/part-00001.jsonl", "rb").read()
    os.remove("out/part-00001.jsonl")
    manifest = manifests.Manifest.read("out")
    for _ in range(2):
        stats = shards.run_shard(manifest, 1)
        assert open("out/part-00001.jsonl", "rb").read() == first
        assert (stats["part"], stats["images"], stats["faces"]) == (1, 3, 4)
    assert shards.run_shard("out", 1)["images"] == 3  # the folder will do for the manifest
    with pytest.raises(ValueError, match="shards 0 to 2"):
        shards.run_shard(manifest, 3)


def test_plan_dir_makes_the_folder_that_another_engine_fills(photos, stand_in):
    """The Ray and Spark recipes of the README: plan, then run_shard per missing index."""
    from mtcnn_cli import plan_dir, run_shard

    manifest = plan_dir(photos, "out", shard_size=3)
    assert manifest.missing() == [0, 1, 2] and parts("out") == []
    for index in reversed(manifest.missing()):  # in any order, anywhere
        run_shard(manifest.folder, index)
    assert mtcnn("merge", "out").stdout == mtcnn("detect", photos).stdout
    assert plan_dir(photos, "out", shard_size=3).missing() == []


def test_detect_to_dir_is_the_command(photos, stand_in):
    from mtcnn_cli import detect_to_dir

    stats = detect_to_dir([photos], "out", shard_size=5)
    assert [(s["part"], s["images"], s["failures"]) for s in stats] == [(0, 5, 0), (1, 3, 1)]
    assert stats[1]["skipped"] == [["photos/h.jpg", "truncated JPEG data"]]
    assert mtcnn("merge", "out", "--format", "csv").stdout == mtcnn("detect", photos, "--format", "csv").stdout
    assert detect_to_dir([photos], "out", shard_size=5, resume=True) == []


def test_a_video_is_one_entry_and_its_frames_merge_as_a_plain_run(photos, stand_in):
    """A video is one entry of the list; its frames are its part's records, and
    CSV gets the frame and time columns as a plain run with videos does."""
    import numpy as np

    from ..io.test_video import write_video

    frames = []
    for faces in (1, 0, 2, 3):
        frame = np.full((240, 320, 3), 128, np.uint8)
        frame[:32, :32] = 50 * faces + 10
        frames.append(frame)
    write_video("photos/e.avi", frames, "MJPG")
    for fmt in ("csv", "jsonl"):
        plain = mtcnn("detect", photos, "--format", fmt)
        assert mtcnn("detect", photos, "--out-dir", f"out-{fmt}", "--shard-size", 2).exit_code == 1
        merged = mtcnn("merge", f"out-{fmt}", "--format", fmt)
        assert merged.exit_code == 0, merged.stderr
        assert merged.stdout == plain.stdout
        assert fmt != "csv" or merged.stdout.startswith("path,frame,time,face,")
    part = open("out-jsonl/part-00002.jsonl").read().splitlines()  # e.avi and e.png
    assert [json.loads(line)["path"] for line in part] == [f"photos/e.avi#frame={i}" for i in range(4)] + \
        ["photos/e.png"]


def test_merge_never_writes_into_its_folder_through_a_link(photos, stand_in, tmp_path):
    assert mtcnn("detect", photos, "--out-dir", "out", "--shard-size", "3", "-q").exit_code in (0, 1)
    before = (tmp_path / "out" / "part-00000.jsonl").read_bytes()
    (tmp_path / "evil.jsonl").symlink_to(tmp_path / "out" / "part-00000.jsonl")
    usage_error(mtcnn("merge", "out", "-o", "evil.jsonl"), "merge", "inside out")
    assert (tmp_path / "out" / "part-00000.jsonl").read_bytes() == before

