"""Padded batches from a dataset with RETURNN's limits (``batch_size``, ``max_seqs``, ``max_seq_length``,
``chunking``), built in a background thread.

How one epoch becomes batches (docs/datasets.rst has the full description):

1. Sequences are visited in the dataset's order of the epoch (``init_seq_order``).
2. With ``chunking`` each sequence is cut into chunks ``[t, t + size)`` for ``t = 0, step, 2 * step, ...``
   while ``t < length`` (the last chunks may be shorter); without it a sequence is one slice.
3. A slice longer than ``max_seq_length`` is skipped.
4. Slices are appended to the current batch in order. A new batch starts when adding the slice would
   make ``max length in batch x number of seqs`` exceed ``batch_size`` or the number of seqs exceed
   ``max_seqs``. A slice that alone exceeds ``batch_size`` gets a batch of its own.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Any, Iterator, Sequence

import numpy as np

from returnn.datasets.base import Dataset, config_value
from returnn.datasets.batch_checks import check_batch_array
from returnn.datasets.chunking import ChunkSpec, SeqSlice, iter_seq_slices, parse_chunking
from returnn.errors import DatasetError
from returnn.log import logger


@dataclasses.dataclass(eq=False)
class Batch:
    """A padded batch: per key ``data[key]`` [B, T, ...] and ``seq_lens[key]`` int32 [B]."""

    data: dict[str, np.ndarray]
    seq_lens: dict[str, np.ndarray]
    seq_tags: list[str]
    seq_idx: np.ndarray
    chunk_start: dict[str, np.ndarray]
    epoch: int | None = None

    def __getitem__(self, key: str) -> np.ndarray:
        return self.data[key]

    def keys(self) -> list[str]:
        """Data keys in this batch."""
        return list(self.data)

    @property
    def num_seqs(self) -> int:
        """Number of sequences (or chunks) in the batch."""
        return len(self.seq_tags)

    def num_frames(self, key: str | None = None) -> int:
        """Real (unpadded) frames of ``key`` (default: ``data``, else the first key)."""
        key = key or ("data" if "data" in self.seq_lens else next(iter(self.seq_lens)))
        return int(self.seq_lens[key].sum())

    def mask(self, key: str) -> np.ndarray:
        """Bool [B, T]: True on real frames, False on padding."""
        lens = self.seq_lens[key]
        return np.arange(self.data[key].shape[1])[None, :] < lens[:, None]


def _limit_for(limit: int | dict | None, key: str) -> int | None:
    """The limit of ``key`` from an int (all keys) or a per-key dict; None or <= 0 means no limit."""
    value = limit.get(key) if isinstance(limit, dict) else limit
    return int(value) if value is not None and value > 0 else None


def too_long(lens: dict[str, int], max_seq_length: int | float | dict | None) -> bool:
    """RETURNN's ``max_seq_length``: int > 0 limits every key, int < 0 limits ``classes`` to -N, dict per key."""
    if not max_seq_length:
        return False
    if isinstance(max_seq_length, dict):
        return any(key in lens and lens[key] > limit for key, limit in max_seq_length.items() if limit and limit > 0)
    if max_seq_length < 0:
        return lens.get("classes", 0) > -max_seq_length
    return max(lens.values(), default=0) > max_seq_length


def exceeds_batch(max_lens: dict[str, int], num_seqs: int, batch_size: int | dict, max_seqs: int | None) -> bool:
    """True if a batch of ``num_seqs`` padded to ``max_lens`` breaks ``batch_size`` (frames) or ``max_seqs``."""
    if max_seqs is not None and max_seqs > 0 and num_seqs > max_seqs:
        return True
    for key, length in max_lens.items():
        limit = _limit_for(batch_size, key)
        if limit is not None and length * num_seqs > limit:
            return True
    return False


def iter_batch_plans(
    slices: Iterator[SeqSlice], *, batch_size: int | dict, max_seqs: int | None, max_seq_length: Any = None
) -> Iterator[list[SeqSlice]]:
    """Group slices, in order, into batches under the limits (see the module docstring)."""
    plan: list[SeqSlice] = []
    max_lens: dict[str, int] = {}
    for piece in slices:
        lens = piece.lengths()
        if too_long(lens, max_seq_length):
            continue
        merged = {k: max(max_lens.get(k, 0), n) for k, n in {**max_lens, **lens}.items()}
        if plan and exceeds_batch(merged, len(plan) + 1, batch_size, max_seqs):
            yield plan
            plan, merged = [], dict(lens)
        elif not plan and exceeds_batch(lens, 1, batch_size, None):
            logger.debug("sequence %i (lengths %s) alone exceeds batch_size %s", piece.seq_idx, lens, batch_size)
        plan.append(piece)
        max_lens = merged
    if plan:
        yield plan


def make_batch(dataset: Dataset, plan: Sequence[SeqSlice], keys: Sequence[str], epoch: int | None = None) -> Batch:
    """Load the sequences of ``plan`` and pad every key to its longest slice; bad values are a DatasetError
    naming the sequence (``check_batch_array``)."""
    dataset.load_seqs(min(p.seq_idx for p in plan), max(p.seq_idx for p in plan) + 1)
    data, seq_lens, starts = {}, {}, {}
    for key in keys:
        pieces = [dataset.get_data(p.seq_idx, key)[p.start[key] : p.end[key]] for p in plan]
        lens = np.array([len(x) for x in pieces], dtype=np.int32)
        out = np.zeros((len(pieces), int(lens.max(initial=0))) + pieces[0].shape[1:], dtype=pieces[0].dtype)
        for i, x in enumerate(pieces):
            out[i, : len(x)] = x
        check_batch_array(dataset, key, out, plan)
        data[key], seq_lens[key] = out, lens
        starts[key] = np.array([p.start[key] for p in plan], dtype=np.int32)
    return Batch(
        data=data,
        seq_lens=seq_lens,
        seq_tags=[dataset.get_tag(p.seq_idx) for p in plan],
        seq_idx=np.array([p.seq_idx for p in plan], dtype=np.int64),
        chunk_start=starts,
        epoch=epoch,
    )


class _Failure:
    """An exception raised in the producer thread, handed to the consumer."""

    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


class Prefetcher:
    """Runs an iterator in a background thread, ``size`` items ahead; ``close()`` stops and joins it."""

    def __init__(self, source: Iterator, size: int):
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=max(int(size), 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="returnn-batch-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Put ``item`` unless stopped; False once stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if not self._thread.is_alive() and self._queue.empty():
                        raise DatasetError("batch prefetch thread ended without a result") from None
                    continue
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the producer, drop queued items and join the thread."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def alive(self) -> bool:
        """True while the producer thread runs."""
        return self._thread.is_alive()


class BatchGenerator:
    """Iterates padded ``Batch`` objects of one epoch of ``dataset``.

    Example::

        for batch in BatchGenerator(ds, batch_size=5000, max_seqs=40, chunking="100:50", epoch=1):
            batch["data"], batch.seq_lens["data"]
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int | dict = 1,
        max_seqs: int | None = -1,
        max_seq_length: int | float | dict | None = None,
        chunking: Any = None,
        min_chunk_size: int = 0,
        epoch: int | None = None,
        shuffle_batches: bool = False,
        data_keys: Sequence[str] | None = None,
        prefetch: int = 2,
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.max_seqs = max_seqs
        self.max_seq_length = max_seq_length
        self.chunking: ChunkSpec | None = parse_chunking(chunking)
        self.min_chunk_size = int(min_chunk_size)
        self.epoch = epoch
        self.shuffle_batches = bool(shuffle_batches)
        self.data_keys = list(data_keys) if data_keys is not None else dataset.get_data_keys()
        for key in self.data_keys:
            dataset._check_key(key)
        self.prefetch = int(prefetch)
        self._prefetcher: Prefetcher | None = None
        self._order_ready = False
        if epoch is not None:  # now, in the caller's thread, so that dataset.num_seqs is valid right away
            dataset.init_seq_order(epoch=epoch)
            self._order_ready = True

    def iter_plans(self) -> Iterator[list[SeqSlice]]:
        """Batch plans (lists of sequence slices) of the epoch, shuffled if ``shuffle_batches``."""
        slices = iter_seq_slices(self.dataset, self.data_keys, self.chunking, min_chunk_size=self.min_chunk_size)
        plans = iter_batch_plans(
            slices, batch_size=self.batch_size, max_seqs=self.max_seqs, max_seq_length=self.max_seq_length
        )
        if not self.shuffle_batches:
            yield from plans
            return
        plans = list(plans)
        rng = np.random.default_rng([self.epoch or 1, self.dataset.random_seed_offset])
        for i in rng.permutation(len(plans)):
            yield plans[i]

    def _produce(self) -> Iterator[Batch]:
        """Build the batches (runs in the producer thread when prefetching)."""
        for plan in self.iter_plans():
            yield make_batch(self.dataset, plan, self.data_keys, epoch=self.epoch)

    def __iter__(self) -> Iterator[Batch]:
        if self.epoch is not None and not self._order_ready:
            self.dataset.init_seq_order(epoch=self.epoch)
        self._order_ready = False
        if self.prefetch <= 0:
            return self._produce()
        self.close()
        self._prefetcher = Prefetcher(self._produce(), self.prefetch)
        return iter(self._prefetcher)

    def close(self) -> None:
        """Stop a running prefetch thread."""
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def __enter__(self) -> BatchGenerator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def inference_batch_config(config: Any, batch_size_key: str, batch_size: Any = None) -> dict[str, Any]:
    """The batching keys of a forward or search pass, for ``batch_generator_from_config``: ``batch_size`` if given,
    else config ``batch_size_key`` (``forward_batch_size``, ``search_batch_size``), else ``batch_size``; and
    ``max_seqs`` (the training-only keys, such as ``max_seq_length``, are left out)."""
    size = batch_size or config_value(config, batch_size_key, config_value(config, "batch_size", 1))
    return {"batch_size": size, "max_seqs": config_value(config, "max_seqs", -1)}


def batch_generator_from_config(
    dataset: Dataset, config: Any, *, epoch: int | None = None, train: bool = True, prefetch: int = 2
) -> BatchGenerator:
    """A BatchGenerator from the config keys batch_size, max_seqs, max_seq_length, chunking, min_chunk_size,
    shuffle_batches; chunking (the dataset's own, else the config's) only when ``train``."""
    batch_size = config_value(config, "batch_size", 1)
    if isinstance(batch_size, str):
        try:
            batch_size = int(batch_size)
        except ValueError:
            raise DatasetError(f"config key \"batch_size\": expected an int or a per-key dict, got {batch_size!r}") from None
    chunking = None
    if train:
        chunking = dataset.chunking if dataset.chunking not in (None, 0, "0", "") else config_value(config, "chunking")
    return BatchGenerator(
        dataset,
        batch_size=batch_size,
        max_seqs=int(config_value(config, "max_seqs", None) or -1),
        max_seq_length=config_value(config, "max_seq_length", None),
        chunking=chunking,
        min_chunk_size=dataset.min_chunk_size or int(config_value(config, "min_chunk_size", 0) or 0),
        epoch=epoch,
        shuffle_batches=bool(config_value(config, "shuffle_batches", False)),
        prefetch=prefetch,
    )
