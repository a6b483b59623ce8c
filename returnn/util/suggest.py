"""``did_you_mean``: the closest known name to a misspelt one, for error and warning messages."""

from __future__ import annotations

import difflib
from typing import Iterable


def closest_name(name: str, known: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The known name most similar to ``name`` (difflib ratio >= ``cutoff``), or None."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str], *, cutoff: float = 0.6) -> str:
    """``; did you mean 'x'?`` for the closest of ``known``, or an empty string."""
    close = closest_name(name, known, cutoff=cutoff)
    return f"; did you mean {close!r}?" if close else ""
