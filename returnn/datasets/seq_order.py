"""Per-epoch sequence order: RETURNN's ``seq_ordering`` variants and ``partition_epoch``.

Every function here works on corpus indices (positions in the dataset's full sequence list) and is
deterministic for a given epoch, so an order can be reproduced after a restart.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from returnn.errors import DatasetError

SEQ_ORDERINGS = ("default", "reverse", "random", "sorted", "sorted_reverse", "laplace", "sort_bin_shuffle")


def full_epoch(epoch: int, partition_epoch: int) -> int:
    """The pass over the whole data that sub-epoch ``epoch`` (1-based) belongs to (1-based)."""
    return (max(epoch, 1) - 1) // max(partition_epoch, 1) + 1


def random_seed_for_epoch(epoch: int, *, partition_epoch: int = 1, random_seed_offset: int = 0) -> int:
    """Seed of the shuffles of one full epoch: all sub-epochs of a partitioned epoch share it."""
    return full_epoch(epoch, partition_epoch) + random_seed_offset


def _parse_method(seq_ordering: str) -> tuple[str, list[str]]:
    """Split ``"laplace:.100"`` into ``("laplace", [".100"])`` and check the method name."""
    parts = str(seq_ordering).split(":")
    method, args = parts[0], parts[1:]
    if method not in SEQ_ORDERINGS:
        raise DatasetError(
            f"seq_ordering {seq_ordering!r}: unknown method {method!r}; expected one of {', '.join(SEQ_ORDERINGS)}"
        )
    return method, args


def _bin_count(arg: str | None, num_seqs: int, *, option: str) -> int:
    """Number of bins: ``N`` means N bins, ``.N`` means bins of about N sequences each."""
    try:
        if arg is None:
            return max(num_seqs // 1000, 2)
        if arg.startswith("."):
            return max(num_seqs // max(int(arg[1:]), 1), 1)
        return max(int(arg), 1)
    except ValueError:
        raise DatasetError(f"seq_ordering {option!r}: expected 'N' or '.N' after ':', got {arg!r}") from None


def _sorted(indices: np.ndarray, get_seq_len: Callable[[int], int], reverse: bool) -> np.ndarray:
    """Stable sort of corpus indices by length (longest first if ``reverse``)."""
    lens = np.array([get_seq_len(int(i)) for i in indices], dtype=np.int64)
    order = np.argsort(-lens if reverse else lens, kind="stable")
    return indices[order]


def _laplace(indices: np.ndarray, rng: np.random.Generator, bins: int, get_seq_len: Callable[[int], int]) -> np.ndarray:
    """Shuffle, cut into ``bins`` equal parts, sort each part by length, alternately up and down."""
    shuffled = indices[rng.permutation(len(indices))]
    n = len(shuffled)
    parts = []
    for b in range(bins):
        part = shuffled[b * n // bins : (b + 1) * n // bins]
        parts.append(_sorted(part, get_seq_len, reverse=(b % 2 == 1)))
    return np.concatenate(parts) if parts else shuffled


def _sort_bin_shuffle(indices: np.ndarray, rng: np.random.Generator, bins: int, get_seq_len: Callable[[int], int]) -> np.ndarray:
    """Shuffle, sort by length, cut into ``bins`` parts, then shuffle the order of the parts."""
    by_len = _sorted(indices[rng.permutation(len(indices))], get_seq_len, reverse=False)
    n = len(by_len)
    parts = [by_len[b * n // bins : (b + 1) * n // bins] for b in range(bins)]
    parts = [parts[i] for i in rng.permutation(len(parts))]
    return np.concatenate(parts) if parts else by_len


def order_corpus(
    indices: Sequence[int] | np.ndarray,
    seq_ordering: str,
    *,
    seed: int,
    get_seq_len: Callable[[int], int] | None = None,
) -> np.ndarray:
    """Order the given corpus indices by ``seq_ordering`` (one full epoch, before partitioning)."""
    indices = np.asarray(indices, dtype=np.int64)
    method, args = _parse_method(seq_ordering)
    if method in ("sorted", "sorted_reverse", "laplace", "sort_bin_shuffle") and get_seq_len is None:
        raise DatasetError(f"seq_ordering {seq_ordering!r} needs sequence lengths, which this dataset cannot give")
    if method == "default":
        return indices
    if method == "reverse":
        return indices[::-1].copy()
    if method == "sorted":
        return _sorted(indices, get_seq_len, reverse=False)
    if method == "sorted_reverse":
        return _sorted(indices, get_seq_len, reverse=True)
    if method == "random":
        extra = _int_arg(args, seq_ordering)
        rng = np.random.default_rng([seed, extra] if extra is not None else [seed])
        return indices[rng.permutation(len(indices))]
    extra = _int_arg(args[1:], seq_ordering)
    rng = np.random.default_rng([seed, extra] if extra is not None else [seed])
    bins = _bin_count(args[0] if args else None, len(indices), option=seq_ordering)
    if method == "laplace":
        return _laplace(indices, rng, bins, get_seq_len)
    return _sort_bin_shuffle(indices, rng, bins, get_seq_len)


def _int_arg(args: list[str], option: str) -> int | None:
    """The integer seed argument (``random:SEED``, ``laplace:N:SEED``), if any."""
    if not args or args[0] == "":
        return None
    try:
        return int(args[0])
    except ValueError:
        raise DatasetError(f"seq_ordering {option!r}: expected an integer seed, got {args[0]!r}") from None


def partition_bounds(num_seqs: int, partition_epoch: int, epoch: int) -> tuple[int, int]:
    """Start and end (exclusive) of sub-epoch ``epoch``'s slice of a full epoch of ``num_seqs`` sequences.

    The sequences are split as evenly as possible; the first ``num_seqs % partition_epoch`` parts get one more.
    """
    partition_epoch = max(int(partition_epoch), 1)
    part = (max(epoch, 1) - 1) % partition_epoch
    base, rest = divmod(num_seqs, partition_epoch)
    start = part * base + min(part, rest)
    return start, start + base + (1 if part < rest else 0)


def fixed_random_subset_indices(num_seqs: int, fixed_random_subset: int | float) -> np.ndarray:
    """RETURNN's ``fixed_random_subset``: N sequences (int) or a fraction (float < 1), same for every epoch."""
    if isinstance(fixed_random_subset, float) and 0 < fixed_random_subset < 1:
        count = max(int(round(num_seqs * fixed_random_subset)), 1)
    else:
        count = int(fixed_random_subset)
    if count <= 0:
        raise DatasetError(f"fixed_random_subset: expected a positive count or a fraction in (0, 1), got {fixed_random_subset!r}")
    count = min(count, num_seqs)
    rng = np.random.default_rng(42)
    return np.sort(rng.choice(num_seqs, size=count, replace=False)).astype(np.int64)
