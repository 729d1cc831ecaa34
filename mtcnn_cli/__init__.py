"""OpenFace 2.2's MTCNN face detector, ported to numpy, bit for bit."""
# This body imports nothing: the program (`from mtcnn_cli.cli import main`) runs it
# before its own signal handler is in place, so a Ctrl-C then has only these few
# statements to land in, never an import of ours.

__all__ = ["Detector", "Face", "ImageError", "ModelError", "Result", "detect_to_dir", "plan_dir", "read_image",
           "run_shard", "__version__"]


def __getattr__(name):
    # Lazy, so that `mtcnn --help` and `--version` do not pay for numpy and cv2.
    # Detector is the port's (detector/) with files, PIL images, RGB and batches
    # around it (run/library.py); read_image reads a file as `mtcnn detect` does.
    if name == "__version__":
        from .base.defaults import VERSION  # the ground layer alone: no numpy or OpenCV
        return VERSION
    if name in ("Face", "ModelError"):
        from . import detector  # numpy and OpenCV: only when a name that needs them is asked for
        return getattr(detector, name)
    if name in ("Detector", "ImageError", "Result", "read_image", "run_shard", "detect_to_dir", "plan_dir"):
        from .run import library  # the same
        return getattr(library, name)
    raise AttributeError(name)
