"""The port of OpenFace 2.2's MTCNN detector, and nothing else: the model
format and where models come from (datfile, models), the networks (layers,
network) and their arithmetic (kernels), OpenCV's and glibc's arithmetic
(cvexact), the pyramid, the boxes and the cascade.

Nothing here reads images or writes outputs (io/) or runs batches (run/).
`Detector`, `Face` and `ModelError` are its public face."""

__all__ = ["Detector", "Face", "ModelError"]


def __getattr__(name):
    # Lazy, so that `mtcnn --help` and `--version` do not pay for numpy and cv2.
    if name in ("Detector", "Face"):
        from . import cascade  # numpy: only when the name is asked for
        return getattr(cascade, name)
    if name == "ModelError":
        from .datfile import ModelError  # the same
        return ModelError
    raise AttributeError(name)
