"""A traceback printer that also shows the local variables of the innermost frames (RETURNN's
``better_exchook``): ``better_exchook.install()`` makes it the handler of uncaught exceptions."""

from __future__ import annotations

import linecache
import sys
import traceback
from types import TracebackType
from typing import TextIO

LOCALS_FRAMES = 3  # frames nearest the error that show their locals
MAX_REPR = 200  # characters of one local's repr


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = f"<repr failed: {type(exc).__name__}: {exc}>"
    return text if len(text) <= MAX_REPR else text[:MAX_REPR - 3] + "..."


def format_exception(etype: type[BaseException], value: BaseException, tb: TracebackType | None, *,
                     locals_frames: int = LOCALS_FRAMES) -> str:
    """The traceback as text; the last ``locals_frames`` frames list their local variables."""
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    lines = ["Traceback (most recent call last):"]
    for i, (frame, lineno) in enumerate(frames):
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}')
        source = linecache.getline(code.co_filename, lineno, frame.f_globals).strip()
        if source:
            lines.append(f"    {source}")
        if i >= len(frames) - locals_frames and frame.f_locals:
            lines.append("    locals:")
            for name, local in sorted(frame.f_locals.items()):
                if not (name.startswith("__") and name.endswith("__")):
                    lines.append(f"      {name} = {_short_repr(local)}")
    lines.extend(line.rstrip("\n") for line in traceback.format_exception_only(etype, value))
    return "\n".join(lines) + "\n"


def better_exchook(etype: type[BaseException], value: BaseException, tb: TracebackType | None, *,
                   file: TextIO | None = None) -> None:
    """An ``sys.excepthook``: print the traceback with locals to ``file`` (stderr)."""
    (file or sys.stderr).write(format_exception(etype, value, tb))
    (file or sys.stderr).flush()


def install() -> None:
    """Make ``better_exchook`` the handler of uncaught exceptions."""
    sys.excepthook = better_exchook
