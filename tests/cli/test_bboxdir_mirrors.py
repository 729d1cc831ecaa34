"""--bboxdir names its files as --annotate names its copies (the paths as
given, mirrored), so that `a/x.jpg` and `b/x.jpg` get `a/x.txt` and
`b/x.txt`, and `mtcnn compare --cpp BOXES` reads such a folder, subfolders
and all. Real folders and real `mtcnn` processes with the real detector."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"
MTCNN = Path(sys.executable).parent / "mtcnn"


def run(command, *args, cwd):
    return subprocess.run([str(MTCNN), command, *map(str, args)], cwd=cwd, capture_output=True, timeout=300)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def tree(tmp_path):
    """root/a/x.png (the sample), root/b/x.png (its left half: one face), root/y.png."""
    sample = cv2.imread(str(SAMPLE))
    for sub in ("a", "b"):
        (tmp_path / "root" / sub).mkdir(parents=True)
    shutil.copy(SAMPLE, tmp_path / "root" / "a" / "x.png")
    cv2.imwrite(str(tmp_path / "root" / "b" / "x.png"), np.ascontiguousarray(sample[:, :250]))
    shutil.copy(SAMPLE, tmp_path / "root" / "y.png")
    return tmp_path


def box_lines(path: Path) -> list[list[float]]:
    return [list(map(float, line.split())) for line in path.read_text().splitlines()]


def test_one_stem_in_two_folders_gets_two_box_files(tree):
    done = run("detect", ".", "--bboxdir", "../boxes", "--annotate", "../drawn", "-o", "../faces.json",
               cwd=tree / "root")
    assert done.returncode == 0, done.stderr
    assert files_under(tree / "boxes") == ["a/x.txt", "b/x.txt", "y.txt"]
    # the same names as the annotated copies, .txt for the extension
    assert [name.rsplit(".", 1)[0] for name in files_under(tree / "drawn")] == \
        [name.rsplit(".", 1)[0] for name in files_under(tree / "boxes")]
    assert len(box_lines(tree / "boxes" / "a" / "x.txt")) == 2 and len(box_lines(tree / "boxes" / "b" / "x.txt")) == 1
    records = {r["path"]: r["faces"] for r in json.loads((tree / "faces.json").read_text())["images"]}
    for path, faces in records.items():
        lines = box_lines((tree / "boxes" / path).with_suffix(".txt"))
        assert [line[:2] for line in lines] == [[pytest.approx(f["x"]), pytest.approx(f["y"])] for f in faces]


def test_a_file_named_directly_keeps_its_old_name_and_paths_are_mirrored_as_given(tree):
    plain = run("detect", "y.png", "--bboxdir", "../flat", cwd=tree / "root")
    assert plain.returncode == 0, plain.stderr
    assert files_under(tree / "flat") == ["y.txt"]  # as before: BOXES/<stem>.txt
    given = run("detect", "root/a/x.png", "root/b", "--bboxdir", "boxes", cwd=tree)
    assert given.returncode == 0, given.stderr
    assert files_under(tree / "boxes") == ["root/a/x.txt", "root/b/x.txt"]
    absolute = run("detect", tree / "root" / "y.png", "--bboxdir", "abs", cwd=tree)
    assert files_under(tree / "abs") == [str(tree / "root" / "y.txt").lstrip("/")]  # as --annotate: no leading /


def test_annotate_root_places_box_files_as_it_places_copies(tree):
    done = run("detect", tree / "root", "--annotate", "drawn", "--annotate-root", tree / "root",
               "--bboxdir", "boxes", cwd=tree)
    assert done.returncode == 0, done.stderr
    assert files_under(tree / "boxes") == ["a/x.txt", "b/x.txt", "y.txt"]
    assert files_under(tree / "drawn") == ["a/x.png", "b/x.png", "y.png"]


def test_two_names_of_one_folder_differing_only_in_extension_are_refused(tree):
    shutil.copy(SAMPLE, tree / "root" / "a" / "x.jpg")
    done = run("detect", "root", "--bboxdir", "boxes", cwd=tree)
    assert done.returncode == 2 and done.stdout == b""
    (line,) = done.stderr.decode().splitlines()
    assert "root/a/x.jpg and root/a/x.png have the same name stem in one folder" in line
    assert "boxes/root/a/x.txt" in line and not (tree / "boxes").exists()


def test_compare_reads_a_nested_box_folder(tree):
    done = run("detect", ".", "--bboxdir", "../boxes", "-o", "../faces.json", cwd=tree / "root")
    assert done.returncode == 0, done.stderr
    against_json = run("compare", "--cpp", tree / "boxes", tree / "faces.json", cwd=tree)
    assert against_json.returncode == 0, against_json.stderr
    assert against_json.stdout.decode().startswith("PASS: 3 images match")
    detected_again = run("compare", "--cpp", tree / "boxes", "--images", tree / "root", cwd=tree)
    assert detected_again.returncode == 0, detected_again.stderr
    assert detected_again.stdout.decode().startswith("PASS: 3 images match")
    # a box folder of absolute paths, mirrored: --images may be the images' own folder
    deep = run("detect", tree / "root", "--bboxdir", "deep", cwd=tree)
    assert deep.returncode == 0
    assert run("compare", "--cpp", tree / "deep", "--images", tree / "root", cwd=tree).returncode == 0
    edited = tree / "boxes" / "b" / "x.txt"
    x1, y1, x2, y2 = box_lines(edited)[0]
    edited.write_text(f"{x1} {y1} {x2 + 1} {y2}\n")
    report = tree / "report.json"
    differs = run("compare", "--cpp", tree / "boxes", tree / "faces.json", "--report", report, cwd=tree)
    assert differs.returncode == 1
    statuses = {i["path"]: i["status"] for i in json.loads(report.read_text())["images"]}
    assert statuses.pop("b/x") == "beyond tolerance"  # the edited file, paired with its own image
    assert sorted(statuses) == ["a/x", "y"] and set(statuses.values()) <= {"identical", "within tolerance"}


def test_box_files_of_video_frames_are_mirrored_too(tree):
    frames = [cv2.resize(cv2.imread(str(SAMPLE)), (320, 240))] * 2
    path = tree / "root" / "a" / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    done = run("detect", "root/a/clip.avi", "--bboxdir", "boxes", cwd=tree)
    assert done.returncode == 0, done.stderr
    assert files_under(tree / "boxes") == ["root/a/clip#frame=0.txt", "root/a/clip#frame=1.txt"]
    assert os.path.getsize(tree / "boxes" / "root" / "a" / "clip#frame=0.txt") > 0
