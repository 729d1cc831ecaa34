"""The MTCNN cascade as OpenFace 2.2 runs it: pyramid, PNet, RNet, ONet.

Step numbers refer to section 3 of the shared OpenFace notes. Every step is a
plain function over arrays; `Detector` strings them together.
"""
from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import boxes as bx
from . import pyramid
from .boxes import FACE_SUPPORT, PNET_STRIDE
from ..base.defaults import MIN_FACE, T1, T2, T3
from .cvexact import crop_and_resize, exp, expf, normalise, resize_bilinear
from . import memory
from . import models as models_module
from .network import Network
from .pyramid import pyramid_scales  # noqa: F401 (part of this module's interface)

PNET_NMS, CROSS_SCALE_NMS, RNET_NMS, ONET_NMS = 0.5, 0.7, 0.7, 0.7
RNET_SIZE, ONET_SIZE = 24, 48
# RNet/ONet run on batches of crops whose largest activations fit in a core's
# cache: far faster than one batch of everything, and the same bits (every
# output is its own chain of operations, whatever else shares the batch).
CACHE_BYTES = 2 << 20


class Corners(NamedTuple):
    """A box's corners (x1, y1, x2, y2); shown to 2 decimals, kept whole."""
    x1: float
    y1: float
    x2: float
    y2: float

    def __repr__(self) -> str:
        return f"Corners(x1={self.x1:.2f}, y1={self.y1:.2f}, x2={self.x2:.2f}, y2={self.y2:.2f})"


@dataclass(frozen=True)
class Face:
    """One detection. x, y, width, height follow OpenFace's box convention
    (top-left corner and size, after OpenFace's final tightening), in pixels of
    the input image. confidence is ONet's face probability. landmarks holds the
    five facial points as (x, y) pixel pairs, in ONet's order: the eye on the
    image's left, the eye on the image's right, the nose tip, the mouth corner
    on the image's left, the mouth corner on the image's right."""
    x: float
    y: float
    width: float
    height: float
    confidence: float
    landmarks: tuple[tuple[float, float], ...]

    # The five points by name, as the `mtcnn` package and facenet-pytorch name
    # them: "left" is the image's left (a frontal face's own right eye).
    POINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x, y, width, height)."""
        return self.x, self.y, self.width, self.height

    @property
    def corners(self) -> "Corners":
        """(x1, y1, x2, y2): the top-left and bottom-right corners, x2 = x +
        width and y2 = y + height summed in float32, as --bboxdir writes them."""
        x, y = np.float32(self.x), np.float32(self.y)
        return Corners(float(x), float(y), float(x + np.float32(self.width)), float(y + np.float32(self.height)))

    def point(self, name: str) -> tuple[float, float] | None:
        """One of POINT_NAMES as (x, y); None when the landmarks were left out."""
        if not self.landmarks:
            return None
        return self.landmarks[self.POINT_NAMES.index(name)]

    left_eye = property(lambda self: self.point("left_eye"), doc="The eye on the image's left.")
    right_eye = property(lambda self: self.point("right_eye"), doc="The eye on the image's right.")
    nose = property(lambda self: self.point("nose"), doc="The nose tip.")
    mouth_left = property(lambda self: self.point("mouth_left"), doc="The mouth corner on the image's left.")
    mouth_right = property(lambda self: self.point("mouth_right"), doc="The mouth corner on the image's right.")

    def crop_matrix(self, size: int = 112, style: str = "arcface", margin: float = 0.0) -> list:
        """The 2 x 3 affine matrix (image -> crop coordinates) of crop(), as
        nested lists of floats, for records (see detector/align.py)."""
        from .align import face_matrix  # OpenCV: only when a crop is asked for

        return face_matrix(self, size, style, margin).tolist()

    def crop(self, image, size: int = 112, style: str = "arcface", margin: float = 0.0):
        """The face cut out of image (the array it was found in, H x W or H x W
        x C) as a size x size array of the same dtype and channel order (a BGR
        array gives a BGR crop). style "arcface": aligned by the landmarks onto
        ArcFace's 112 x 112 template, scaled to size; "box": the box squared
        about its centre. margin (>= 0) grows the view by that fraction of its
        side. Parts outside the image are zeros. ValueError for a bad style,
        size < 1 or margin < 0 (see detector/align.py)."""
        from . import align  # OpenCV: only when a crop is asked for

        return align.crop(image, align.face_matrix(self, size, style, margin), size)

    def to_dict(self) -> dict:
        """The face as `mtcnn detect` writes it in JSON: x, y, width, height,
        confidence, landmarks ([[x, y] x 5], absent when left out). Each number
        is the shortest decimal that reads back as the same float32, as the
        CLI prints it; json.dumps takes the dict as it is."""
        face = {name: _short(getattr(self, name)) for name in ("x", "y", "width", "height", "confidence")}
        if self.landmarks:
            face["landmarks"] = [[_short(px), _short(py)] for px, py in self.landmarks]
        return face

    def __repr__(self) -> str:
        """Pixels to 2 decimals, the confidence to 4, for reading; the fields
        and to_dict() keep every bit."""
        text = ", ".join(f"{name}={getattr(self, name):.2f}" for name in ("x", "y", "width", "height"))
        points = ", ".join(f"({px:.2f}, {py:.2f})" for px, py in self.landmarks or ())
        return f"Face({text}, confidence={self.confidence:.4f}, landmarks=({points}))"


def _short(value: float) -> float:
    """The shortest decimal that reads back as float32(value), as a float."""
    return float(str(np.float32(value)))


def check_parameters(min_face, t1, t2, t3) -> None:
    if isinstance(min_face, bool) or not isinstance(min_face, (int, np.integer)) or min_face < 12:
        raise ValueError(f"min_face must be an integer >= 12, got {min_face!r}")
    for name, t in (("t1", t1), ("t2", t2), ("t3", t3)):
        if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)) or not 0.0 <= t <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1], got {t!r}")


# Detector.detect converts each image into a buffer kept per thread (up to this
# size): a photo's float copy is its largest array, above malloc's mmap
# threshold for 3 megapixels or more, and fresh pages cost a fault each.
KEEP_CONVERTED_BYTES = 64 << 20
_converted = threading.local()


def as_bgr_float(image, reuse: bool = False) -> np.ndarray:
    """uint8 BGR (H, W, 3), grey (H, W) or (H, W, 1), or BGRA (H, W, 4) -> float32
    (H, W, 3) BGR, as the C++ converts it (grey replicated, alpha dropped).
    reuse: into this thread's kept buffer (valid until its next such call)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be 8-bit (uint8), got dtype {image.dtype} with shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be H x W (grey), H x W x 3 (BGR) or H x W x 4 (BGRA); got shape {image.shape}")
    h, w = image.shape[:2]
    if reuse and 12 * h * w <= KEEP_CONVERTED_BYTES:
        kept = getattr(_converted, "buffer", None)
        if kept is None or kept.size < 3 * h * w:
            kept = _converted.buffer = np.empty(3 * h * w, np.float32)
        out = kept[:3 * h * w].reshape(h, w, 3)
        np.copyto(out, image[:, :, :3], casting="unsafe")  # grey: its one channel to all three
        return out
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[:, :, :3].astype(np.float32)


def to_planes(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) BGR float image -> (3, N, H, W) planar network input:
    normalised, maps in the order R, G, B."""
    return normalise(np.ascontiguousarray(images.transpose(3, 0, 1, 2)[::-1]))


def pnet_probability(logit_gap: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(l0 - l1)) over a map of logit gaps l0 - l1, with OpenCV's
    array exp, in float32."""
    e = exp(logit_gap.astype(np.float32, copy=False))
    return (np.float32(1.0) / (np.float32(1.0) + e)).astype(np.float32)


def may_reach(logit_gap: np.ndarray, t1: float) -> bool:
    """Whether any PNet probability 1 / (1 + exp(gap)) can be t1 or more, judged
    from the logit gaps l0 - l1 alone (no exp): false only when every gap is
    above log(1/t1 - 1) + 0.01. That margin is far wider than the rounding of
    the exp, the sum and the division when t1 <= 0.99 (the probability then
    stays below t1 by a relative 1e-4 at least, rounding being 1e-7); above
    0.99 every map counts as a candidate."""
    threshold = float(np.float32(t1))
    if threshold <= 0.0 or threshold > 0.99:
        return True
    return bool(logit_gap.min() <= math.log(1.0 / threshold - 1.0) + 0.01)


def face_probability(raw: np.ndarray) -> np.ndarray:
    """RNet/ONet: 1 / (1 + expf(o0 - o1)), the exp in float, the rest in double."""
    e = expf((raw[:, 0] - raw[:, 1]).astype(np.float32)).astype(np.float64)
    return (1.0 / (1.0 + e)).astype(np.float32)


def landmarks_in_image(boxes: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """ONet outputs 6..15 -> (n, 5, 2) pixel positions. The first five outputs are
    x, the last five y, as fractions of the window ONet saw: the crop starting at
    (x - 1, y - 1) of size (w + 1, h + 1) around the box fed to ONet."""
    x0 = boxes[:, 0:1].astype(np.float64) - 1.0
    y0 = boxes[:, 1:2].astype(np.float64) - 1.0
    w = boxes[:, 2:3].astype(np.float64) + 1.0
    h = boxes[:, 3:4].astype(np.float64) + 1.0
    xs = x0 + w * raw[:, 0:5].astype(np.float64)
    ys = y0 + h * raw[:, 5:10].astype(np.float64)
    return np.stack([xs, ys], axis=2).astype(np.float32)


class Cascade:
    """The three networks and the steps between them.

    `trace`, when a dict is given, receives the intermediate results the C++
    stage dumps contain. `timings`, when a dict is given, accumulates seconds
    per stage: "pnet" (pyramid and PNet, with its per-scale NMS), "rnet",
    "onet" (crops and network) and "boxes" (the NMS and box arithmetic between)."""

    def __init__(self, pnet: Network, rnet: Network, onet: Network):
        self.pnet, self.rnet, self.onet = pnet, rnet, onet

    def run(self, img: np.ndarray, min_face: int, t1: float, t2: float, t3: float,
            trace: dict | None = None, timings: dict | None = None):
        """img float32 (H, W, 3) BGR -> (boxes (n, 4), scores (n,), landmarks (n, 5, 2))."""
        clock = _Clock(timings)
        nothing = (bx.empty_boxes(), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

        with clock("pnet"):
            boxes, scores, corrections = self.pnet_stage(img, min_face, t1, trace)
        if not len(boxes) and trace is None:
            return nothing
        with clock("boxes"):
            keep = bx.nms(boxes, scores, CROSS_SCALE_NMS)
            boxes = bx.rectify(bx.apply_correction(boxes[keep], corrections[keep], add1=False))
        if trace is not None:
            trace["pnet_boxes"], trace["pnet_scores"] = boxes, scores[keep]
        if not len(boxes):
            return nothing

        with clock("rnet"):
            boxes, raw = self.refine(self.rnet, img, boxes, RNET_SIZE)
        with clock("boxes"):
            scores = face_probability(raw)
            above = scores >= np.float32(t2)
            boxes, scores, corrections = boxes[above], scores[above], raw[above, 2:6]
            keep = bx.nms(boxes, scores, RNET_NMS)
            boxes = bx.rectify(bx.apply_correction(boxes[keep], corrections[keep], add1=False))
        if trace is not None:
            trace["rnet_raw"], trace["rnet_boxes"] = raw, boxes
        if not len(boxes):
            return nothing

        with clock("onet"):
            boxes, onet_raw = self.refine(self.onet, img, boxes, ONET_SIZE)
        with clock("boxes"):
            scores = face_probability(onet_raw)
            above = scores >= np.float32(t3)
            onet_input, scores, raw = boxes[above], scores[above], onet_raw[above]
            boxes = bx.apply_correction(onet_input, raw[:, 2:6], add1=True)
            keep = bx.nms(boxes, scores, ONET_NMS, minimum=True)
            boxes, scores = boxes[keep], scores[keep]
            landmarks = landmarks_in_image(onet_input[keep], raw[keep, 6:16])
            final = bx.tighten(boxes)
        if trace is not None:
            trace["onet_raw"], trace["onet_boxes"] = onet_raw, boxes
        return final, scores, landmarks

    def forget_image_sizes(self) -> None:
        """Drop what was kept per image size (pyramid plans, resize taps, mosaic
        regions): the next image then costs what the first of its size costs."""
        pyramid.clear_caches()
        for network in (self.pnet, self.rnet, self.onet):
            network.forget_sizes()

    def pnet_stage(self, img, min_face, t1, trace=None):
        """Steps 1-4 up to the per-scale NMS: boxes, scores, corrections of all
        scales, concatenated in scale order. Large levels run alone (in bands);
        the small ones together, in one mosaic (see pyramid)."""
        layout = pyramid.plan(*img.shape[:2], min_face)
        maps = []  # (PNet's output (6, h', w'), [(level, its region (y, x, h, w) in that output)])
        for lv in layout.alone:
            out = self.pnet_in_bands(to_planes(resize_bilinear(img, lv.w, lv.h)[None]))[:, 0]
            maps.append((out, [(lv, (0, 0) + out.shape[1:])]))
        if layout.placed:
            regions = [lv.region for lv in layout.placed]
            out = self.pnet.planar(to_planes(pyramid.mosaic(img, layout)[None]), regions=regions)[:, 0]
            maps.append((out, list(zip(layout.placed, self.pnet.output_regions(regions)))))
        found = []
        for out, levels in maps:
            gap = out[0] - out[1]  # (h', w') logit gaps
            if trace is None and not may_reach(gap, t1):
                continue  # no candidates in these levels
            prob = pnet_probability(gap)  # one exp for all the levels
            for lv, (y, x, h, w) in levels:
                level_prob, level_out = prob[y:y + h, x:x + w], out[:, y:y + h, x:x + w]
                if trace is None and not (level_prob >= np.float32(t1)).any():
                    continue  # no candidates at this scale
                boxes, scores, corrections = bx.proposals(level_prob, level_out[2:6],
                                                          lv.scale, t1)
                keep = bx.nms(boxes, scores, PNET_NMS)
                found.append((boxes[keep], scores[keep], corrections[keep]))
                if trace is not None:
                    trace.setdefault("scales", []).append({
                        "scale": lv.scale, "w_pyr": lv.w, "h_pyr": lv.h,
                        "pnet_out_w": w, "pnet_out_h": h,
                        "n_before_nms": len(boxes), "n_after_nms": len(keep),
                        "boxes": boxes[keep], "scores": scores[keep], "corrections": corrections[keep]})
        if not found:
            return bx.empty_boxes(), np.zeros(0, np.float32), np.zeros((0, 4), np.float32)
        return tuple(np.concatenate(parts) for parts in zip(*found))

    def pnet_in_bands(self, maps: np.ndarray) -> np.ndarray:
        """PNet over one pyramid level, planar (3, 1, h, w) -> (6, 1, h', w'), computed in
        bands of output rows whose activations fit in cache. Output row r sees
        input rows 2r .. 2r+11, so a band of rows [a, b) needs input rows
        [2a, 2b+10); starting on even rows keeps the pooling windows aligned,
        and the last band runs to the bottom edge. Same bits as one pass."""
        h, w = maps.shape[2:4]
        out_h = self.pnet.output_size(h, w)[0]
        rows = max(8, CACHE_BYTES // (PNET_STRIDE * 40 * w))  # ~ the first conv's output per band
        if out_h <= rows:
            return self.pnet.planar(maps)
        bands = []
        for a in range(0, out_h, rows):
            b = min(a + rows, out_h)
            bottom = h if b == out_h else PNET_STRIDE * b + FACE_SUPPORT - PNET_STRIDE
            bands.append(self.pnet.planar(maps[:, :, PNET_STRIDE * a:bottom]))
        return np.concatenate(bands, axis=2)

    @staticmethod
    def refine(network: Network, img, boxes, size):
        """Run RNet or ONet on the crops of all boxes, a batch at a time. Boxes
        too degenerate to crop (negative size, where the C++ would fail) are
        dropped. Returns the boxes kept and the network's outputs (n, O)."""
        boxes = boxes[boxes[:, 2] >= 0]
        crops = crop_and_resize(img, boxes.astype(np.int64), size)  # (n, size, size, 3)
        batch = max(1, CACHE_BYTES // (4 * size * size * 32))  # ~ the first conv's output per crop
        if len(crops) <= batch:
            return boxes, network.planar(to_planes(crops))
        return boxes, np.concatenate([network.planar(to_planes(crops[i:i + batch]))
                                      for i in range(0, len(crops), batch)])


class _Clock:
    """Adds the wall time of `with clock(name):` blocks to timings[name]."""

    def __init__(self, timings: dict | None):
        self.timings, self.name, self.start = timings, None, 0.0

    def __call__(self, name: str):
        self.name = name
        return self

    def __enter__(self):
        if self.timings is not None:
            self.start = time.perf_counter()

    def __exit__(self, *exc):
        if self.timings is not None:
            self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.start


class Detector:
    """OpenFace 2.2's MTCNN face detector.

    models: an OpenFace model folder (or a checkout/install containing one);
    default $MTCNN_MODELS, then the bundled MIT weights. The networks are read
    once, here. min_face is the smallest face size searched for, in pixels;
    t1, t2, t3 the PNet, RNet and ONet score thresholds.

    What depends only on an image's size (the pyramid's layout, the resize
    taps) is computed for the first image of that size and kept for the next
    ones (the last few sizes, 25 MB at most);
    `cascade.forget_image_sizes()` drops it. The first Detector of a process
    asks glibc's malloc to keep freed working memory for the next image (see
    detector/memory.py): free memory at the top of a heap goes back to the
    kernel only beyond 128 MB. Each image's float copy goes into a buffer
    kept per thread (images up to KEEP_CONVERTED_BYTES as float)."""

    def __init__(self, models=None, min_face: int = MIN_FACE, t1: float = T1,
                 t2: float = T2, t3: float = T3):
        check_parameters(min_face, t1, t2, t3)
        memory.keep_working_memory()

        self.models = models_module.load_models(models)
        self.min_face, self.t1, self.t2, self.t3 = int(min_face), float(t1), float(t2), float(t3)
        self.cascade = Cascade(Network(self.models.pnet, "PNet"), Network(self.models.rnet, "RNet"),
                               Network(self.models.onet, "ONet"))

    def twin(self) -> "Detector":
        """A detector for another thread: the same loaded models and
        parameters, its own networks' working state (the same bits)."""
        twin = copy.copy(self)
        twin.cascade = Cascade(Network(self.models.pnet, "PNet"), Network(self.models.rnet, "RNet"),
                               Network(self.models.onet, "ONet"))
        return twin

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(models={str(self.models.source)!r}, min_face={self.min_face}, "
                f"t1={self.t1}, t2={self.t2}, t3={self.t3})")

    def detect(self, image, timings: dict | None = None) -> list[Face]:
        """image: uint8 BGR (H x W x 3), grey (H x W) or BGRA (H x W x 4), as
        cv2.imread gives. Returns the faces in the order the C++ returns them.
        timings, if given, accumulates seconds per stage (see Cascade)."""
        img = as_bgr_float(image, reuse=True)
        boxes, scores, landmarks = self.cascade.run(img, self.min_face, self.t1, self.t2, self.t3,
                                                    timings=timings)
        return [
            Face(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(s),
                 tuple((float(p[0]), float(p[1])) for p in pts))
            for b, s, pts in zip(boxes, scores, landmarks)
        ]
