"""Video files as inputs: one record per frame, as OpenCV's
VideoCapture decodes it, with the real detector.

The videos are made here from corpus images with OpenCV's VideoWriter: FFV1
in Matroska (lossless, so the frames are the source images' pixels) and
Motion JPEG in AVI (lossy). The installed opencv-python-headless writes both
(checked when this test was designed; H.264 it cannot write)."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mtcnn_cli.cli import main

SOURCES = ["facerec__obama_small.jpg", "openface__sample1.jpg", "insightface__no_face.png",
           "dlib__000179_02159509.jpg"]
SIZE = (320, 240)
FPS = 10


def detect(*args):
    result = CliRunner().invoke(main, ["detect", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def write_video(path, frames, fourcc):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, SIZE)
    assert writer.isOpened(), f"this OpenCV cannot write {fourcc}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def decoded(path):
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.fixture(scope="module")
def sources(corpus):
    return [cv2.resize(cv2.imread(str(corpus / name), cv2.IMREAD_COLOR), SIZE) for name in SOURCES]


@pytest.fixture(scope="module")
def videos(sources, tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {"ffv1": write_video(folder / "clip.mkv", sources, "FFV1"),
            "mjpg": write_video(folder / "clip.avi", sources, "MJPG")}


def as_f32(faces):
    return [np.float32([f["x"], f["y"], f["width"], f["height"], f["confidence"], *np.ravel(f["landmarks"])])
            for f in faces]


def same(faces_a, faces_b):
    a, b = as_f32(faces_a), as_f32(faces_b)
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("codec", ["ffv1", "mjpg"])
def test_each_frame_is_detect_on_that_frame_bit_for_bit(videos, sources, detector, codec, tmp_path):
    video = videos[codec]
    result = detect(video, "-o", tmp_path / "out.json", "-q")
    assert result.exit_code == 0, result.stderr
    records = json.loads((tmp_path / "out.json").read_text())["images"]
    frames = decoded(video)
    assert len(frames) == len(SOURCES) == len(records)
    assert [r["path"] for r in records] == [f"{video}#frame={i}" for i in range(len(frames))]
    assert [r["frame"] for r in records] == list(range(len(frames)))
    assert [r["time"] for r in records] == [i / FPS for i in range(len(frames))]
    assert sum(len(r["faces"]) for r in records) >= 3
    for record, frame, source in zip(records, frames, sources):
        assert (record["width"], record["height"]) == SIZE
        assert same(record["faces"], [f.to_dict() for f in detector.detect(frame)])
        if codec == "ffv1":  # lossless: the frames are the source images
            assert np.array_equal(frame, source)
            assert same(record["faces"], [f.to_dict() for f in detector.detect(source)])


def test_every_samples_frames(videos, tmp_path):
    result = detect(videos["ffv1"], "--every", 3, "-q")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["frame"], r["time"]) for r in records] == [(0, 0.0), (3, 0.3)]


def test_jobs_and_resume_give_the_same_records(videos, tmp_path):
    folder = videos["ffv1"].parent
    whole = detect(folder, "-q", "-o", tmp_path / "one.jsonl")
    assert whole.exit_code == 0, whole.stderr
    expected = (tmp_path / "one.jsonl").read_text()
    assert len(expected.splitlines()) == 2 * len(SOURCES)  # both videos, every frame
    detect(folder, "-q", "-j", 2, "-o", tmp_path / "two.jsonl")
    assert (tmp_path / "two.jsonl").read_text() == expected
    lines = expected.splitlines(keepends=True)
    (tmp_path / "resumed.jsonl").write_text("".join(lines[:3]) + lines[3][:25])  # killed in frame 3
    resumed = detect(folder, "--resume", "-o", tmp_path / "resumed.jsonl")
    assert resumed.exit_code == 0, resumed.stderr
    assert (tmp_path / "resumed.jsonl").read_text() == expected
    assert "(3 done before)" in resumed.stderr


def test_a_truncated_video_keeps_the_frames_before(videos, detector, tmp_path):
    data = videos["ffv1"].read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 3 // 5])
    result = detect(cut, "-q")
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    kept = decoded(cut)
    assert 0 < len(kept) < len(SOURCES) and len(records) == len(kept) + 1
    for record, frame in zip(records, kept):
        assert same(record["faces"], [f.to_dict() for f in detector.detect(frame)])
    broken = records[-1]
    assert broken["frame"] == len(kept) and broken["path"] == f"{cut}#frame={len(kept)}"
    assert broken["error"].startswith(f"the video breaks at frame {len(kept)} of the {len(SOURCES)}")
    assert result.stderr.count("mtcnn: skipped") == 1 and "Traceback" not in result.stderr


def test_a_file_that_is_no_video_is_skipped(tmp_path):
    (tmp_path / "fake.mp4").write_bytes(b"not a video at all")
    result = detect(tmp_path / "fake.mp4", "-q")
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record.pop("run")["params"]["min_face"] == 60  # the provenance every JSONL record carries
    assert record == {"path": str(tmp_path / "fake.mp4"), "width": None, "height": None,
                      "error": "cannot be opened as a video (unknown format or codec)"}


def test_annotated_frames_and_csv(videos, tmp_path, monkeypatch):
    result = detect(videos["ffv1"], "--annotate", tmp_path / "drawn", "--every", 2, "-o", tmp_path / "o.csv")
    assert result.exit_code == 0, result.stderr
    drawn = sorted(p.name for p in tmp_path.joinpath("drawn").rglob("*.png"))
    assert drawn == ["clip.mkv#frame=0.png", "clip.mkv#frame=2.png"]
    header, *rows = (tmp_path / "o.csv").read_text().splitlines()
    assert header.startswith("path,frame,time,face,x,")
    assert rows[0].startswith(f"{videos['ffv1']}#frame=0,0,0.0,0,")
    # drawn beside the video itself: the frames' names are not the video's
    monkeypatch.chdir(videos["ffv1"].parent)
    beside = detect(videos["ffv1"].name, "--annotate", ".", "--every", 4, "-q")
    assert beside.exit_code == 0, beside.stderr
    assert (videos["ffv1"].parent / "clip.mkv#frame=0.png").exists()
    (videos["ffv1"].parent / "clip.mkv#frame=0.png").unlink()
