"""Shared test data: $MTCNN_SHARED, else ../shared beside the project.

With CI=true a missing shared folder fails the run instead of skipping."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    return Path(os.environ.get("MTCNN_SHARED") or ROOT.parent / "shared")


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"shared test data missing: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    return _require(shared_dir())


@pytest.fixture(scope="session")
def openface_models(shared) -> Path:
    """OpenFace 2.2.0's own model folder (academic licence: read, never copied)."""
    return _require(shared / "models" / "openface-2.2.0")


@pytest.fixture(scope="session")
def reference(shared) -> Path:
    return _require(shared / "reference" / "openface-2.2-cpp")


@pytest.fixture(scope="session")
def corpus(shared) -> Path:
    return _require(shared / "corpus")


SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "synthetic_faces.png"


@pytest.fixture(scope="module")
def detector():
    """The library's Detector with the bundled weights, one per test module."""
    from mtcnn_cli import Detector  # the detector's imports only for the tests that use it

    return Detector()


@pytest.fixture(scope="module")
def sample():
    """The bundled sample as cv2.imread reads it."""
    import cv2  # likewise

    image = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def pytest_terminal_summary(terminalreporter):
    from .parity_report import RESULTS

    if RESULTS:
        terminalreporter.section("parity with OpenFace 2.2 C++")
        for name, (images, exact, box, conf) in sorted(RESULTS.items()):
            terminalreporter.write_line(
                f"{name}: {exact}/{images} images bit-exact; worst box diff {box:.3g} px, "
                f"worst confidence diff {conf:.3g}")
