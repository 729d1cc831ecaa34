"""A short run of the robustness soak (tests/soak.py): hostile detection files
for compare and --resume, special files where images, models, REF and OURS
are expected. No traceback, no hang. `make soak` runs it for ten minutes."""
import time

import pytest

from . import soak

pytestmark = pytest.mark.slow


def test_short_soak_finds_no_traceback_and_no_hang():
    started = time.monotonic()
    tally = soak.soak(20, seed=11, special_every=6)
    report = soak.summary(tally, time.monotonic() - started)
    print(report)
    assert tally.cases >= 20, report
    assert not tally.tracebacks and not tally.hangs, report
