"""Comparing two sets of face detections: OpenFace's C++ against ours, or two runs of ours.

A set is read from any of the formats below (detected from the content):
- "json": the OpenFace C++ reference JSON, or the JSON of `mtcnn detect` (same shape:
  `{"params": {...}, "images": [{"path", "width", "height", "faces": [...]}]}`, an image
  that failed has `"error"` instead of `"faces"`);
- "jsonl": one image record per line, as `mtcnn detect --format jsonl` writes;
- "csv": `mtcnn detect`'s CSV, one row per face;
- "bboxdir": an OpenFace `-bboxdir` folder, one `<stem>.txt` per image holding
  `min_x min_y max_x max_y` per face (no confidences).

Faces of one image are paired one-to-one by an optimal assignment on IoU
(pairing.py); each pair gives the differences of x, y, width, height and
confidence (stats.py). Values are compared as float32, the precision both
detectors keep. The package: the sets (sets.py), reading them (readers.py),
running our detector on REF's images (ours.py), pairing, statistics and the
report (report.py); `run_compare` (run.py) is the whole command.
"""
