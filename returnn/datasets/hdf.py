"""``HDFDataset``: reads RETURNN HDF files lazily (layout: shared/specs/hdf-format.md).

Only the per-sequence lengths and tags are read up front; frames are read on demand, one slice per
run of consecutive sequences, so a 10 GB file never has to fit into memory. ``cache_byte_size``
keeps recently read sequences (LRU) for datasets that are read again in later epochs.
"""

from __future__ import annotations

import collections
import os
from typing import Any, Sequence

import h5py
import numpy as np

from returnn.datasets.base import Dataset, SeqDict, register_dataset
from returnn.datasets.hdf_writer import SimpleHDFWriter  # RETURNN's import path: returnn.datasets.hdf
from returnn.errors import DatasetError
from returnn.log import logger

__all__ = ["HDFDataset", "HDFFile", "SimpleHDFWriter", "decode_hdf_string"]


def decode_hdf_string(value: Any) -> str:
    """RETURNN's string rule: bytes are UTF-8; cut at the first NUL."""
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8")
    return str(value).split("\0", 1)[0]


class HDFFile:
    """One open HDF file: its keys, their columns in ``seqLengths``, dims, dtypes, labels and offsets."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.exists(path):
            raise DatasetError(f"HDFDataset: file {path!r} does not exist")
        try:
            self.h5 = h5py.File(path, "r")
        except OSError as exc:
            raise DatasetError(f"HDFDataset: cannot open {path!r} as an HDF5 file (corrupt or truncated?): {exc}") from None
        self.sources: dict[str, str] = {}  # data key -> HDF dataset path
        self._datasets: dict[str, h5py.Dataset] = {}
        self.columns: dict[str, int] = {}
        self.num_outputs: dict[str, list[int]] = {}
        self.dtypes: dict[str, str] = {}
        self.labels: dict[str, list[str]] = {}
        try:
            self.seq_lens = self._read_seq_lens()
            if len(self.seq_lens) == 0:
                raise DatasetError(f"HDFDataset: file {self.path!r} is empty: it holds no sequences ('seqLengths' has "
                                   f"0 rows); remove it from \"files\" or regenerate it")
            self._describe_keys()
            self.offsets = np.zeros((len(self.seq_lens) + 1, self.seq_lens.shape[1]), dtype=np.int64)
            np.cumsum(self.seq_lens, axis=0, out=self.offsets[1:])
            self._check_sizes()
            self.tags = self._read("seqTags")[...] if "seqTags" in self.h5 else None
        except BaseException:
            self.h5.close()
            raise

    def _read(self, name: str) -> Any:
        """The HDF object ``name``; DatasetError naming the file and key when missing."""
        try:
            return self.h5[name]
        except (KeyError, OSError) as exc:
            raise DatasetError(f"HDFDataset: file {self.path!r}: cannot read {name!r}: {exc}") from None

    def _read_seq_lens(self) -> np.ndarray:
        """``seqLengths`` as int64 (N, C); the legacy 1-D form gives every column the same length."""
        if "seqLengths" not in self.h5:
            raise DatasetError(f"HDFDataset: file {self.path!r} has no 'seqLengths' dataset (not a RETURNN HDF file?)")
        try:
            lens = np.asarray(self._read("seqLengths")[...], dtype=np.int64)
        except OSError as exc:
            raise DatasetError(f"HDFDataset: file {self.path!r}: cannot read 'seqLengths' (truncated?): {exc}") from None
        if lens.ndim == 1:
            lens = np.repeat(lens[:, None], 2, axis=1)
        if lens.ndim != 2 or (lens < 0).any():
            raise DatasetError(f"HDFDataset: file {self.path!r}: 'seqLengths' must be a non-negative (N, C) array")
        return lens

    def _target_keys(self) -> list[str]:
        """Sorted union of ``targets/data`` names and ``targets/size`` attributes; each key needs both."""
        if "targets" not in self.h5:
            return []
        for group in ("targets/data", "targets/size"):
            if group not in self.h5:
                raise DatasetError(f"HDFDataset: file {self.path!r}: group 'targets' exists but {group!r} is missing")
        data_keys, size_keys = set(self.h5["targets/data"]), set(self.h5["targets/size"].attrs)
        for key in sorted(data_keys ^ size_keys):
            missing = "targets/size attribute" if key in data_keys else "targets/data dataset"
            raise DatasetError(f"HDFDataset: file {self.path!r}, key {key!r}: {missing} is missing")
        return sorted(data_keys)

    def _describe_keys(self) -> None:
        """Fill sources, columns, num_outputs, dtypes and labels from the file's layout."""
        targets = self._target_keys()
        has_inputs = "inputs" in self.h5
        if has_inputs:
            if "data" in targets:
                raise DatasetError(f"HDFDataset: file {self.path!r}: target key 'data' clashes with 'inputs'")
            inputs = self._read("inputs")
            self._add_key("data", "inputs", 0)
            if inputs.ndim == 1:
                if "inputPattSize" not in self.h5.attrs:
                    raise DatasetError(f"HDFDataset: file {self.path!r}: sparse 'inputs' needs the root attribute 'inputPattSize'")
                self.num_outputs["data"] = [int(self.h5.attrs["inputPattSize"]), 1]
            else:
                self.num_outputs["data"] = [int(inputs.shape[1]), inputs.ndim]
            if "labels" in self.h5:
                self.labels["data"] = [decode_hdf_string(s) for s in self.h5["labels"][...]]
        first = 1 if has_inputs else 0
        for i, key in enumerate(targets):
            self._add_key(key, f"targets/data/{key}", first + i)
            size = np.asarray(self.h5["targets/size"].attrs[key]).reshape(-1)
            ndim = int(size[1]) if len(size) >= 2 else self.h5[f"targets/data/{key}"].ndim
            self.num_outputs[key] = [int(size[0]), ndim]
            if "targets/labels" in self.h5 and key in self.h5["targets/labels"]:
                self.labels[key] = [decode_hdf_string(s) for s in self.h5[f"targets/labels/{key}"][...]]
        if not targets and "targetClasses" in self.h5:  # 2015 layout: root labels are those of the classes
            self._add_key("classes", "targetClasses", 1 if has_inputs else 0)
            self.num_outputs["classes"] = [int(self.h5.attrs.get("numLabels", 0)), 1]
            if "data" in self.labels:
                self.labels["classes"] = self.labels.pop("data")
        if not self.sources:
            raise DatasetError(f"HDFDataset: file {self.path!r} has neither 'inputs' nor 'targets' data")

    def _add_key(self, key: str, source: str, column: int) -> None:
        """Register data key ``key`` stored at ``source`` with lengths in ``seqLengths`` column ``column``."""
        if column >= self.seq_lens.shape[1]:
            raise DatasetError(
                f"HDFDataset: file {self.path!r}, key {key!r}: 'seqLengths' has {self.seq_lens.shape[1]} columns, "
                f"needs column {column}"
            )
        self.sources[key] = source
        self.columns[key] = column
        self.dtypes[key] = str(self._read(source).dtype)

    def _check_sizes(self) -> None:
        """Each key's dataset must hold exactly the frames ``seqLengths`` promises."""
        for key, source in self.sources.items():
            want, have = int(self.offsets[-1, self.columns[key]]), int(self.h5[source].shape[0])
            if want != have:
                raise DatasetError(
                    f"HDFDataset: file {self.path!r}, key {key!r}: 'seqLengths' sums to {want} frames but {source!r} "
                    f"has {have} rows (truncated or inconsistent file)"
                )

    @property
    def num_seqs(self) -> int:
        """Number of sequences in this file."""
        return len(self.seq_lens)

    def tag(self, local_idx: int) -> str | None:
        """Tag of a sequence of this file (None without ``seqTags``)."""
        return None if self.tags is None else decode_hdf_string(self.tags[local_idx])

    def read_seqs(self, local: np.ndarray, keys: Sequence[str]) -> list[SeqDict]:
        """Sequences ``local`` (sorted, unique) of this file; consecutive ones are read together."""
        out: list[SeqDict] = [{} for _ in local]
        for key in keys:
            col = self.columns[key]
            lo, hi = self.offsets[local, col], self.offsets[local + 1, col]
            try:
                block = self._read_ranges(key, lo, hi)
            except (OSError, ValueError, KeyError) as exc:
                raise DatasetError(
                    f"HDFDataset: file {self.path!r}, key {key!r}: reading {len(local)} sequences from "
                    f"frame {int(lo[0])} on failed (corrupt or truncated?): {exc}"
                ) from None
            bounds = np.concatenate([[0], np.cumsum(hi - lo)])
            for i in range(len(local)):
                out[i][key] = block[bounds[i] : bounds[i + 1]]
        return out

    def _read_ranges(self, key: str, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Rows of the ascending, disjoint ranges ``[lo[i], hi[i])``, concatenated; one low-level read per run."""
        dset = self._datasets.get(key)
        if dset is None:
            dset = self._datasets[key] = self.h5[self.sources[key]]
        frame_shape = dset.shape[1:]
        out = np.empty((int((hi - lo).sum()),) + frame_shape, dtype=dset.dtype)
        keep = hi > lo
        lo, hi = lo[keep], hi[keep]
        first = np.concatenate([[True], lo[1:] != hi[:-1]]) if len(lo) else lo  # merge touching ranges
        last = np.concatenate([first[1:], [True]]) if len(lo) else lo
        tail = (0,) * len(frame_shape)
        pos = 0
        for a, b in zip(lo[first].tolist(), hi[last].tolist()):
            file_space = dset.id.get_space()
            file_space.select_hyperslab((a,) + tail, (b - a,) + frame_shape)
            dset.id.read(h5py.h5s.create_simple((b - a,) + frame_shape), file_space, out[pos : pos + b - a])
            pos += b - a
        return out

    def close(self) -> None:
        """Close the HDF handle."""
        self.h5.close()


def _open_file(path: str) -> HDFFile:
    """Open and check one file; unexpected HDF5 errors become a DatasetError naming the file."""
    try:
        return HDFFile(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"HDFDataset: file {path!r} is corrupt or not in RETURNN's HDF layout: {exc}") from None


@register_dataset
class HDFDataset(Dataset):
    """RETURNN HDF files (one or many, concatenated in order), read lazily.

    Config: ``{"class": "HDFDataset", "files": ["a.hdf", "b.hdf"], "cache_byte_size": 0}``
    """

    def __init__(self, files: str | Sequence[str] = (), cache_byte_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        paths = [files] if isinstance(files, str) else list(files)
        if not paths:
            raise DatasetError("HDFDataset: option \"files\" must name at least one HDF file")
        self.files: list[HDFFile] = []
        for path in paths:
            self._add_file(_open_file(str(path)))
        self._file_starts = np.cumsum([0] + [f.num_seqs for f in self.files])
        self.cache_byte_size = int(cache_byte_size or 0)
        self._lru: collections.OrderedDict[int, SeqDict] = collections.OrderedDict()
        self._lru_bytes = 0

    def _add_file(self, new: HDFFile) -> None:
        """Append a file; its keys, dims and dtypes must match the first file's (extra keys are dropped)."""
        if not self.files:
            self.num_outputs, self._dtypes = dict(new.num_outputs), dict(new.dtypes)
            self.labels = dict(new.labels)
        else:
            first = self.files[0]
            for key in self.num_outputs:
                if key not in new.num_outputs:
                    raise DatasetError(f"HDFDataset: file {new.path!r} lacks key {key!r}, which {first.path!r} has")
                if new.num_outputs[key] != self.num_outputs[key] or new.dtypes[key] != self._dtypes[key]:
                    raise DatasetError(
                        f"HDFDataset: file {new.path!r}, key {key!r}: dim/ndim {new.num_outputs[key]} dtype "
                        f"{new.dtypes[key]} differ from {first.path!r}: {self.num_outputs[key]} {self._dtypes[key]}"
                    )
            extra = sorted(set(new.num_outputs) - set(self.num_outputs))
            if extra:
                logger.warning("HDFDataset: file %r: ignoring keys %s that %r lacks", new.path, extra, first.path)
            for key, labels in new.labels.items():
                self.labels.setdefault(key, labels)
        self.files.append(new)

    def _num_corpus_seqs(self) -> int:
        return int(self._file_starts[-1])

    def _locate(self, corpus_idx: int) -> tuple[HDFFile, int]:
        """File and local index of a corpus sequence."""
        j = int(np.searchsorted(self._file_starts, corpus_idx, side="right")) - 1
        return self.files[j], corpus_idx - int(self._file_starts[j])

    def _corpus_tag(self, corpus_idx: int) -> str:
        f, local = self._locate(corpus_idx)
        tag = f.tag(local)
        return tag if tag is not None else f"seq-{corpus_idx}"

    def _corpus_seq_lens(self, corpus_idx: int) -> dict[str, int]:
        f, local = self._locate(corpus_idx)
        row = f.seq_lens[local]
        return {key: int(row[f.columns[key]]) for key in self.num_outputs}

    def _corpus_file(self, corpus_idx: int, key: str) -> str | None:
        return self._locate(corpus_idx)[0].path

    def _load_corpus_seq(self, corpus_idx: int) -> SeqDict:
        return self._load_corpus_seqs([corpus_idx])[0]

    def _load_corpus_seqs(self, corpus_indices: Sequence[int]) -> list[SeqDict]:
        """Read the sequences of each file with one HDF5 read per key."""
        result: dict[int, SeqDict] = {i: self._lru[i] for i in corpus_indices if i in self._lru}
        todo = np.array(sorted({int(i) for i in corpus_indices if i not in result}), dtype=np.int64)
        keys = list(self.num_outputs)
        file_idx = np.searchsorted(self._file_starts, todo, side="right") - 1
        for j in np.unique(file_idx).tolist():
            corpus = todo[file_idx == j]
            for idx, seq in zip(corpus.tolist(), self.files[j].read_seqs(corpus - int(self._file_starts[j]), keys)):
                result[idx] = seq
                self._remember(idx, seq)
        return [result[int(i)] for i in corpus_indices]

    def _remember(self, corpus_idx: int, seq: SeqDict) -> None:
        """Keep a sequence in the LRU cache within ``cache_byte_size``."""
        if self.cache_byte_size <= 0:
            return
        seq = {k: np.array(v) for k, v in seq.items()}  # own memory, not a view of a larger block
        self._lru[corpus_idx] = seq
        self._lru_bytes += sum(v.nbytes for v in seq.values())
        while self._lru_bytes > self.cache_byte_size and self._lru:
            _, old = self._lru.popitem(last=False)
            self._lru_bytes -= sum(v.nbytes for v in old.values())

    def get_all_tags(self) -> list[str]:
        """Tags of all files, in file order."""
        return [self._corpus_tag(i) for i in range(self._num_corpus_seqs())]

    def close(self) -> None:
        """Close all files."""
        for f in self.files:
            f.close()
