"""What the library's tests share: one detector per test module, and the
bundled sample as cv2.imread reads it."""
from pathlib import Path

import cv2
import pytest

from mtcnn_cli import Detector

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic_faces.png"


@pytest.fixture(scope="module")
def detector():
    return Detector()


@pytest.fixture(scope="module")
def sample():
    return cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
