"""Synthetic datasets for demos and tests: RETURNN's GeneratingDataset API and a few tasks.

``GeneratingDataset`` subclasses (also in a user's Python config) implement
``generate_seq(seq_idx) -> DatasetSeq`` and draw from ``self.random`` (a ``numpy.random.RandomState``),
which is reseeded per sequence, so a sequence only depends on its index and the epoch's seed
(``fixed_random_seed`` makes the data the same in every epoch).
"""

from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

from returnn.datasets.base import Dataset, DatasetSeq, SeqDict, register_dataset
from returnn.datasets.in_memory import InMemoryDataset
from returnn.errors import DatasetError

_RECENT_SEQS = 512  # generated sequences kept, so that asking a length and then the data generates once


def _dim_spec(value: Any, *, sparse_default: bool) -> list[int]:
    """``dim`` or ``[dim, ndim]`` -> ``[dim, ndim]``."""
    if isinstance(value, (list, tuple)):
        return [int(value[0]), int(value[1])]
    return [int(value), 1 if sparse_default else 2]


@register_dataset
class GeneratingDataset(Dataset):
    """Base of generated datasets: ``generate_seq(seq_idx)`` builds sequence ``seq_idx`` from ``self.random``."""

    def __init__(
        self,
        input_dim: int | list | None,
        output_dim: int | list | dict,
        num_seqs: int = 1000,
        fixed_random_seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_seqs is None or not np.isfinite(num_seqs):
            raise DatasetError(f"{type(self).__name__}: num_seqs must be a finite number, got {num_seqs!r}")
        self._num_generated = int(num_seqs)
        self.fixed_random_seed = fixed_random_seed
        if input_dim is not None:
            self.num_outputs["data"] = _dim_spec(input_dim, sparse_default=False)
        outputs = output_dim if isinstance(output_dim, dict) else {"classes": output_dim}
        for key, value in outputs.items():
            self.num_outputs[key] = _dim_spec(value, sparse_default=True)
        for key, (_, ndim) in self.num_outputs.items():
            self._dtypes[key] = "float32" if ndim >= 2 else "int32"
        self._epoch_seed = 0
        self._recent: collections.OrderedDict[int, SeqDict] = collections.OrderedDict()
        self.random = np.random.RandomState(0)

    def init_seq_order(self, epoch: int | None = None, seq_list=None, seq_order=None) -> bool:
        """Pick the generation seed of ``epoch`` (unless ``fixed_random_seed``), then order as usual."""
        if self.fixed_random_seed is not None:
            seed = int(self.fixed_random_seed)
        else:
            seed = (max(epoch or 1, 1) - 1) // self.partition_epoch + 1 + self.random_seed_offset
        if seed != self._epoch_seed:
            self._epoch_seed = seed
            self._recent.clear()
            self._full_order_memo = None
        return super().init_seq_order(epoch, seq_list=seq_list, seq_order=seq_order)

    def generate_seq(self, seq_idx: int) -> DatasetSeq:
        """Build sequence ``seq_idx`` (override in subclasses)."""
        raise DatasetError(f"{type(self).__name__} must define generate_seq(seq_idx)")

    def _num_corpus_seqs(self) -> int:
        return self._num_generated

    def _generate(self, corpus_idx: int) -> DatasetSeq:
        """Reseed ``self.random`` for this sequence and generate it."""
        self.random.seed([self._epoch_seed % (2**32), corpus_idx % (2**32)])
        return self.generate_seq(corpus_idx)

    def _load_corpus_seq(self, corpus_idx: int) -> SeqDict:
        """Generate (or take from the small recent-sequence memo, as batching asks lengths first) one sequence."""
        out = self._recent.get(corpus_idx)
        if out is not None:
            return out
        out = {}
        for key, value in self._generate(corpus_idx).features.items():
            dtype = self._dtypes.get(key)
            out[key] = value.astype(dtype) if dtype and value.dtype != dtype else value
        self._recent[corpus_idx] = out
        if len(self._recent) > _RECENT_SEQS:
            self._recent.popitem(last=False)
        return out

    def _corpus_tag(self, corpus_idx: int) -> str:
        return f"seq-{corpus_idx}"


@register_dataset
class Task12AXDataset(GeneratingDataset):
    """The 12AX memory task: one-hot symbols of "123ABCXYZ"; class 1 (R) on X after A under a 1, Y after B under a 2."""

    SYMBOLS = "123ABCXYZ"

    def __init__(self, num_seqs: int = 1000, **kwargs):
        super().__init__(input_dim=len(self.SYMBOLS), output_dim=2, num_seqs=num_seqs, **kwargs)
        self.labels = {"data": list(self.SYMBOLS), "classes": ["L", "R"]}

    def _random_string(self) -> str:
        """Outer loops (a digit) of inner pairs (A|B|C)(X|Y|Z), target pairs made likely."""
        out = []
        for _ in range(self.random.randint(1, 5)):
            digit = "123"[self.random.randint(3)]
            out.append(digit)
            for _ in range(self.random.randint(1, 5)):
                if self.random.rand() < 0.5:
                    out.append({"1": "AX", "2": "BY"}.get(digit, "CZ"))
                else:
                    out.append("ABC"[self.random.randint(3)] + "XYZ"[self.random.randint(3)])
        return "".join(out)

    @classmethod
    def targets_for(cls, symbols: str) -> np.ndarray:
        """The 12AX rule applied to a symbol string."""
        targets, digit, prev = [], None, None
        for ch in symbols:
            if ch in "123":
                digit = ch
            hit = (digit == "1" and prev == "A" and ch == "X") or (digit == "2" and prev == "B" and ch == "Y")
            targets.append(1 if hit else 0)
            prev = ch
        return np.array(targets, dtype=np.int32)

    def generate_seq(self, seq_idx: int) -> DatasetSeq:
        symbols = self._random_string()
        ids = np.array([self.SYMBOLS.index(ch) for ch in symbols])
        features = np.eye(len(self.SYMBOLS), dtype=np.float32)[ids]
        return DatasetSeq(seq_idx, features, self.targets_for(symbols))


@register_dataset
class DummyDataset(GeneratingDataset):
    """Deterministic ramps of fixed length ``seq_len``: data in [-0.5, 0.5) scaled by ``input_max_value``, classes cycling."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        num_seqs: int,
        seq_len: int = 2,
        input_max_value: float = 10.0,
        input_shift: float | None = None,
        input_scale: float | None = None,
        **kwargs,
    ):
        super().__init__(input_dim=input_dim, output_dim=output_dim, num_seqs=num_seqs, **kwargs)
        self.seq_len = int(seq_len)
        self.input_max_value = float(input_max_value)
        self.input_shift = -self.input_max_value / 2 if input_shift is None else float(input_shift)
        self.input_scale = 1.0 / self.input_max_value if input_scale is None else float(input_scale)

    def generate_seq(self, seq_idx: int) -> DatasetSeq:
        n_in = self.num_outputs["data"][0]
        ramp = np.arange(seq_idx, seq_idx + self.seq_len * n_in, dtype=np.float64)
        features = ((ramp % self.input_max_value) + self.input_shift) * self.input_scale
        first = seq_idx + self.seq_len * n_in
        targets = np.arange(first, first + self.seq_len) % self.num_outputs["classes"][0]
        return DatasetSeq(seq_idx, features.reshape(self.seq_len, n_in).astype(np.float32), targets)


@register_dataset
class StaticDataset(InMemoryDataset):
    """Sequences given directly: ``data=[{"data": array, "classes": array, ("seq_tag": str)}, ...]``."""

    def __init__(
        self,
        data: Sequence[dict],
        target_list: Sequence[str] | None = None,
        output_dim: dict | None = None,
        input_dim: int | list | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not data:
            raise DatasetError("StaticDataset: option \"data\" must be a non-empty list of dicts")
        self._tags = [str(seq.get("seq_tag", f"seq-{i}")) for i, seq in enumerate(data)]
        keys = [k for k in data[0] if k != "seq_tag"]
        self._seqs = []
        for i, seq in enumerate(data):
            if sorted(k for k in seq if k != "seq_tag") != sorted(keys):
                raise DatasetError(f"StaticDataset: sequence {i} has keys {sorted(seq)}, expected {sorted(keys)}")
            self._seqs.append({k: np.asarray(seq[k]) for k in keys})
        dims = dict(output_dim or {})
        if input_dim is not None:
            dims["data"] = input_dim
        for key in keys:
            self.num_outputs[key] = self._infer_dim(key, dims.get(key))
            self._dtypes[key] = str(self._seqs[0][key].dtype)
        if target_list is not None:
            missing = [k for k in target_list if k not in keys]
            if missing:
                raise DatasetError(f"StaticDataset: target_list names {missing}, not among the data keys {keys}")

    def _infer_dim(self, key: str, given: Any) -> list[int]:
        """``[dim, ndim]`` of ``key``: given, else from the arrays (sparse: max index + 1)."""
        first = self._seqs[0][key]
        if given is not None:
            return _dim_spec(given, sparse_default=first.ndim <= 1)
        if first.ndim >= 2:
            return [int(first.shape[-1]), first.ndim]
        if np.issubdtype(first.dtype, np.integer):
            return [int(max((s[key].max() for s in self._seqs if s[key].size), default=0)) + 1, 1]
        return [1, 1]


class _SymbolSeqTask(GeneratingDataset):
    """Random sparse symbol sequences; ``classes`` is a function of ``data``.

    Lengths are drawn from ``minlen..maxlen`` plus ``minlen_epoch_factor * epoch`` and
    ``maxlen_epoch_factor * epoch`` (RETURNN's way to make the task harder each epoch). ``minlen`` and
    ``maxlen`` default to 2 and 10, or to 0 (as in RETURNN) when their epoch factor is set.
    """

    def __init__(self, nsymbols: int = 10, minlen: int | None = None, maxlen: int | None = None,
                 minlen_epoch_factor: float = 0.0, maxlen_epoch_factor: float = 0.0, num_seqs: int = 1000,
                 **kwargs):
        super().__init__(input_dim=[nsymbols, 1], output_dim=nsymbols, num_seqs=num_seqs, **kwargs)
        self.nsymbols = int(nsymbols)
        self.minlen = int(minlen if minlen is not None else 0 if minlen_epoch_factor else 2)
        self.maxlen = int(maxlen if maxlen is not None else 0 if maxlen_epoch_factor else 10)
        self.minlen_epoch_factor, self.maxlen_epoch_factor = float(minlen_epoch_factor), float(maxlen_epoch_factor)
        self._len_range = self.len_range(1)
        if not self.minlen_epoch_factor and not self.maxlen_epoch_factor and not 0 <= self.minlen <= self.maxlen:
            raise DatasetError(f"{type(self).__name__}: need 0 <= minlen <= maxlen, got minlen={minlen}, maxlen={maxlen}")

    def len_range(self, epoch: int) -> tuple[int, int]:
        """The (min, max) sequence length in ``epoch``."""
        return (int(self.minlen + self.minlen_epoch_factor * epoch),
                int(self.maxlen + self.maxlen_epoch_factor * epoch))

    def init_seq_order(self, epoch: int | None = None, seq_list=None, seq_order=None) -> bool:
        """As the base class; lengths that grow with the epoch also renew the generated sequences."""
        len_range = self.len_range(max(epoch or 1, 1))
        if not 0 <= len_range[0] <= len_range[1]:
            raise DatasetError(f"{type(self).__name__}: epoch {epoch}: need 0 <= min length <= max length, got "
                               f"{len_range} (minlen={self.minlen}, maxlen={self.maxlen}, epoch factors "
                               f"{self.minlen_epoch_factor}, {self.maxlen_epoch_factor})")
        if len_range != self._len_range:
            self._len_range = len_range
            self._recent.clear()
            self._full_order_memo = None
        return super().init_seq_order(epoch, seq_list=seq_list, seq_order=seq_order)

    def transform(self, symbols: np.ndarray) -> np.ndarray:
        """Target sequence for the input symbols."""
        return symbols

    def generate_seq(self, seq_idx: int) -> DatasetSeq:
        length = self.random.randint(self._len_range[0], self._len_range[1] + 1)
        symbols = self.random.randint(0, self.nsymbols, size=length).astype(np.int32)
        return DatasetSeq(seq_idx, symbols, self.transform(symbols).astype(np.int32))


@register_dataset
class CopyTaskDataset(_SymbolSeqTask):
    """Copy task: ``classes`` equals ``data`` (sparse symbols, variable length)."""


@register_dataset
class ReverseTaskDataset(_SymbolSeqTask):
    """Reverse task: ``classes`` is ``data`` reversed."""

    def transform(self, symbols: np.ndarray) -> np.ndarray:
        return symbols[::-1].copy()


@register_dataset
class SortTaskDataset(_SymbolSeqTask):
    """Sort task: ``classes`` is ``data`` sorted ascending."""

    def transform(self, symbols: np.ndarray) -> np.ndarray:
        return np.sort(symbols)


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


@register_dataset
class TaskNumberBaseConvertDataset(GeneratingDataset):
    """A number written in ``input_base`` (``data``, most significant digit first, leading zeros possible) ->
    the same number in ``output_base`` (``classes``, no leading zeros; zero is ``[0]``). Sparse digits.

    The input has ``min_input_seq_len..max_input_seq_len`` random digits; the two lengths differ, which
    makes it a small encoder-decoder task (RETURNN's ``demo-tf-enc-dec``).
    """

    def __init__(self, input_base: int = 8, output_base: int = 2, min_input_seq_len: int = 1,
                 max_input_seq_len: int = 8, num_seqs: int = 1000, **kwargs):
        for key, base in (("input_base", input_base), ("output_base", output_base)):
            if not 2 <= base <= len(_DIGITS):
                raise DatasetError(f"TaskNumberBaseConvertDataset: {key} must be in 2..{len(_DIGITS)}, got {base}")
        if not 0 < min_input_seq_len <= max_input_seq_len:
            raise DatasetError(f"TaskNumberBaseConvertDataset: need 0 < min_input_seq_len <= max_input_seq_len, got "
                               f"{min_input_seq_len}, {max_input_seq_len}")
        super().__init__(input_dim=None, output_dim={"data": [input_base, 1], "classes": [output_base, 1]},
                         num_seqs=num_seqs, **kwargs)
        self.input_base, self.output_base = int(input_base), int(output_base)
        self.min_input_seq_len, self.max_input_seq_len = int(min_input_seq_len), int(max_input_seq_len)
        self.labels = {"data": list(_DIGITS[:input_base]), "classes": list(_DIGITS[:output_base])}

    def convert(self, digits: Sequence[int]) -> list[int]:
        """Digits in ``input_base`` -> digits in ``output_base``."""
        number = 0
        for digit in digits:
            number = number * self.input_base + int(digit)
        out = []
        while number:
            number, digit = divmod(number, self.output_base)
            out.append(digit)
        return out[::-1] or [0]

    def generate_seq(self, seq_idx: int) -> DatasetSeq:
        length = self.random.randint(self.min_input_seq_len, self.max_input_seq_len + 1)
        digits = self.random.randint(0, self.input_base, size=length)
        return DatasetSeq(seq_idx, digits.astype(np.int32), np.array(self.convert(digits), dtype=np.int32))


@register_dataset
class SyntheticSpeechDataset(GeneratingDataset):
    """Speech-like CTC task: dense frames around a per-label mean (with silence gaps) -> the label sequence.

    ``classes`` holds ``num_classes`` labels (no blank); a CTC loss adds the blank as index ``num_classes``.
    """

    def __init__(
        self,
        num_seqs: int = 100,
        input_dim: int = 16,
        num_classes: int = 10,
        min_labels: int = 2,
        max_labels: int = 8,
        min_frames_per_label: int = 3,
        max_frames_per_label: int = 8,
        noise: float = 0.3,
        **kwargs,
    ):
        super().__init__(input_dim=input_dim, output_dim=num_classes, num_seqs=num_seqs, **kwargs)
        self.label_range = (int(min_labels), int(max_labels))
        self.frame_range = (int(min_frames_per_label), int(max_frames_per_label))
        self.noise = float(noise)
        self.class_means = np.random.RandomState(1234).normal(size=(num_classes, input_dim)).astype(np.float32)

    def generate_seq(self, seq_idx: int) -> DatasetSeq:
        labels = self.random.randint(0, len(self.class_means), size=self.random.randint(*self.label_range) + 1)
        dim = self.class_means.shape[1]
        frames = [np.zeros((self.random.randint(1, 3), dim), np.float32)]
        for label in labels:
            n = self.random.randint(self.frame_range[0], self.frame_range[1] + 1)
            frames.append(np.repeat(self.class_means[label][None], n, axis=0))
            frames.append(np.zeros((self.random.randint(1, 3), dim), np.float32))
        clean = np.concatenate(frames)
        noisy = clean + self.noise * self.random.normal(size=clean.shape)
        return DatasetSeq(seq_idx, noisy.astype(np.float32), labels.astype(np.int32))
