"""Hypotheses of the ``search`` task as text, and the ``search_output_file`` they are written to."""

from __future__ import annotations

import gzip
import math
import numbers
from typing import Sequence, Union

from returnn.errors import ConfigError
from returnn.util.atomic import atomic_write

Hyp = Union[str, Sequence[int]]
NBest = Sequence[tuple[float, Hyp]]

FORMATS = ("txt", "py")
NON_FINITE_SCORE = -1e30  # written for -inf/nan scores, which ast.literal_eval cannot read back


def labels_to_text(labels: Sequence[int], vocab: Sequence[str] | None, *, bpe_join: bool = False) -> str | list[int]:
    """Label ids as their vocab strings joined by spaces; without a vocab, the ids as plain ints.

    ``bpe_join`` merges BPE pieces (``"hel@@ lo"`` -> ``"hello"``) and drops a dangling final ``"@@"``;
    it has no effect without a vocab.
    """
    ids = [int(label) for label in labels]
    if vocab is None:
        return ids
    for label in ids:
        if not 0 <= label < len(vocab):
            raise ValueError(f"label {label} is outside the vocab (size {len(vocab)})")
    text = " ".join(vocab[label] for label in ids)
    if bpe_join:
        text = text.replace("@@ ", "")
        if text.endswith("@@"):
            text = text[:-2]
    return text


def _check_hyp(hyp: object, what: str) -> Hyp:
    """A str stays; a sequence of ints becomes a list of plain ints; anything else is a TypeError."""
    if isinstance(hyp, str):
        return hyp
    if isinstance(hyp, Sequence) or hasattr(hyp, "__array__"):
        items = list(hyp)
        if all(isinstance(item, numbers.Integral) for item in items):
            return [int(item) for item in items]
    raise TypeError(f"{what}: expected a str or a sequence of int labels, got {hyp!r}")


def _check_score(score: object, what: str) -> float:
    if not isinstance(score, numbers.Real):
        raise TypeError(f"{what}: score must be a number, got {score!r}")
    score = float(score)
    return score if math.isfinite(score) else NON_FINITE_SCORE


def _normalize(hyp: object, seq_tag: str) -> Hyp | list[tuple[float, Hyp]]:
    """One hypothesis, or an n-best list sorted best (highest score) first; an empty list is an empty hypothesis."""
    if isinstance(hyp, Sequence) and not isinstance(hyp, str) and len(hyp) > 0 \
            and all(isinstance(entry, (tuple, list)) for entry in hyp):
        n_best = []
        for i, entry in enumerate(hyp):
            what = f"seq {seq_tag!r}: n-best entry {i}"
            if len(entry) != 2:
                raise TypeError(f"{what}: expected a (score, hyp) pair, got {entry!r}")
            n_best.append((_check_score(entry[0], what), _check_hyp(entry[1], what)))
        return sorted(n_best, key=lambda pair: -pair[0])  # stable: ties keep their given order
    return _check_hyp(hyp, f"seq {seq_tag!r}")


def _as_line(hyp: Hyp) -> str:
    return hyp if isinstance(hyp, str) else " ".join(str(label) for label in hyp)


class SearchOutputWriter:
    """Collects hypotheses per sequence and writes them in corpus order, atomically, on ``close()``.

    ``fmt`` ``"txt"``: one line per sequence (for an n-best list, its best hypothesis); ``"py"``: a dict
    literal ``{seq_tag: hyp, ...}`` one entry a line, n-best lists as ``[(score, hyp), ...]`` best first,
    readable with ``ast.literal_eval``. Non-finite scores are written as ``-1e30``. A path ending in
    ``.gz`` is gzip-compressed. Until ``close()`` completes, a file already at ``path`` stays as it was.
    """

    def __init__(self, path: str, fmt: str):
        if fmt not in FORMATS:
            raise ConfigError(f'config key "search_output_file_format": unknown format {fmt!r}; '
                              f'expected one of: {", ".join(FORMATS)}')
        self.path = path
        self.fmt = fmt
        self._entries: dict[int, tuple[str, Hyp | list[tuple[float, Hyp]]]] = {}
        self._tags: set[str] = set()
        self._closed = False

    def add(self, corpus_index: int, seq_tag: str, hyp: Hyp | NBest) -> None:
        """Store the hypothesis (or n-best list) of one sequence; any order, each index and tag once."""
        if self._closed:
            raise ValueError(f"search output {self.path!r}: add() after close() or abort()")
        if not isinstance(corpus_index, numbers.Integral):
            raise TypeError(f"search output {self.path!r}: corpus_index must be an int, got {corpus_index!r}")
        if not isinstance(seq_tag, str):
            raise TypeError(f"search output {self.path!r}: seq_tag must be a str, got {seq_tag!r}")
        if corpus_index in self._entries:
            raise ValueError(f"search output {self.path!r}: corpus index {corpus_index} added twice "
                             f"(tags {self._entries[corpus_index][0]!r} and {seq_tag!r})")
        if seq_tag in self._tags:
            raise ValueError(f"search output {self.path!r}: seq tag {seq_tag!r} added twice")
        entry = _normalize(hyp, seq_tag)
        line = _as_line(self._best(entry))
        if self.fmt == "txt" and ("\n" in line or "\r" in line):
            raise ValueError(f"search output {self.path!r}: seq {seq_tag!r}: hypothesis contains a line break, "
                             f'which format "txt" cannot hold')
        self._entries[int(corpus_index)] = (seq_tag, entry)
        self._tags.add(seq_tag)

    @staticmethod
    def _best(entry: Hyp | list[tuple[float, Hyp]]) -> Hyp:
        is_n_best = isinstance(entry, list) and len(entry) > 0 and isinstance(entry[0], tuple)
        return entry[0][1] if is_n_best else entry

    def _render(self) -> str:
        items = [self._entries[index] for index in sorted(self._entries)]
        if self.fmt == "txt":
            return "".join(_as_line(self._best(entry)) + "\n" for _, entry in items)
        return "{\n" + "".join(f"{tag!r}: {entry!r},\n" for tag, entry in items) + "}\n"

    def close(self) -> None:
        """Write the file (temp file, then rename over ``path``); a second call does nothing."""
        if self._closed:
            return
        data = self._render().encode("utf-8")
        if self.path.endswith(".gz"):
            with atomic_write(self.path, "wb") as f:
                with gzip.GzipFile(filename=self.path, fileobj=f, mode="wb", mtime=0) as gz:
                    gz.write(data)
        else:
            with atomic_write(self.path, "wb") as f:
                f.write(data)
        self._closed = True

    def abort(self) -> None:
        """Drop what was added; nothing is written and a file already at ``path`` stays untouched."""
        self._entries.clear()
        self._tags.clear()
        self._closed = True

    def __enter__(self) -> SearchOutputWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
