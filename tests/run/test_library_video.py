"""Detector.detect_video: the frames and records of `mtcnn detect VIDEO --every N`,
from Python. The videos are written here (Motion JPEG in AVI, which the
installed OpenCV writes and reads) from the bundled synthetic faces, shifted
a little from frame to frame; the command runs as a real process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtcnn_cli import ImageError
from mtcnn_cli.io.records import record_json

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "fixtures" / "synthetic_faces.png"
FPS = 8
FRAMES = 7


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """clip.avi (7 frames), cut.avi (its first 3/5: the container still
    announces 7) and bad.avi (not a video)."""
    where = tmp_path_factory.mktemp("videos")
    image = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    height, width = image.shape[:2]
    writer = cv2.VideoWriter(str(where / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
    assert writer.isOpened(), "this OpenCV cannot write Motion JPEG"
    for i in range(FRAMES):
        writer.write(np.roll(image, (3 * i, 5 * i), axis=(0, 1)))
    writer.release()
    data = (where / "clip.avi").read_bytes()
    (where / "cut.avi").write_bytes(data[: len(data) * 3 // 5])
    (where / "bad.avi").write_bytes(b"this is no video at all\n")
    return where


def mtcnn_command():
    """The installed `mtcnn` beside this Python, else the same entry point through it."""
    script = Path(sys.executable).with_name("mtcnn")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from mtcnn_cli.cli import main; main(prog_name='mtcnn')"]


@pytest.fixture(scope="module")
def cli_records(folder):
    """The command's JSONL lines for clip.avi and cut.avi at --every 2, by path."""
    done = subprocess.run(mtcnn_command() + ["detect", "clip.avi", "cut.avi", "--every", "2", "--format", "jsonl"],
                          cwd=folder, capture_output=True, timeout=300)
    assert done.returncode == 1, done.stderr  # cut.avi's break is a skipped frame
    assert b"Traceback" not in done.stderr
    lines = done.stdout.decode("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return {record["path"]: (line, record) for line, record in zip(lines, records)}


def decoded(path):
    """Every frame of a video, by OpenCV's VideoCapture, read here directly."""
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            capture.release()
            return frames
        frames.append(frame)


def test_detect_video_gives_the_records_of_the_command(detector, folder, cli_records, monkeypatch):
    monkeypatch.chdir(folder)  # the paths as the command was given them
    results = [r for name in ("clip.avi", "cut.avi") for r in detector.detect_video(name, every=2)]
    assert [r.path for r in results] == list(cli_records)
    assert [r.path for r in results][:4] == [f"clip.avi#frame={i}" for i in (0, 2, 4, 6)]
    for result in results:
        line, record = cli_records[result.path]
        assert (result.frame, result.time) == (record["frame"], record["time"])
        assert (result.width, result.height) == (record["width"], record["height"])
        if result.error is not None:
            assert result.faces is None and result.error == record["error"]
        else:
            assert [f.to_dict() for f in result.faces] == record["faces"]  # boxes, confidences, landmarks
        run = line.index(', "run": ')
        assert record_json(result) == line[:run] + "}"  # the very bytes the command wrote
    found = [r for r in results if r.faces]
    assert len(found) >= 5 and all(len(r.faces) == 2 for r in found)
    broken = results[-1]
    assert broken.path == "cut.avi#frame=4" and broken.error.startswith("the video breaks at frame 4 of the 7")


def test_the_frames_are_videocaptures_own(detector, folder):
    frames = decoded(folder / "clip.avi")
    assert len(frames) == FRAMES
    results = list(detector.detect_video(folder / "clip.avi"))
    assert [r.frame for r in results] == list(range(FRAMES))
    assert [r.time for r in results] == [round(i / FPS, 6) for i in range(FRAMES)]
    for result, frame in zip(results, frames):
        assert result.path == f"{folder / 'clip.avi'}#frame={result.frame}"
        assert (result.height, result.width) == frame.shape[:2] and result.error is None
        assert result.faces == detector.detect(frame)
    every_third = list(detector.detect_video(str(folder / "clip.avi"), every=3))
    assert [r.frame for r in every_third] == [0, 3, 6]
    assert [r.faces for r in every_third] == [results[i].faces for i in (0, 3, 6)]


def test_a_video_that_cannot_be_opened_raises_image_error_naming_it(detector, folder):
    for name, reason in (("bad.avi", "cannot be opened as a video"), ("missing.avi", "no such file")):
        path = str(folder / name)
        frames = detector.detect_video(path)  # nothing is read until iterated
        with pytest.raises(ImageError, match=reason) as caught:
            next(frames)
        assert path in str(caught.value)


def test_bad_arguments_and_videos_given_to_detect(detector, folder):
    for every in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="every"):
            detector.detect_video(folder / "clip.avi", every=every)
    with pytest.raises(ValueError, match="path"):
        detector.detect_video(np.zeros((10, 10, 3), np.uint8))
    for call in (lambda: detector.detect(folder / "clip.avi"), lambda: list(detector.detect_many([folder / "clip.avi"])),
                 lambda: detector.crops(folder / "clip.avi")):
        with pytest.raises(ValueError, match="is a video: .*detect_video"):
            call()
