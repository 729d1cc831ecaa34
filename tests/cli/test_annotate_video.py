"""`mtcnn detect VIDEO --annotate-video OUT`: the video drawn, a frame per
record, and summaries that count video frames apart from images. Real
videos written here and real `mtcnn` processes."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.process

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"
MTCNN = Path(sys.executable).parent / "mtcnn"


def run(*args, cwd):
    return subprocess.run([str(MTCNN), "detect", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def clip(tmp_path):
    frame = cv2.imread(str(SAMPLE))
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (frame.shape[1], frame.shape[0]))
    for shift in range(6):
        writer.write(np.roll(frame, 4 * shift, axis=1))
    writer.release()
    return tmp_path


def test_the_drawn_video_has_a_frame_per_record_at_the_sampled_rate(clip):
    done = run("clip.avi", "--every", 2, "--annotate-video", "drawn.mp4", "-o", "faces.jsonl", cwd=clip)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (clip / "faces.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 2, 4]
    capture = cv2.VideoCapture(str(clip / "drawn.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    drawn = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        drawn.append(image)
    assert len(drawn) == len(records)
    source = cv2.VideoCapture(str(clip / "clip.avi"))
    ok, first = source.read()
    # boxes were drawn: the drawn frame differs from the source most where the first face's box runs
    face = records[0]["faces"][0]
    x, y, w = (int(round(face[k])) for k in ("x", "y", "width"))
    edge = np.abs(drawn[0][y, x:x + w].astype(int) - first[y, x:x + w].astype(int)).mean()
    inside = np.abs(drawn[0][y + 20, x + 10:x + w - 10].astype(int) - first[y + 20, x + 10:x + w - 10].astype(int)).mean()
    assert edge > 40 > inside
    assert [p.name for p in clip.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_the_summary_counts_video_frames_apart_from_images(clip):
    cv2.imwrite(str(clip / "photo.png"), cv2.imread(str(SAMPLE)))
    done = run("clip.avi", "photo.png", "--every", 3, "-o", "faces.jsonl", cwd=clip)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1].startswith("mtcnn: 1 image and 2 video frames, ")


@pytest.mark.parametrize("args, fragment", [
    (["clip.avi", "--annotate-video", "drawn.gif"], "end the name in"),
    (["clip.avi", "clip.avi.copy.avi", "--annotate-video", "drawn.mp4"], "give exactly one video PATH (2"),
    (["clip.avi", "--annotate-video", "drawn.mp4", "--resume", "-o", "f.jsonl"], "cannot be resumed"),
])
def test_annotate_video_options_that_cannot_work_are_one_line_and_exit_2(clip, args, fragment):
    (clip / "clip.avi.copy.avi").write_bytes((clip / "clip.avi").read_bytes())
    done = run(*args, cwd=clip)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and fragment in done.stderr, done.stderr
