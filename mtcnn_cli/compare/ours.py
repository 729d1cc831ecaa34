"""Our detector on REF's images: finding each image file, and the set of our
detections keyed by REF's own paths."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..run import batch
from .sets import DEFAULT_PARAMS, DetectionSet, ImageFaces


def resolve_image(image: str, ref_path: Path, root: Path | None) -> Path | None:
    """An image path of REF as a file: absolute as is; relative to --root, else to
    REF's folder or the nearest of its parents that holds it, else to the current
    folder. None when not found."""
    p = Path(image)
    if p.is_absolute():
        return p if p.is_file() else None
    folder = ref_path.resolve().parent
    bases = [root] if root is not None else [folder, *folder.parents, Path.cwd()]
    return next((base / p for base in bases if (base / p).is_file()), None)


def image_in_folder(stem: str, folder: Path) -> tuple[Path | None, str | None]:
    """The image of a bbox file <stem>.txt in --images DIR: (path, None) or (None, problem).
    A nested box file's stem (`set/a/x`, as `detect --bboxdir` mirrors paths)
    is looked up with its folders, then with fewer and fewer of the leading
    ones (`a/x`, `x`), so that DIR may be any folder the images were under."""
    parts = stem.split("/")
    for start in range(len(parts)):
        tail = "/".join(parts[start:])
        found = sorted(f for f in folder.glob(f"{glob_escape(tail)}.*") if f.suffix.lower() != ".txt" and f.is_file())
        if len(found) > 1:
            names = ", ".join(f.relative_to(folder).as_posix() for f in found)
            return None, f"several images named {tail}.* in {folder}: {names}"
        if found:
            return found[0], None
    return None, f"no image named {stem}.* in {folder}"


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def image_files(ref: DetectionSet, root: Path | None, images_dir: Path | None) -> list[tuple[Path | None, str | None]]:
    """For each image of REF that the C++ did not fail on: (file, None) or (None, why not)."""
    out = []
    for image in ref.images:
        if image.error is not None:
            continue
        if ref.format == "bboxdir":
            out.append(image_in_folder(image.path, images_dir))
            continue
        found = resolve_image(image.path, Path(ref.source), root)
        where = f"--root {root}" if root is not None else f"{Path(ref.source).parent}, its parents and ."
        out.append((found, None) if found else (None, f"image not found (looked in {where})"))
    return out


def detect_for(ref: DetectionSet, files: list[tuple[Path | None, str | None]], params: dict,
               models=None, jobs: int = 1, on_image=None) -> DetectionSet:
    """Run our detector on REF's images (those `image_files` found); the result is
    keyed by REF's own paths, so that every image pairs with itself. on_image(),
    when given, is called after each image."""
    wanted = [image for image in ref.images if image.error is None]
    found = [str(f) for f, _ in files if f is not None]
    results = batch.detect_images(found, models=models, jobs=jobs, landmarks=False, **params)
    records = []
    try:
        for image, (f, problem) in zip(wanted, files):
            records.append(our_record(image, f, problem, results))
            if on_image is not None:
                on_image()
    finally:
        getattr(results, "close", lambda: None)()  # stops worker processes early on an error
    return DetectionSet("our detector", "run", records, dict(params), "mtcnn-cli")


def our_record(image: ImageFaces, file: Path | None, problem: str | None, results) -> ImageFaces:
    """Our detection of one REF image: the next of `results` when the file was found."""
    if file is None:
        return ImageFaces(image.path, None, error=problem)
    result = next(results)
    if result.faces is None:
        return ImageFaces(image.path, None, result.width, result.height, error=result.error)
    faces = np.array([[g.x, g.y, g.width, g.height, g.confidence] for g in result.faces],
                     np.float32).reshape(-1, 5)
    return ImageFaces(image.path, faces, result.width, result.height)


def run_params(ref: DetectionSet, overrides: dict) -> dict:
    """REF's parameters, then the given overrides (None: not given), then the defaults."""
    params = dict(DEFAULT_PARAMS)
    params.update(ref.params or {})
    params.update({k: v for k, v in overrides.items() if v is not None})
    return params
