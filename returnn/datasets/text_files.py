"""Reading text files of datasets (corpora, vocabularies, seq lists): UTF-8, optionally gzipped.

Broken files give a DatasetError naming the file (and, for bad UTF-8, the line) instead of a
UnicodeDecodeError, EOFError or BadGzipFile traceback.
"""

from __future__ import annotations

import gzip
import zlib

from returnn.errors import DatasetError


def read_text(path: str) -> str:
    """The whole text of a UTF-8 file (gunzipped if the name ends in .gz)."""
    data = _read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start:exc.end]
        raise DatasetError(f"file {path!r}, line {line}: not valid UTF-8 (byte {bad!r} at offset {exc.start}: "
                           f"{exc.reason}); text files must be UTF-8 encoded") from None


def read_text_lines(path: str) -> list[str]:
    """Lines of a text file (gzipped if it ends in .gz), without line endings.

    Lines end at "\\n" only (a trailing "\\r" is dropped), as Python's ``readlines`` and RETURNN split them:
    other Unicode line separators (U+2028, U+0085, form feed, ...) stay inside their line.
    """
    lines = read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_bytes(path: str) -> bytes:
    gzipped = str(path).endswith(".gz")
    try:
        if gzipped:
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"cannot read file {path!r}: the gzip data is truncated or corrupt ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"cannot read file {path!r}: {exc}") from exc
