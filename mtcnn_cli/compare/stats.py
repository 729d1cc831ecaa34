"""Comparing two sets image by image: pairs, differences, tolerances,
images on one side only, and the summary's numbers."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from .pairing import assign_overlaps, pair_faces, pair_iou
from .sets import DEFAULT_PARAMS, FIELDS, DetectionSet, ImageFaces


@dataclass(eq=False)
class ImageComparison:
    """One image of REF against OURS. deltas: (k, 5) float64 of ours - ref for x, y,
    width, height, confidence over the pairs (NaN confidence where a side has none)."""
    path: str
    ref: ImageFaces
    ours: ImageFaces | None
    problem: str | None = None
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), int))
    ious: np.ndarray = field(default_factory=lambda: np.zeros(0))
    deltas: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))
    missing: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    extra: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    identical: bool = False
    within_tolerance: bool = False

    @property
    def compared(self) -> bool:
        return self.problem is None

    @property
    def same_count(self) -> bool:
        return self.compared and len(self.ref.faces) == len(self.ours.faces)

    @property
    def passed(self) -> bool:
        return self.compared and not len(self.missing) and not len(self.extra) and self.within_tolerance

    @property
    def max_box_delta(self) -> float:
        return float(np.abs(self.deltas[:, :4]).max()) if len(self.deltas) else 0.0

    @property
    def max_conf_delta(self) -> float:
        conf = np.abs(self.deltas[:, 4])
        conf = conf[~np.isnan(conf)]
        return float(conf.max()) if len(conf) else 0.0

    @property
    def status(self) -> str:
        if not self.compared:
            return "not compared"
        if self.identical:
            return "identical"
        if len(self.missing) or len(self.extra):
            return "faces differ" if self.same_count else "count differs"
        return "within tolerance" if self.within_tolerance else "beyond tolerance"


@dataclass(eq=False)
class Comparison:
    ref: DetectionSet
    ours: DetectionSet
    tolerance: float
    conf_tolerance: float
    images: list[ImageComparison]          # REF's images the C++ did not fail on, in REF's order
    ref_errors: list[ImageFaces]           # REF's images the C++ failed on
    only_ours: list[ImageFaces]            # images of OURS that REF does not list
    count_only_ours: bool = False          # whether images only in OURS fail the comparison

    @property
    def failing_only_ours(self) -> list[ImageFaces]:
        """The images only in OURS that count as failures (none unless asked)."""
        return self.only_ours if self.count_only_ours else []

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.images) and not self.failing_only_ours


def image_problem(ref: ImageFaces, ours: ImageFaces | None) -> str | None:
    """Why an image of REF cannot be compared with OURS, or None."""
    if ours is None:
        return "not in OURS"
    if ours.faces is None:
        return f"ours: {ours.error}"
    if None not in (ref.width, ref.height, ours.width, ours.height) and \
            (ref.width, ref.height) != (ours.width, ours.height):
        return f"image size differs: {fmt_size(ref)} in REF, {fmt_size(ours)} in OURS"
    return None


def compare_image(ref: ImageFaces, ours: ImageFaces | None, tolerance: float,
                  conf_tolerance: float) -> ImageComparison:
    problem = image_problem(ref, ours)
    if problem is not None:
        return ImageComparison(ref.path, ref, ours, problem=problem)
    return compare_many([(ref, ours)], tolerance, conf_tolerance)[0]


BIG_IMAGE_PAIRS = 4096  # images with more face pairs than this are paired one by one (sparse)


def pair_many(sides: list) -> list:
    """pair_faces for many images at once: sides [(ref faces, our faces)] ->
    [(pairs, ious, missing, extra)], the same as pair_faces gives each image.
    The candidate pairs of all small images are computed in a few numpy calls;
    only images whose overlaps leave a choice are solved one by one."""
    out = [None] * len(sides)
    small = [k for k, (a, b) in enumerate(sides) if len(a) * len(b) <= BIG_IMAGE_PAIRS]
    for k in set(range(len(sides))) - set(small):
        out[k] = pair_faces(*sides[k])
    if not small:
        return out
    n = np.array([len(sides[k][0]) for k in small])
    m = np.array([len(sides[k][1]) for k in small])
    A = np.concatenate([sides[k][0][:, :4] for k in small]).astype(np.float64).reshape(-1, 4)
    B = np.concatenate([sides[k][1][:, :4] for k in small]).astype(np.float64).reshape(-1, 4)
    a_start, b_start = np.cumsum(n) - n, np.cumsum(m) - m
    image_of_a, image_of_b = np.repeat(np.arange(len(small)), n), np.repeat(np.arange(len(small)), m)
    count = m[image_of_a]  # candidates per ref face: every face of its image
    r = np.repeat(np.arange(len(A)), count)
    first = np.cumsum(count) - count
    c = np.repeat(b_start[image_of_a], count) + np.arange(len(r)) - np.repeat(first, count)
    iou = pair_iou(A[r], B[c]) if len(r) else np.zeros(0)
    keep = iou > 0
    r, c, iou = r[keep], c[keep], iou[keep]  # row-major within each image
    alone = (np.bincount(r, minlength=len(A))[r] == 1) & (np.bincount(c, minlength=len(B))[c] == 1)
    tangled = np.unique(image_of_a[r[~alone]])
    chosen = [np.flatnonzero(alone & ~np.isin(image_of_a[r], tangled))]
    for i in tangled:  # overlaps that leave a choice: this image's own assignment
        edges = np.flatnonzero(image_of_a[r] == i)
        lr, lc = r[edges] - a_start[i], c[edges] - b_start[i]
        local = assign_overlaps(n[i], m[i], lr, lc, iou[edges])
        key = lr * m[i] + lc
        chosen.append(edges[np.searchsorted(key, local[:, 0] * m[i] + local[:, 1])])
    chosen = np.sort(np.concatenate(chosen))
    pr, pc, piou = r[chosen], c[chosen], iou[chosen]
    paired_a, paired_b = np.zeros(len(A), bool), np.zeros(len(B), bool)
    paired_a[pr], paired_b[pc] = True, True
    missing, extra = np.flatnonzero(~paired_a), np.flatnonzero(~paired_b)
    cut = lambda values, owner: np.split(values, np.cumsum(np.bincount(owner, minlength=len(small)))[:-1])  # noqa: E731
    by_pairs = zip(cut(pr, image_of_a[pr]), cut(pc, image_of_a[pr]), cut(piou, image_of_a[pr]))
    by_missing = cut(missing, image_of_a[missing])
    by_extra = cut(extra, image_of_b[extra])
    for i, ((ir, ic, iiou), im, ie) in enumerate(zip(by_pairs, by_missing, by_extra)):
        pairs = np.stack([ir - a_start[i], ic - b_start[i]], axis=1).reshape(-1, 2)
        out[small[i]] = (pairs, iiou, im - a_start[i], ie - b_start[i])
    return out


def compare_many(images: list, tolerance: float, conf_tolerance: float) -> list:
    """[(REF image, our image)], both with faces and comparable ->
    [ImageComparison], with the differences of all pairs computed at once."""
    paired = pair_many([(ref.faces, ours.faces) for ref, ours in images])
    counts = np.array([len(p[0]) for p in paired], np.int64)
    if counts.sum():
        a = np.concatenate([ref.faces[p[0][:, 0]] for (ref, _), p in zip(images, paired)])  # (P, 5)
        b = np.concatenate([ours.faces[p[0][:, 1]] for (_, ours), p in zip(images, paired)])
    else:
        a = b = np.zeros((0, 5), np.float32)
    deltas = b.astype(np.float64) - a.astype(np.float64)
    owner = np.repeat(np.arange(len(images)), counts)
    box_bad = ~np.all(np.abs(deltas[:, :4]) <= tolerance, axis=1)
    conf_bad = ~np.isnan(deltas[:, 4]) & ~(np.abs(deltas[:, 4]) <= conf_tolerance)
    # Bit for bit over the fields both sides give (a bbox folder gives no confidence).
    differs = np.any((a != b) & ~(np.isnan(a) | np.isnan(b)), axis=1)
    bad = np.bincount(owner, weights=box_bad | conf_bad, minlength=len(images))
    different = np.bincount(owner, weights=differs, minlength=len(images))
    starts = np.cumsum(counts) - counts
    results = []
    for k, ((ref, ours), (pairs, ious, missing, extra)) in enumerate(zip(images, paired)):
        identical = not len(missing) and not len(extra) and not different[k]
        results.append(ImageComparison(ref.path, ref, ours, None, pairs, ious,
                                       deltas[starts[k]:starts[k] + counts[k]], missing, extra,
                                       identical, not bad[k]))
    return results


def fmt_size(image: ImageFaces) -> str:
    return f"{image.width:g}x{image.height:g}"


def compare_sets(ref: DetectionSet, ours: DetectionSet, tolerance: float = 0.01,
                 conf_tolerance: float = 1e-4, count_only_ours: bool = False) -> Comparison:
    """REF's images against OURS. Images only in OURS are listed, and fail the
    comparison only with count_only_ours."""
    by_stem = "bboxdir" in (ref.format, ours.format)
    wanted = [image for image in ref.images if image.error is None]
    matched, unused = match_images(matching_names(ref), matching_names(ours), by_stem)
    counterpart = {ref.images[r].path: ours.images[o] for r, o in matched.items()}
    results, comparable = [], []
    for image in wanted:
        other = counterpart.get(image.path)
        problem = image_problem(image, other)
        results.append(ImageComparison(image.path, image, other, problem=problem) if problem else None)
        if problem is None:
            comparable.append((len(results) - 1, image, other))
    done = compare_many([(image, other) for _, image, other in comparable], tolerance, conf_tolerance)
    for (k, _, _), result in zip(comparable, done):
        results[k] = result
    return Comparison(ref, ours, tolerance, conf_tolerance, results,
                      [image for image in ref.images if image.error is not None],
                      [ours.images[o] for o in unused], count_only_ours)


def matching_names(s: DetectionSet) -> list[str]:
    """The image paths match_images pairs. A bbox folder's images are already
    stems (`x_0.7` from `x_0.7.txt`); given back their file name, so that
    taking the stem again keeps the dots OpenFace's own names hold."""
    if s.format == "bboxdir":
        return [image.path + ".txt" for image in s.images]
    return [image.path for image in s.images]


def params_mismatch(ref: DetectionSet, ours: DetectionSet) -> list[str]:
    """The detector parameters both sets record with different values, as
    'min_face 20 in REF, 60 in OURS'; empty when either records none."""
    if not ref.params or not ours.params:
        return []
    return [f"{name} {ref.params[name]:g} in REF, {ours.params[name]:g} in OURS"
            for name in DEFAULT_PARAMS
            if name in ref.params and name in ours.params
            and np.float32(ref.params[name]) != np.float32(ours.params[name])]  # the C++ stores floats


def match_images(ref_paths: list[str], our_paths: list[str], by_stem: bool):
    """Which image of OURS is which image of REF: the same path, else the same file
    name (the stem, when a side is a bbox folder), the candidate sharing the longest
    tail of folders winning (a nested bbox file `a/x.txt` is `./a/x.png`'s, not
    `./b/x.png`'s). Returns {ref index: our index} and OURS's unmatched indices."""
    def name(p):
        parts = PurePosixPath(p.replace("\\", "/"))
        return parts.stem if by_stem else parts.name

    def shared_folders(a, b):  # the names are equal (or their stems): count the folders above them
        fa, fb = a.replace("\\", "/").split("/")[-2::-1], b.replace("\\", "/").split("/")[-2::-1]
        n = 0
        while n < min(len(fa), len(fb)) and fa[n] == fb[n]:
            n += 1
        return n

    exact = {p: j for j, p in enumerate(our_paths)}
    by_name = defaultdict(list)
    for j, p in enumerate(our_paths):
        by_name[name(p)].append(j)
    matched, used = {}, set()
    for i, p in enumerate(ref_paths):
        if p in exact and exact[p] not in used:
            matched[i] = exact[p]
            used.add(exact[p])
    for i, p in enumerate(ref_paths):
        if i in matched:
            continue
        candidates = [j for j in by_name.get(name(p), []) if j not in used]
        scores = [shared_folders(p, our_paths[j]) for j in candidates]
        if candidates and scores.count(max(scores)) == 1:
            j = candidates[scores.index(max(scores))]
            matched[i] = j
            used.add(j)
    return matched, [j for j in range(len(our_paths)) if j not in used]


def summarise(c: Comparison) -> dict:
    compared = [r for r in c.images if r.compared]
    deltas = np.concatenate([r.deltas for r in compared]) if compared else np.zeros((0, 5))  # (P, 5)
    stats = {}
    for k, name in enumerate(FIELDS):
        d = np.abs(deltas[:, k])
        d = d[~np.isnan(d)]
        stats[name] = {"max_abs": float(d.max()) if len(d) else None,
                       "mean_abs": float(d.mean()) if len(d) else None, "pairs": int(len(d))}
    return {
        "passed": c.passed,
        "images_in_ref": len(c.ref.images),
        "ref_errors": len(c.ref_errors),
        "images_compared": len(compared),
        "images_not_compared": len(c.images) - len(compared),
        "images_only_in_ours": len(c.only_ours),
        "images_identical": sum(r.identical for r in compared),
        "images_same_count": sum(r.same_count for r in compared),
        "images_passed": sum(r.passed for r in compared),
        "images_failed": sum(not r.passed for r in c.images) + len(c.failing_only_ours),
        "faces_in_ref": int(sum(len(r.ref.faces) for r in compared)),
        "faces_in_ours": int(sum(len(r.ours.faces) for r in compared)),
        "faces_paired": int(sum(len(r.pairs) for r in compared)),
        "faces_missing": int(sum(len(r.missing) for r in compared)),
        "faces_extra": int(sum(len(r.extra) for r in compared)),
        "min_iou": float(min((r.ious.min() for r in compared if len(r.ious)), default=1.0)),
        "differences": stats,
    }


def worst_images(c: Comparison, limit: int = 10) -> list[ImageComparison]:
    """Every image not compared or with a face missing or extra, then the `limit`
    others with the largest differences; identical images never."""
    def size(r):
        return r.max_box_delta, r.max_conf_delta

    counts = [r for r in c.images if not r.compared or len(r.missing) or len(r.extra)]
    others = [r for r in c.images if r.compared and not len(r.missing) and not len(r.extra) and not r.identical]
    counts.sort(key=lambda r: (not r.compared, *size(r)), reverse=True)
    return counts + sorted(others, key=size, reverse=True)[:limit]


def verdict(c: Comparison) -> str:
    """The one line printed on stdout."""
    s = summarise(c)
    tol = f"tolerance {c.tolerance:g} px, {c.conf_tolerance:g} confidence"
    only = s['images_only_in_ours']
    extra = f"; {only} image{'' if only == 1 else 's'} only in OURS, not compared" \
        if c.only_ours and not c.count_only_ours else ""
    if c.passed:
        return (f"PASS: {s['images_compared']} images match ({s['images_identical']} identical to the bit, "
                f"{tol}){extra}")
    total = s['images_compared'] + s['images_not_compared'] + len(c.failing_only_ours)
    return f"FAIL: {s['images_failed']} of {total} images differ or could not be compared ({tol}){extra}"
