"""Where a stop may land: places whose exceptions Python ignores get the
signal delivered again a moment later instead of losing it."""
import sys

from mtcnn_cli.base import signals


def frame_of(name: str, filename: str):
    code = compile(f"def {name}():\n    return sys._getframe()\n", filename, "exec")
    namespace = {"sys": sys}
    exec(code, namespace)
    return namespace[name]()


def test_the_import_systems_lock_callback_puts_a_stop_off():
    # a weakref callback of importlib's module locks: what it raises is printed and dropped
    assert signals._in_finalizer(frame_of("cb", "<frozen importlib._bootstrap>"))


def test_a_finalizer_puts_a_stop_off_and_ordinary_code_does_not():
    assert signals._in_finalizer(frame_of("__del__", "mine.py"))
    assert not signals._in_finalizer(frame_of("cb", "mine.py"))
    assert not signals._in_finalizer(sys._getframe())
