"""The detector's defaults and shared limits live in mtcnn_cli.base.defaults, which
the commands import without numpy."""
import subprocess
import sys

from click.testing import CliRunner

from mtcnn_cli.compare import sets
from mtcnn_cli.base import defaults
from mtcnn_cli.cli import main
from mtcnn_cli.io import images
from mtcnn_cli.run import batch


def test_defaults_load_without_numpy():
    code = "import sys, mtcnn_cli.base.defaults; print('numpy' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_openface_defaults_everywhere():
    assert defaults.PARAMS == {"min_face": 60, "t1": 0.6, "t2": 0.7, "t3": 0.7}  # OpenFace 2.2's
    settings = batch.Settings()
    assert (settings.min_face, settings.t1, settings.t2, settings.t3) == (60, 0.6, 0.7, 0.7)
    assert settings.max_pixels == images.DEFAULT_MAX_PIXELS == defaults.MAX_PIXELS
    assert sets.DEFAULT_PARAMS == defaults.PARAMS and sets.FORMATS == defaults.COMPARE_FORMATS


def test_help_shows_the_shared_defaults():
    text = " ".join(CliRunner().invoke(main, ["detect", "--help"]).stdout.split())
    for fragment in ("[default: 60;", "[default: 0.6]", "[default: 0.7]", "[default: 100000000]"):
        assert fragment in text
