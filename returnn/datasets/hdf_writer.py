"""``SimpleHDFWriter`` (RETURNN's API and layout) and ``dump_dataset`` (what tools/hdf_dump.py runs).

The file is written under a temporary name and renamed into place by ``close()``; a failure or a
kill leaves no half-written file behind. Sequences are buffered and appended in large blocks.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Sequence

import h5py
import numpy as np

from returnn.datasets.base import Dataset
from returnn.errors import DatasetError
from returnn.util.atomic import atomic_path

_FLUSH_BYTES = 32 * 1024 * 1024
_CHUNK_BYTES = 65536  # HDF5 chunk size: whole frames, so a sequence is read from few chunks


def _string_dataset(group: h5py.Group, name: str, values: Sequence[str]) -> None:
    """Labels as vlen UTF-8 strings; an empty list as an empty ``S5`` dataset (as SimpleHDFWriter)."""
    if not values:
        group.create_dataset(name, shape=(0,), dtype="S5")
    else:
        group.create_dataset(name, data=np.array(list(values), dtype=object), dtype=h5py.string_dtype("utf-8"))


class SimpleHDFWriter:
    """Writes sequences into a RETURNN HDF file: dense ``inputs`` [T, dim] (ndim 2) or sparse [T] (ndim 1), plus extras.

    ``extra_type = {key: (dim, ndim, dtype)}`` predeclares target keys (needed for the right sparse dim).
    """

    def __init__(
        self,
        filename: str,
        dim: int | None,
        labels: Sequence[str] | None = None,
        ndim: int | None = None,
        extra_type: dict[str, tuple] | None = None,
        extra_labels: dict[str, Sequence[str]] | None = None,
    ):
        self.filename = filename
        if os.path.exists(filename):
            raise DatasetError(f"SimpleHDFWriter: file {filename!r} exists already; remove it first")
        self.dim = dim
        self.ndim = ndim if ndim is not None else (2 if dim is not None else 1)
        self._stack = contextlib.ExitStack()
        self._tmp_path = self._stack.enter_context(atomic_path(filename))
        self._file = h5py.File(self._tmp_path, "w")
        for attr in ("inputPattSize", "numLabels"):
            self._file.attrs[attr] = dim or 1
        for attr, value in (("numSeqs", 0), ("numTimesteps", 0), ("numDims", 1)):
            self._file.attrs[attr] = value
        if labels or self.ndim == 1:  # dense inputs without labels: no entry, as RETURNN's HDFDatasetWriter (its tools
            _string_dataset(self._file, "labels", list(labels or []))  # index a "data" label list with the frames)
        self._file.create_dataset("seqLengths", shape=(0, 2), maxshape=(None, None), dtype="int32")
        self._file.create_dataset("seqTags", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"))
        self._buffer: dict[str, list[np.ndarray]] = {}
        self._buffer_tags: list[str] = []
        self._buffer_lens: list[list[int]] = []
        self._buffer_bytes = 0
        self._num_seqs = 0
        self._closed = False
        self._extra: dict[str, tuple[int, int, str | None]] = {}
        self._extra_labels = dict(extra_labels or {})
        for key, (e_dim, e_ndim, e_dtype) in (extra_type or {}).items():
            self._declare_extra(key, e_dim, e_ndim, e_dtype)

    def _declare_extra(self, key: str, dim: int | None, ndim: int, dtype: str | None) -> None:
        """Create ``targets/size`` and ``targets/labels`` entries for an extra key."""
        if key == "data":
            raise DatasetError("SimpleHDFWriter: extra key 'data' clashes with the inputs")
        if self._num_seqs or self._buffer_tags:
            raise DatasetError(f"SimpleHDFWriter {self.filename!r}: extra key {key!r} must appear with the first sequence")
        ndim = max(int(ndim), 1)
        if ndim > 2:
            raise DatasetError(f"SimpleHDFWriter: extra key {key!r}: ndim must be 1 or 2, got {ndim}")
        targets = self._file.require_group("targets")
        for name in ("data", "size", "labels"):
            targets.require_group(name)
        targets["size"].attrs[key] = np.array([dim or 1, ndim], dtype=np.int64)
        _string_dataset(targets["labels"], key, list(self._extra_labels.get(key) or ["dummy-label"]))
        self._extra[key] = (dim or 1, ndim, dtype)

    def insert_batch(self, inputs: np.ndarray, seq_len: Sequence[int], seq_tag: Sequence[str], extra: dict | None = None) -> None:
        """Append sequences: ``inputs[i][:seq_len[i]]``, and ``extra[key][i]`` in full."""
        if isinstance(seq_len, dict):
            raise DatasetError("SimpleHDFWriter: several dynamic axes (seq_len as a dict) are not supported")
        extra = extra or {}
        for key in sorted(extra):
            if key not in self._extra:
                sample = np.asarray(extra[key][0])
                self._declare_extra(key, sample.shape[-1] if sample.ndim >= 2 else 1, sample.ndim, str(sample.dtype))
        missing = sorted(set(self._extra) - set(extra))
        if missing:
            raise DatasetError(f"SimpleHDFWriter {self.filename!r}: insert_batch lacks the declared extra keys {missing}")
        for i, tag in enumerate(seq_tag):
            x = np.asarray(inputs[i])[: int(seq_len[i])]
            row = [len(x)] + [len(np.asarray(extra[key][i])) for key in sorted(self._extra)]
            self._append("inputs", x)
            for key in sorted(self._extra):
                self._append(f"targets/data/{key}", np.asarray(extra[key][i]))
            self._buffer_tags.append(str(tag))
            self._buffer_lens.append(row if self._extra else row + [0])
        if self._buffer_bytes >= _FLUSH_BYTES:
            self.flush()

    def _append(self, name: str, array: np.ndarray) -> None:
        """Buffer one sequence's frames for dataset ``name``."""
        self._buffer.setdefault(name, []).append(array)
        self._buffer_bytes += array.nbytes

    def _extend(self, name: str, block: np.ndarray, dtype: Any) -> None:
        """Append ``block`` along the first axis of dataset ``name`` (created on first use)."""
        if name not in self._file:
            frame_shape = block.shape[1:]
            row_bytes = max(int(np.prod(frame_shape, dtype=np.int64)) * np.dtype(dtype).itemsize, 1) if name != "seqTags" else 16
            chunk_rows = max(1, min(_CHUNK_BYTES // row_bytes, 1 << 16))  # whole frames, about 64 KiB
            self._file.create_dataset(name, shape=(0,) + frame_shape, maxshape=(None,) + frame_shape, dtype=dtype,
                                      chunks=(chunk_rows,) + frame_shape)
        ds = self._file[name]
        if ds.shape[1:] != block.shape[1:]:
            raise DatasetError(f"SimpleHDFWriter {self.filename!r}: {name!r} frames of shape {block.shape[1:]}, expected {ds.shape[1:]}")
        old = ds.shape[0]
        ds.resize(old + len(block), axis=0)
        ds[old:] = block

    def flush(self) -> None:
        """Write the buffered sequences into the file."""
        if not self._buffer_tags:
            return
        for name, arrays in self._buffer.items():
            key = name.rsplit("/", 1)[-1]
            dtype = self._extra[key][2] if name != "inputs" and self._extra[key][2] else arrays[0].dtype
            self._extend(name, np.concatenate(arrays).astype(dtype, copy=False), dtype)
        lens = np.array(self._buffer_lens, dtype=np.int32)
        seq_lens = self._file["seqLengths"]
        if seq_lens.shape[1] != lens.shape[1]:
            seq_lens.resize(lens.shape[1], axis=1)
        self._extend("seqLengths", lens, "int32")
        self._extend("seqTags", np.array(self._buffer_tags, dtype=object), h5py.string_dtype("utf-8"))
        self._num_seqs += len(self._buffer_tags)
        self._file.attrs["numSeqs"] = self._num_seqs
        self._file.attrs["numTimesteps"] = int(self._file.attrs["numTimesteps"]) + int(lens[:, 0].sum())
        self._buffer, self._buffer_tags, self._buffer_lens, self._buffer_bytes = {}, [], [], 0

    def close(self) -> None:
        """Flush, close and move the file into place."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            self._file.close()
        except BaseException as exc:
            self._file.close()
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack.close()

    def abort(self) -> None:
        """Close and delete the temporary file; nothing appears at ``filename``."""
        if self._closed:
            return
        self._closed = True
        self._file.close()
        err = DatasetError(f"SimpleHDFWriter {self.filename!r}: aborted")
        with contextlib.suppress(DatasetError):
            self._stack.__exit__(DatasetError, err, None)

    def __enter__(self) -> SimpleHDFWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def dump_dataset(
    dataset: Dataset,
    filename: str,
    *,
    epoch: int = 1,
    start_seq: int = 0,
    end_seq: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the sequences ``[start_seq, end_seq)`` of ``epoch`` to a RETURNN HDF file; returns their count."""
    keys = [k for k in dataset.get_data_keys() if k not in ("orth", "raw")]
    if "data" not in keys:
        raise DatasetError(f"dump to {filename!r}: dataset {dataset.name!r} has no key 'data' (keys: {keys})")
    dataset.init_seq_order(epoch=epoch)
    end = dataset.num_seqs if end_seq is None or end_seq < 0 else min(end_seq, dataset.num_seqs)
    extra_type = {k: (dataset.get_data_dim(k), dataset.num_outputs[k][1], dataset.get_data_dtype(k)) for k in keys if k != "data"}
    sparse = dataset.is_data_sparse("data") or dataset.num_outputs["data"][1] <= 1
    with SimpleHDFWriter(
        filename,
        dim=dataset.get_data_dim("data"),
        ndim=1 if sparse else 2,
        labels=dataset.labels.get("data"),
        extra_type=extra_type,
        extra_labels={k: v for k, v in dataset.labels.items() if k != "data"},
    ) as writer:
        for seq_idx in range(start_seq, end):
            dataset.load_seqs(seq_idx, seq_idx + 1)
            x = dataset.get_data(seq_idx, "data")
            extra = {k: [dataset.get_data(seq_idx, k)] for k in extra_type}
            writer.insert_batch(x[None], [len(x)], [dataset.get_tag(seq_idx)], extra=extra)
            if progress is not None:
                progress(seq_idx - start_seq + 1, end - start_seq)
    return max(end - start_seq, 0)
