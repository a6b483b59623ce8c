"""better_exchook: the traceback of an uncaught error with the locals of the innermost frames."""

from __future__ import annotations

import io
import sys

from returnn.util import better_exchook


def _fail(count: int) -> None:
    items = list(range(count))
    raise ValueError(f"bad {len(items)}")


def test_better_exchook_prints_locals_of_the_failing_frame():
    try:
        _fail(3)
    except ValueError:
        out = io.StringIO()
        better_exchook.better_exchook(*sys.exc_info(), file=out)
    text = out.getvalue()
    assert text.startswith("Traceback (most recent call last):")
    assert "in _fail" in text and 'raise ValueError(f"bad {len(items)}")' in text
    assert "      count = 3" in text and "      items = [0, 1, 2]" in text
    assert text.rstrip().endswith("ValueError: bad 3")


def test_better_exchook_install_sets_the_excepthook(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    better_exchook.install()
    assert sys.excepthook is better_exchook.better_exchook


def test_better_exchook_survives_a_broken_repr():
    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")

    def fail(obj):
        raise KeyError("x")

    try:
        fail(Broken())
    except KeyError:
        text = better_exchook.format_exception(*sys.exc_info())
    assert "obj = <repr failed: RuntimeError: no repr>" in text
