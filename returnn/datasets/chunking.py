"""RETURNN's ``chunking``: cut sequences into (overlapping) windows for training.

``chunking`` is ``"SIZE:STEP"``, ``"SIZE"`` (step = size), an int, a ``(size, step)`` pair, or a pair of
per-key dicts ``({"data": 100, "classes": 50}, {"data": 50, "classes": 25})``. ``0`` / ``None`` is off.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence

from returnn.errors import DatasetError

ChunkSpec = tuple  # (size: int | dict, step: int | dict)


@dataclasses.dataclass
class SeqSlice:
    """Frames ``[start[key], end[key])`` of sequence ``seq_idx`` (the whole sequence without chunking)."""

    seq_idx: int
    start: dict[str, int]
    end: dict[str, int]

    def lengths(self) -> dict[str, int]:
        """Frames per key of this slice."""
        return {k: self.end[k] - self.start[k] for k in self.end}


def _int_or_dict(value: Any, what: str) -> int | dict:
    """Check one half of a chunking spec."""
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"config key \"chunking\": {what} must be an int or a per-key dict, got {value!r}") from None


def parse_chunking(chunking: Any) -> ChunkSpec | None:
    """Normalize a ``chunking`` value to ``(size, step)``, or None when chunking is off."""
    if chunking is None or chunking == 0 or chunking == "" or chunking == "0":
        return None
    if isinstance(chunking, str):
        parts = chunking.split(":")
        if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
            raise DatasetError(f"config key \"chunking\": expected \"SIZE:STEP\" or \"SIZE\", got {chunking!r}")
        size = int(parts[0])
        step = int(parts[1]) if len(parts) == 2 else size
    elif isinstance(chunking, (list, tuple)):
        if len(chunking) != 2:
            raise DatasetError(f"config key \"chunking\": expected (size, step), got {chunking!r}")
        size, step = _int_or_dict(chunking[0], "size"), _int_or_dict(chunking[1], "step")
    else:
        size = _int_or_dict(chunking, "size")
        step = size
    for part, what in ((size, "size"), (step, "step")):
        values = part.values() if isinstance(part, dict) else [part]
        if any(v <= 0 for v in values):
            raise DatasetError(f"config key \"chunking\": {what} must be positive, got {chunking!r}")
    if size == 0 or (isinstance(size, dict) and not size):
        return None
    return size, step


def _per_key(part: int | dict, key: str) -> int | None:
    """Value of a chunking half for ``key`` (None: key not chunked)."""
    return part.get(key) if isinstance(part, dict) else part


def chunk_sequence(
    seq_idx: int, lens: dict[str, int], chunking: ChunkSpec, *, min_chunk_size: int = 0, tag: str = ""
) -> Iterator[SeqSlice]:
    """Chunks of one sequence; keys of length <= 1 or without a chunk size are taken whole in every chunk."""
    size, step = chunking
    default = "data" if "data" in lens else next(iter(lens))
    if _per_key(size, default) is None:
        raise DatasetError(f"config key \"chunking\": no chunk size for the key {default!r}")
    chunked, whole = [], []
    for key, length in lens.items():
        same_step = _per_key(step, key) == _per_key(step, default)
        if key == default or (_per_key(size, key) is not None and same_step and length == lens[default]):
            chunked.append(key)
        elif length <= 1 or _per_key(size, key) is None:
            whole.append(key)
        elif same_step:
            raise DatasetError(
                f"chunking sequence {tag!r}: keys {default!r} and {key!r} have different lengths "
                f"({lens[default]} vs {length}) but the same chunk step; give per-key chunk sizes and steps"
            )
        else:
            chunked.append(key)
    t = {key: 0 for key in chunked}
    while lens[default] > t[default]:
        start = {k: min(t[k], lens[k]) for k in chunked}  # a key at a lower rate may run out first
        end = {k: min(t[k] + _per_key(size, k), lens[k]) for k in chunked}
        start.update({k: 0 for k in whole})
        end.update({k: lens[k] for k in whole})
        yield SeqSlice(seq_idx, start, end)
        t = {k: t[k] + _per_key(step, k) for k in chunked}
        if lens[default] - t[default] <= min_chunk_size:
            break


def iter_seq_slices(dataset: Any, keys: Sequence[str], chunking: ChunkSpec | None, *, min_chunk_size: int = 0) -> Iterator[SeqSlice]:
    """Slices of all sequences of the current epoch, in order: whole sequences, or chunks."""
    seq_idx = 0
    while dataset.is_less_than_num_seqs(seq_idx):
        all_lens = dataset.get_seq_length(seq_idx)
        lens = {k: int(all_lens[k]) for k in keys}
        if chunking is None:
            yield SeqSlice(seq_idx, {k: 0 for k in keys}, lens)
        else:
            yield from chunk_sequence(seq_idx, lens, chunking, min_chunk_size=min_chunk_size, tag=dataset.get_tag(seq_idx))
        seq_idx += 1
