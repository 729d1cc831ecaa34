"""Parity with OpenFace 2.2's C++ detector, measured against ../shared/reference.

Layer by layer (PNet's first pyramid level), stage by stage (every stage dump of
stages_mf60.json) and end to end (all four reference parameter sets)."""
import json

import cv2
import numpy as np
import pytest

from mtcnn_cli.detector.cascade import Detector, as_bgr_float

from ..parity_report import record

pytestmark = pytest.mark.parity

SETS = ["mf60", "mf20", "mf40_loose", "mf100_strict"]


def f32(path, shape):
    return np.fromfile(path, "<f4").reshape(shape)


def load_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def openface_detector(openface_models):
    return Detector(models=openface_models)


def box_array(items):
    return np.array([[b["x"], b["y"], b["width"], b["height"]] for b in items], np.float32).reshape(-1, 4)


def read(shared, rel_path):
    img = cv2.imread(str(shared / rel_path), cv2.IMREAD_COLOR)
    assert img is not None, rel_path
    return img


def test_pnet_layer_outputs_match_cpp(openface_detector, reference):
    meta = load_json(reference / "stages_mf60.pnet_layers_s0.json")
    spec = load_json(reference / "stages_mf60.pnet_input_s0.json")
    x = f32(reference / spec["file"], spec["shape"])  # (H, W, 3) BGR, normalised
    trace = []
    openface_detector.cascade.pnet(np.ascontiguousarray(x[None, :, :, ::-1]), trace)  # RGB maps
    assert len(trace) == len(meta["layers"])
    for layer, ours in zip(meta["layers"], trace):
        expected = f32(reference / layer["file"].split("/")[-1], layer["shape"])
        maps = ours[0].transpose(2, 0, 1)  # (H, W, C) -> the dump's (C, H, W)
        assert maps.shape == expected.shape, layer
        np.testing.assert_array_equal(maps, expected, err_msg=f"PNet layer {layer['index']} ({layer['type_name']})")


STAGES = None


def stage_images(reference_dir):
    global STAGES
    if STAGES is None:
        STAGES = load_json(reference_dir / "stages_mf60.json")
    return STAGES["images"]


def pytest_generate_tests(metafunc):
    if "stage_index" in metafunc.fixturenames:
        metafunc.parametrize("stage_index", range(76))
    if "set_name" in metafunc.fixturenames:
        metafunc.parametrize("set_name", SETS)


def test_stages_match_cpp(openface_detector, reference, shared, stage_index):
    image = stage_images(reference)[stage_index]
    expected = image["stages"]
    trace = {}
    openface_detector.cascade.run(as_bgr_float(read(shared, image["path"])), 60, 0.6, 0.7, 0.7, trace)
    where = image["path"]

    scales = trace.get("scales", [])
    assert len(scales) == expected["num_scales"], where
    for ours, theirs in zip(scales, expected["scales"]):
        at = f"{where} scale {theirs['index']}"
        assert ours["scale"] == theirs["scale"], at
        assert (ours["w_pyr"], ours["h_pyr"]) == (theirs["w_pyr"], theirs["h_pyr"]), at
        assert (ours["pnet_out_w"], ours["pnet_out_h"]) == (theirs["pnet_out_w"], theirs["pnet_out_h"]), at
        assert (ours["n_before_nms"], ours["n_after_nms"]) == (theirs["n_before_nms"], theirs["n_after_nms"]), at
        np.testing.assert_array_equal(ours["boxes"], box_array([p["box"] for p in theirs["after_nms"]]), err_msg=at)
        np.testing.assert_array_equal(ours["scores"], np.float32([p["score"] for p in theirs["after_nms"]]), err_msg=at)
        np.testing.assert_array_equal(
            ours["corrections"], np.float32([p["correction"] for p in theirs["after_nms"]]).reshape(-1, 4), err_msg=at)

    # RNet inputs: after cross-scale NMS, correction and rectify
    np.testing.assert_array_equal(trace["pnet_boxes"], box_array(expected["pnet_boxes"]), err_msg=where)
    if not expected["pnet_boxes"]:
        return
    rnet_raw = np.float32([r["raw"] for r in expected["rnet"]])
    np.testing.assert_array_equal(trace["rnet_raw"], rnet_raw, err_msg=f"{where} RNet outputs")
    np.testing.assert_array_equal(trace["rnet_boxes"], box_array(expected["rnet_boxes"]), err_msg=where)
    if not expected["rnet_boxes"]:
        return
    onet_raw = np.float32([r["raw"] for r in expected["onet"]])
    np.testing.assert_array_equal(trace["onet_raw"], onet_raw, err_msg=f"{where} ONet outputs")
    np.testing.assert_array_equal(trace["onet_boxes"], box_array(expected["onet_boxes"]), err_msg=where)


def test_end_to_end_matches_cpp(openface_models, reference, shared, set_name):
    ref = load_json(reference / f"{set_name}.json")
    p = ref["params"]
    detector = Detector(models=openface_models, min_face=p["min_face"], t1=p["t1"], t2=p["t2"], t3=p["t3"])
    problems, exact, worst_box, worst_conf = [], 0, 0.0, 0.0
    for image in ref["images"]:
        faces = detector.detect(read(shared, image["path"]))
        ours = np.float32([[f.x, f.y, f.width, f.height] for f in faces]).reshape(-1, 4)
        ours_conf = np.float32([f.confidence for f in faces])
        theirs = box_array(image["faces"])
        theirs_conf = np.float32([f["confidence"] for f in image["faces"]])
        if len(ours) != len(theirs):
            problems.append(f"{image['path']}: {len(ours)} faces, C++ {len(theirs)}")
            continue
        d_box = float(np.abs(ours - theirs).max()) if len(ours) else 0.0
        d_conf = float(np.abs(ours_conf - theirs_conf).max()) if len(ours) else 0.0
        worst_box, worst_conf = max(worst_box, d_box), max(worst_conf, d_conf)
        if d_box > 1e-3 or d_conf > 1e-5:
            problems.append(f"{image['path']}: box off by {d_box:.3g} px, confidence by {d_conf:.3g}")
        exact += bool(np.array_equal(ours, theirs) and np.array_equal(ours_conf, theirs_conf))
    record(set_name, len(ref["images"]), exact, worst_box, worst_conf)
    assert not problems, "\n".join(problems)
    # beyond the pass mark above: every image is bit-exact, and must stay so
    assert exact == len(ref["images"]), f"{len(ref['images']) - exact} images within tolerance but not bit-exact"
