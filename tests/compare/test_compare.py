"""mtcnn_cli.compare: readers, pairing, statistics (no detector needed)."""
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtcnn_cli.compare import ours, pairing, readers, report, sets, stats


def faces(*rows):
    """Face rows (x, y, w, h[, confidence]) -> float32 (n, 5)."""
    return np.array([list(r) + [0.9] * (5 - len(r)) for r in rows], np.float32).reshape(-1, 5)


def no_faces():
    return np.zeros((0, 5), np.float32)


def one_set(images, fmt="json"):
    return sets.DetectionSet("test", fmt, images)


# --------------------------------------------------------------------------- assignment


def brute_force_best(cost):
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
    return min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.data())
def test_assignment_is_optimal_and_one_to_one(n, m, data):
    values = data.draw(st.lists(st.integers(0, 6), min_size=n * m, max_size=n * m))  # ties on purpose
    cost = np.array(values, float).reshape(n, m)
    pairs = pairing.min_cost_assignment(cost)
    assert len(pairs) == min(n, m)
    assert len(set(pairs[:, 0])) == len(pairs) and len(set(pairs[:, 1])) == len(pairs)
    assert cost[pairs[:, 0], pairs[:, 1]].sum() == pytest.approx(brute_force_best(cost))


def test_assignment_with_real_valued_costs():
    rng = np.random.default_rng(7)
    for n, m in [(4, 4), (3, 5), (5, 2), (1, 4)]:
        cost = rng.random((n, m))
        pairs = pairing.min_cost_assignment(cost)
        assert cost[pairs[:, 0], pairs[:, 1]].sum() == pytest.approx(brute_force_best(cost))


# --------------------------------------------------------------------------- pairing


def test_iou_by_hand():
    a = np.float32([[0, 0, 10, 10]])
    b = np.float32([[5, 0, 10, 10], [0, 0, 10, 10], [20, 20, 5, 5], [0, 0, 5, 5]])
    # overlap 5x10=50, union 150; identical; disjoint; inside (25 / 100)
    np.testing.assert_allclose(pairing.iou_matrix(a, b), [[50 / 150, 1.0, 0.0, 0.25]])


def test_equal_boxes_of_no_area_still_pair():
    ref = faces((5, 5, 0, 10), (50, 50, 0, 0))
    pairs, _, missing, extra = pairing.pair_faces(ref, ref[::-1].copy())
    assert pairs.tolist() == [[0, 1], [1, 0]] and len(missing) == len(extra) == 0


def test_faces_in_a_different_order_pair_with_themselves():
    ref = faces((10, 10, 50, 50, 0.99), (200, 40, 60, 61, 0.98), (100, 300, 40, 40, 0.97))
    ours = ref[[2, 0, 1]]
    pairs, ious, missing, extra = pairing.pair_faces(ref, ours)
    assert pairs.tolist() == [[0, 1], [1, 2], [2, 0]]
    assert ious.tolist() == [1.0, 1.0, 1.0]
    assert len(missing) == 0 and len(extra) == 0


def test_optimal_pairing_where_greedy_pairing_is_wrong():
    # Boxes of height 10 on one row; along x: R1 = [0, 10], R2 = [8, 18], O1 = [2, 12], O2 = [-4, 6].
    # IoU(R1, O1) = 8/12 = .667 is the largest, so greedy pairs R1-O1 and leaves R2 with O2
    # (IoU 0): one pair. The optimum is R1-O2 (6/14 = .429) + R2-O1 (4/16 = .25) = .679.
    ref = faces((0, 0, 10, 10), (8, 0, 10, 10))
    ours = faces((2, 0, 10, 10), (-4, 0, 10, 10))
    pairs, ious, missing, extra = pairing.pair_faces(ref, ours)
    assert pairs.tolist() == [[0, 1], [1, 0]]
    np.testing.assert_allclose(ious, [6 / 14, 4 / 16])
    assert len(missing) == 0 and len(extra) == 0


def test_faces_that_overlap_nothing_stay_unpaired():
    ref = faces((0, 0, 10, 10), (100, 100, 10, 10))
    ours = faces((1, 0, 10, 10), (500, 500, 10, 10), (300, 0, 10, 10))
    pairs, _, missing, extra = pairing.pair_faces(ref, ours)
    assert pairs.tolist() == [[0, 0]]
    assert missing.tolist() == [1] and extra.tolist() == [1, 2]


def test_no_faces_on_either_side():
    pairs, ious, missing, extra = pairing.pair_faces(no_faces(), faces((1, 2, 3, 4)))
    assert pairs.shape == (0, 2) and len(ious) == 0 and len(missing) == 0 and extra.tolist() == [0]


# --------------------------------------------------------------------------- comparing images


def test_identical_within_and_beyond_tolerance():
    ref = sets.ImageFaces("a.jpg", faces((10.25, 20.5, 60.125, 61.0625, 0.999)))
    same = stats.compare_image(ref, sets.ImageFaces("a.jpg", ref.faces.copy()), 0.01, 1e-4)
    assert same.identical and same.passed and same.status == "identical"

    nudged = ref.faces.copy()
    nudged[0, 0] += 0.005
    near = stats.compare_image(ref, sets.ImageFaces("a.jpg", nudged), 0.01, 1e-4)
    assert not near.identical and near.passed and near.status == "within tolerance"
    assert near.deltas[0, 0] == pytest.approx(0.005, abs=1e-5)

    shifted = ref.faces.copy()
    shifted[0, 3] -= 0.5
    far = stats.compare_image(ref, sets.ImageFaces("a.jpg", shifted), 0.01, 1e-4)
    assert not far.passed and far.status == "beyond tolerance" and far.same_count
    assert far.deltas[0, 3] == -0.5 and far.max_box_delta == 0.5


def test_confidence_tolerance():
    ref = sets.ImageFaces("a.jpg", faces((10, 20, 60, 61, 0.5)))
    changed = faces((10, 20, 60, 61, 0.5002))
    assert not stats.compare_image(ref, sets.ImageFaces("a.jpg", changed), 0.01, 1e-4).passed
    assert stats.compare_image(ref, sets.ImageFaces("a.jpg", changed), 0.01, 1e-3).passed


def test_identical_means_float32_bits():
    # 9 significant digits read back to the same float32; a difference below float32's
    # resolution (0.5 + 1e-9) is not a difference, one ulp (6e-8 at 0.5) is.
    ref = sets.ImageFaces("a.jpg", faces((10, 20, 60, 61, 0.5)))
    tiny = sets.ImageFaces("a.jpg", np.array([[10, 20, 60, 61, 0.5 + 1e-9]], np.float32))
    ulp = sets.ImageFaces("a.jpg", np.array([[10, 20, 60, 61, np.nextafter(np.float32(0.5), 1)]], np.float32))
    assert stats.compare_image(ref, tiny, 0.01, 1e-4).identical
    assert not stats.compare_image(ref, ulp, 0.01, 1e-4).identical


def test_a_missing_face_fails_the_image():
    ref = sets.ImageFaces("a.jpg", faces((0, 0, 50, 50), (100, 0, 50, 50)))
    r = stats.compare_image(ref, sets.ImageFaces("a.jpg", ref.faces[:1]), 0.01, 1e-4)
    assert not r.passed and not r.same_count and r.missing.tolist() == [1] and r.status == "count differs"


def test_ours_failed_or_different_size_is_not_compared():
    ref = sets.ImageFaces("a.jpg", faces((0, 0, 50, 50)), 640, 480)
    failed = stats.compare_image(ref, sets.ImageFaces("a.jpg", None, error="cannot decode"), 0.01, 1e-4)
    assert not failed.compared and not failed.passed and "cannot decode" in failed.problem
    other = stats.compare_image(ref, sets.ImageFaces("a.jpg", ref.faces, 480, 640), 0.01, 1e-4)
    assert not other.passed and "640x480" in other.problem


def test_sets_ref_errors_are_listed_not_counted():
    ref = one_set([sets.ImageFaces("a.jpg", faces((0, 0, 50, 50))),
                   sets.ImageFaces("tiny.jpg", None, error="std::length_error")])
    ours = one_set([sets.ImageFaces("a.jpg", faces((0, 0, 50, 50)))])
    c = stats.compare_sets(ref, ours)
    assert c.passed
    assert [i.path for i in c.ref_errors] == ["tiny.jpg"]
    s = stats.summarise(c)
    assert (s["images_in_ref"], s["ref_errors"], s["images_compared"], s["images_failed"]) == (2, 1, 1, 0)


def test_sets_missing_and_extra_images_fail():
    ref = one_set([sets.ImageFaces("a.jpg", faces((0, 0, 50, 50))), sets.ImageFaces("b.jpg", no_faces())])
    ours = one_set([sets.ImageFaces("a.jpg", faces((0, 0, 50, 50))), sets.ImageFaces("c.jpg", no_faces())])
    c = stats.compare_sets(ref, ours)
    assert not c.passed
    assert [r.problem for r in c.images] == [None, "not in OURS"]
    assert [i.path for i in c.only_ours] == ["c.jpg"]
    assert "FAIL: 1 of 2 images" in stats.verdict(c) and "1 image only in OURS, not compared" in stats.verdict(c)
    counted = stats.compare_sets(ref, ours, count_only_ours=True)
    assert "FAIL: 2 of 3 images" in stats.verdict(counted)


def test_summary_statistics():
    ref = one_set([sets.ImageFaces("a.jpg", faces((0, 0, 50, 50, 0.9), (100, 0, 50, 50, 0.8))),
                   sets.ImageFaces("b.jpg", faces((0, 0, 40, 40, 0.7)))])
    ours = one_set([sets.ImageFaces("a.jpg", faces((0.25, 0, 50, 50, 0.9), (100, 0, 50, 50, 0.8))),
                    sets.ImageFaces("b.jpg", faces((0, 0, 40, 40, 0.7), (300, 0, 40, 40, 0.75)))])
    c = stats.compare_sets(ref, ours)
    s = stats.summarise(c)
    assert (s["faces_paired"], s["faces_missing"], s["faces_extra"]) == (3, 0, 1)
    assert (s["images_identical"], s["images_same_count"], s["images_passed"]) == (0, 1, 0)
    assert s["differences"]["x"] == {"max_abs": 0.25, "mean_abs": pytest.approx(0.25 / 3), "pairs": 3}
    assert s["differences"]["width"]["max_abs"] == 0.0
    worst = stats.worst_images(c)
    assert [r.path for r in worst] == ["b.jpg", "a.jpg"]  # a count mismatch comes first


def test_worst_images_all_count_mismatches_then_the_largest_differences():
    ref = one_set([sets.ImageFaces(f"{i}.jpg", faces((0, 0, 50, 50))) for i in range(30)])
    ours = []
    for i in range(30):
        if i % 3 == 0:  # 10 count mismatches
            ours.append(sets.ImageFaces(f"{i}.jpg", faces((0, 0, 50, 50), (100, 0, 50, 50))))
        else:  # 20 boxes off by i/100 px
            ours.append(sets.ImageFaces(f"{i}.jpg", faces((i / 100, 0, 50, 50))))
    worst = stats.worst_images(stats.compare_sets(ref, one_set(ours)), limit=3)
    assert sorted(r.path for r in worst[:10]) == sorted(f"{i}.jpg" for i in range(0, 30, 3))
    assert [r.path for r in worst[10:]] == ["29.jpg", "28.jpg", "26.jpg"]


def test_report_is_plain_json_per_image_and_face():
    ref = one_set([sets.ImageFaces("a.jpg", faces((10, 20, 50, 50, 0.9)))])
    ours = one_set([sets.ImageFaces("a.jpg", faces((10.5, 20, 50, 50, 0.9)))])
    data = json.loads(json.dumps(report.report(stats.compare_sets(ref, ours)), allow_nan=False))
    image = data["images"][0]
    assert image["status"] == "beyond tolerance" and image["passed"] is False
    pair = image["pairs"][0]
    assert (pair["dx"], pair["dy"], pair["dconfidence"]) == (0.5, 0.0, 0.0)
    assert pair["ref"]["x"] == 10 and pair["ours"]["x"] == 10.5
    assert pair["iou"] == pytest.approx(49.5 * 50 / (2 * 2500 - 49.5 * 50))


# --------------------------------------------------------------------------- matching images


def test_images_match_by_path_then_by_name_and_folders():
    ref = ["corpus/a.jpg", "corpus/b.jpg", "x/c.jpg"]
    ours = ["/data/shared/corpus/b.jpg", "corpus/a.jpg", "/elsewhere/y/c.jpg", "/data/x/c.jpg", "d.jpg"]
    matched, unused = stats.match_images(ref, ours, by_stem=False)
    assert matched == {0: 1, 1: 0, 2: 3}
    assert unused == [2, 4]


def test_ambiguous_names_do_not_match():
    matched, unused = stats.match_images(["a.jpg"], ["p/a.jpg", "q/a.jpg"], by_stem=False)
    assert matched == {} and unused == [0, 1]


def test_bbox_folders_match_by_stem():
    matched, _ = stats.match_images(["a", "b"], ["imgs/b.png", "imgs/a.jpg"], by_stem=True)
    assert matched == {0: 1, 1: 0}


def test_image_paths_resolve_from_ref_folder_upwards(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jpg").write_bytes(b"x")
    ref = tmp_path / "reference" / "set" / "ref.json"
    assert ours.resolve_image("corpus/a.jpg", ref, None) == tmp_path / "corpus" / "a.jpg"
    assert ours.resolve_image("corpus/b.jpg", ref, None) is None
    assert ours.resolve_image("a.jpg", ref, tmp_path / "corpus") == tmp_path / "corpus" / "a.jpg"
    assert ours.resolve_image("corpus/a.jpg", ref, tmp_path / "corpus") is None


def test_run_parameters_ref_then_overrides():
    ref = sets.DetectionSet("r", "json", [], {"min_face": 40, "t1": 0.5, "t2": 0.6, "t3": 0.6})
    assert ours.run_params(ref, {"min_face": None, "t1": None, "t2": 0.8, "t3": None}) == \
        {"min_face": 40, "t1": 0.5, "t2": 0.8, "t3": 0.6}
    assert ours.run_params(sets.DetectionSet("r", "bboxdir", []), {}) == {"min_face": 60, "t1": 0.6, "t2": 0.7, "t3": 0.7}


# --------------------------------------------------------------------------- readers

CPP_JSON = """{
  "detector": "OpenFace 2.2 FaceDetectorMTCNN (C++)",
  "params": {"min_face": 40, "t1": 0.5, "t2": 0.600000024, "t3": 0.600000024},
  "images": [
    {"path": "corpus/a.jpg", "width": 640, "height": 480, "channels": 3,
     "faces": [{"x": 90.1400146, "y": 38.44, "width": 65.25, "height": 65.21, "confidence": 0.999997139}],
     "ms_median": 27.9},
    {"path": "corpus/b.jpg", "width": 30, "height": 30, "error": "image too small"},
    {"path": "corpus/c.jpg", "width": 100, "height": 100, "faces": []}
  ]
}
"""


def test_reads_cpp_reference_json(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(CPP_JSON)
    s = readers.read_detections(path)
    assert s.format == "json" and s.params == {"min_face": 40, "t1": 0.5, "t2": 0.600000024, "t3": 0.600000024}
    assert [i.path for i in s.images] == ["corpus/a.jpg", "corpus/b.jpg", "corpus/c.jpg"]
    a, b, c = s.images
    assert a.faces.dtype == np.float32 and a.faces.shape == (1, 5)
    assert a.faces[0, 0] == np.float32(90.1400146) and a.faces[0, 4] == np.float32(0.999997139)
    assert (a.width, a.height) == (640, 480)
    assert b.faces is None and b.error == "image too small"
    assert c.faces.shape == (0, 5)


def test_reads_jsonl(tmp_path):
    path = tmp_path / "ours.jsonl"
    path.write_text(
        '{"path": "a.jpg", "width": 64, "height": 64, "faces": [{"x": 1.5, "y": 2, "width": 30, "height": 31, '
        '"confidence": 0.75, "landmarks": [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]}]}\n'
        '\n{"path": "b.jpg", "width": null, "height": null, "error": "cannot decode"}\n')
    s = readers.read_detections(path)
    assert s.format == "jsonl" and s.params is None
    assert s.images[0].faces.tolist() == [[1.5, 2, 30, 31, 0.75]]
    assert s.images[1].error == "cannot decode" and s.images[1].width is None


def test_reads_csv(tmp_path):
    header = "path,face,x,y,width,height,confidence," + ",".join(
        f"l{a}{i}" for i in range(1, 6) for a in "xy") + ",error\n"
    empty = "," * 16
    path = tmp_path / "ours.csv"
    path.write_text(header
                    + "a.jpg,0,1.5,2,30,31,0.75" + ",1" * 10 + ",\n"
                    + "a.jpg,1,100,2,30,31,0.5" + ",1" * 10 + ",\n"
                    + "b.jpg" + empty + ",\n"
                    + '"c, d.jpg"' + empty + ",cannot decode\n")
    s = readers.read_detections(path)
    assert s.format == "csv"
    assert [i.path for i in s.images] == ["a.jpg", "b.jpg", "c, d.jpg"]
    assert s.images[0].faces.tolist() == [[1.5, 2, 30, 31, 0.75], [100, 2, 30, 31, 0.5]]
    assert s.images[1].faces.shape == (0, 5)
    assert s.images[2].faces is None and s.images[2].error == "cannot decode"


def test_reads_bbox_folder(tmp_path):
    (tmp_path / "a.txt").write_text("10 20 70.5 81\n\n100 200 140 250\n")
    (tmp_path / "b.txt").write_text("")
    s = readers.read_detections(tmp_path)
    assert s.format == "bboxdir" and [i.path for i in s.images] == ["a", "b"]
    a = s.images[0].faces
    assert a[:, :4].tolist() == [[10, 20, 60.5, 61], [100, 200, 40, 50]]
    assert np.isnan(a[:, 4]).all()
    assert s.images[1].faces.shape == (0, 5)


def test_bbox_folder_against_json_compares_boxes_only(tmp_path):
    (tmp_path / "a.txt").write_text("10 20 70.5 81\n")
    ref = readers.read_detections(tmp_path)
    ours = one_set([sets.ImageFaces("imgs/a.jpg", faces((10, 20, 60.5, 61, 0.99)))])
    c = stats.compare_sets(ref, ours)
    assert c.passed and c.images[0].identical
    assert stats.summarise(c)["differences"]["confidence"]["max_abs"] is None


def test_format_can_be_forced(tmp_path):
    path = tmp_path / "ref.txt"
    path.write_text(CPP_JSON)
    assert readers.read_detections(path, "json").format == "json"
    with pytest.raises(sets.CompareError, match="wrong CSV header"):
        readers.read_detections(path, "csv")


def bad(tmp_path, text, name="ref.json"):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(sets.CompareError) as info:
        readers.read_detections(path)
    message = str(info.value)
    assert message.startswith(str(path))
    return message


def cpp_with(face_or_image_change):
    data = json.loads(CPP_JSON)
    face_or_image_change(data)
    return json.dumps(data)


def test_bad_json_is_named(tmp_path):
    assert "not valid JSON" in bad(tmp_path, CPP_JSON[:200])
    assert "line 2" in bad(tmp_path, '{\n  "images": [}\n')


def test_wrong_schemas(tmp_path):
    assert 'no "images" list' in bad(tmp_path, '{"detector": "x"}')
    assert "top level is a list" in bad(tmp_path, '[1, 2]')
    assert 'images[0] has no "path"' in bad(tmp_path, '{"images": [{"faces": []}]}')
    assert 'neither a "faces" list nor an "error"' in bad(tmp_path, '{"images": [{"path": "a.jpg"}]}')
    assert 'images[0].faces[0] has no "width"' in bad(
        tmp_path, cpp_with(lambda d: d["images"][0]["faces"][0].pop("width")))
    assert "images[0].faces[0].x is a string" in bad(
        tmp_path, cpp_with(lambda d: d["images"][0]["faces"][0].update(x="90")))
    assert "images[2] lists corpus/a.jpg again" in bad(
        tmp_path, cpp_with(lambda d: d["images"][2].update(path="corpus/a.jpg")))
    assert "params.min_face is not a whole number" in bad(
        tmp_path, cpp_with(lambda d: d["params"].update(min_face=40.5)))


def test_nan_and_negative_sizes(tmp_path):
    nan = CPP_JSON.replace('"height": 65.21', '"height": NaN')
    assert "images[0].faces[0].height is nan" in bad(tmp_path, nan)
    assert "images[0].faces[0].x is inf" in bad(tmp_path, CPP_JSON.replace('"x": 90.1400146', '"x": Infinity'))
    assert "images[0].faces[0].width is negative (-65.25)" in bad(
        tmp_path, CPP_JSON.replace('"width": 65.25', '"width": -65.25'))
    assert "images[1].height is negative" in bad(tmp_path, CPP_JSON.replace('"height": 30', '"height": -30'))


def test_unknown_format_and_empty_file(tmp_path):
    assert "unknown format" in bad(tmp_path, "hello\nworld\n", "ref.txt")
    assert "empty file" in bad(tmp_path, "  \n", "ref.txt")


def test_bad_csv_values(tmp_path):
    header = "path,face,x,y,width,height,confidence,error\n"
    assert "line 2: width is negative" in bad(tmp_path, header + "a.jpg,0,1,2,-3,4,0.9,\n", "o.csv")
    assert "line 3: x is nan" in bad(tmp_path, header + "a.jpg,0,1,2,3,4,0.9,\nb.jpg,0,nan,2,3,4,0.9,\n", "o.csv")
    assert "line 2: y is not a number" in bad(tmp_path, header + "a.jpg,0,1,two,3,4,0.9,\n", "o.csv")


def test_bad_bbox_files(tmp_path):
    (tmp_path / "a.txt").write_text("10 20 70\n")
    with pytest.raises(sets.CompareError, match=r"a\.txt: line 1: expected four numbers"):
        readers.read_detections(tmp_path)
    (tmp_path / "a.txt").write_text("10 20 70 80\n50 50 40 80\n")
    with pytest.raises(sets.CompareError, match=r"a\.txt: line 2: width \(max_x - min_x\) is negative"):
        readers.read_detections(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(sets.CompareError, match="no .txt files"):
        readers.read_detections(empty)


def test_missing_file(tmp_path):
    with pytest.raises(sets.CompareError, match="no such file"):
        readers.read_detections(tmp_path / "nothing.json")


def test_float32_report_values_read_back():
    v = np.float32(90.14)
    assert np.float32(report.f32(v)) == v and report.f32(np.float32(math.nan)) is None
