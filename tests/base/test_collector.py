"""base/collector: the garbage collector deferred through a start, then given back."""
import gc

import pytest

from mtcnn_cli.base import collector


@pytest.fixture
def thresholds():
    """The test's own thresholds, and this process's restored after it."""
    before = gc.get_threshold()
    collector._saved = None
    yield
    collector._saved = None
    gc.set_threshold(*before)
    gc.unfreeze()


@pytest.mark.parametrize("user, deferred", [((700, 10, 10), (100_000, 10, 10)), ((500, 5, 5), (100_000, 5, 5)),
                                            ((250_000, 3, 4), (250_000, 3, 4))])
def test_defer_raises_the_first_threshold_only_and_resume_restores_them(thresholds, user, deferred):
    gc.set_threshold(*user)
    collector.defer()
    collector.defer()  # twice: still the user's to restore
    assert gc.get_threshold() == deferred
    collector.resume()
    assert gc.get_threshold() == user
    assert gc.get_freeze_count() > 0  # what lived through the start is left out of later collections
    assert gc.isenabled()


def test_resume_without_defer_keeps_the_thresholds(thresholds):
    gc.set_threshold(600, 7, 8)
    collector.resume()
    assert gc.get_threshold() == (600, 7, 8)


def test_a_deferred_collector_still_collects_cycles(thresholds):
    gc.set_threshold(700, 10, 10)
    collector.defer()
    collections = gc.get_stats()[0]["collections"]
    for _ in range(3 * collector.DEFERRED_THRESHOLD):
        cycle = []
        cycle.append(cycle)
    assert gc.get_stats()[0]["collections"] > collections  # bounded memory without resume
