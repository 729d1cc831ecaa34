"""OpenFace 2.2's MTCNN face detector, ported to numpy, bit for bit."""
from .base.defaults import VERSION as __version__

__all__ = ["Detector", "Face", "ImageError", "ModelError", "Result", "detect_to_dir", "plan_dir", "read_image",
           "run_shard", "__version__"]


def __getattr__(name):
    # Lazy, so that `mtcnn --help` and `--version` do not pay for numpy and cv2.
    # Detector is the port's (detector/) with files, PIL images, RGB and batches
    # around it (run/library.py); read_image reads a file as `mtcnn detect` does.
    if name in ("Face", "ModelError"):
        from . import detector  # numpy and OpenCV: only when a name that needs them is asked for
        return getattr(detector, name)
    if name in ("Detector", "ImageError", "Result", "read_image", "run_shard", "detect_to_dir", "plan_dir"):
        from .run import library  # the same
        return getattr(library, name)
    raise AttributeError(name)
