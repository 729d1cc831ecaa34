"""OpenFace 2.2's MTCNN face detector, ported to numpy, bit for bit."""
__version__ = "0.1.0"

__all__ = ["Detector", "Face", "ModelError", "__version__"]


def __getattr__(name):
    # Lazy, so that `mtcnn --help` and `--version` do not pay for numpy and cv2.
    if name in ("Detector", "Face", "ModelError"):
        from . import detector
        return getattr(detector, name)
    raise AttributeError(name)
