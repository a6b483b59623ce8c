"""Datasets made of datasets: ``MetaDataset`` (keys of several datasets joined by sequence tag) and
``ConcatDataset`` (one after the other). Any dataset can be filtered by tags with ``seq_list_filter_file``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from returnn.datasets.base import Dataset, SeqDict, init_dataset, register_dataset
from returnn.datasets.text_files import read_text_lines
from returnn.errors import DatasetError


def _load_sub(ds: Dataset, corpus_indices: Sequence[int]) -> list[SeqDict]:
    """Sequences of a sub-dataset by corpus index, with its own post-processing (``window``)."""
    return [ds._postprocess(seq) for seq in ds._load_corpus_seqs(corpus_indices)]


@register_dataset
class MetaDataset(Dataset):
    """Joins data keys of several datasets by sequence tag.

    Config::

        {"class": "MetaDataset",
         "datasets": {"audio": {"class": "HDFDataset", "files": ["a.hdf"]}, "text": {...}},
         "data_map": {"data": ("audio", "data"), "classes": ("text", "classes")},
         "seq_order_control_dataset": "audio"}

    The sequence list and (unless this dataset sets ``seq_ordering`` itself) the order come from the control
    dataset; every other dataset must have each tag. ``seq_list_file`` restricts the tags.
    """

    def __init__(
        self,
        datasets: dict[str, Any],
        data_map: dict[str, Sequence[str]],
        seq_order_control_dataset: str | None = None,
        seq_list_file: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not datasets or not data_map:
            raise DatasetError("MetaDataset: \"datasets\" and \"data_map\" must be non-empty dicts")
        self.datasets = {name: init_dataset(spec) for name, spec in datasets.items()}
        self.data_map = {}
        for out_key, entry in data_map.items():
            if not isinstance(entry, (list, tuple)) or len(entry) != 2 or entry[0] not in self.datasets:
                raise DatasetError(f"MetaDataset: data_map[{out_key!r}] = {entry!r}; expected (dataset name, key) "
                                   f"with a name among {sorted(self.datasets)}")
            name, key = entry
            sub = self.datasets[name]
            sub._check_key(key)
            self.data_map[out_key] = (name, key)
            self.num_outputs[out_key] = list(sub.num_outputs[key])
            self._dtypes[out_key] = sub.get_data_dtype(key)
            if key in sub.labels:
                self.labels[out_key] = sub.labels[key]
        default_control = self.data_map["data"][0] if "data" in self.data_map else sorted(self.datasets)[0]
        self.control_name = seq_order_control_dataset or default_control
        if self.control_name not in self.datasets:
            raise DatasetError(f"MetaDataset: seq_order_control_dataset {self.control_name!r} is not among {sorted(self.datasets)}")
        self._build_index(seq_list_file)

    def _build_index(self, seq_list_file: str | None) -> None:
        """Tags of the control dataset (restricted to ``seq_list_file``) and their corpus index in each dataset."""
        control = self.datasets[self.control_name]
        control_idx = control._allowed_corpus_indices()
        if seq_list_file is not None:
            wanted = set(read_text_lines(seq_list_file))
            control_idx = np.array([i for i in control_idx if control._corpus_tag(int(i)) in wanted], dtype=np.int64)
        self._tags = [control._corpus_tag(int(i)) for i in control_idx]
        self._position = {int(c): pos for pos, c in enumerate(control_idx)}
        self._sub_idx = {}
        for name, ds in self.datasets.items():
            try:
                self._sub_idx[name] = control_idx if name == self.control_name else ds.corpus_indices_for_tags(self._tags)
            except DatasetError as exc:
                raise DatasetError(f"MetaDataset: dataset {name!r} lacks a tag of {self.control_name!r}: {exc}") from None

    def init_seq_order(self, epoch: int | None = None, seq_list=None, seq_order=None) -> bool:
        """Start the epoch in every sub-dataset too (generated data depends on it), then order."""
        for ds in self.datasets.values():
            ds.init_seq_order(epoch)
        return super().init_seq_order(epoch, seq_list=seq_list, seq_order=seq_order)

    def _num_corpus_seqs(self) -> int:
        return len(self._tags)

    def _corpus_tag(self, corpus_idx: int) -> str:
        return self._tags[corpus_idx]

    def _full_epoch_order(self, epoch: int) -> np.ndarray:
        """The control dataset's order (this dataset's own ``seq_ordering`` if not "default")."""
        control = self.datasets[self.control_name]
        if self.seq_ordering != "default" or control.seq_ordering == "default":
            return super()._full_epoch_order(epoch)
        order = [self._position[int(c)] for c in control._full_epoch_order(epoch) if int(c) in self._position]
        allowed = set(self._allowed_corpus_indices().tolist())
        return np.array([p for p in order if p in allowed], dtype=np.int64)

    def _corpus_seq_lens(self, corpus_idx: int) -> dict[str, int]:
        lens = {}
        for out_key, (name, key) in self.data_map.items():
            lens[out_key] = self.datasets[name]._corpus_seq_lens(int(self._sub_idx[name][corpus_idx]))[key]
        return lens

    def _corpus_file(self, corpus_idx: int, key: str) -> str | None:
        name, sub_key = self.data_map[key]
        return self.datasets[name]._corpus_file(int(self._sub_idx[name][corpus_idx]), sub_key)

    def _load_corpus_seq(self, corpus_idx: int) -> SeqDict:
        return self._load_corpus_seqs([corpus_idx])[0]

    def _load_corpus_seqs(self, corpus_indices: Sequence[int]) -> list[SeqDict]:
        """One bulk read per sub-dataset."""
        out: list[SeqDict] = [{} for _ in corpus_indices]
        for name, ds in self.datasets.items():
            keys = [(o, k) for o, (n, k) in self.data_map.items() if n == name]
            if not keys:
                continue
            for seq, sub_seq in zip(out, _load_sub(ds, [int(self._sub_idx[name][i]) for i in corpus_indices])):
                seq.update({o: sub_seq[k] for o, k in keys})
        return out


@register_dataset
class ConcatDataset(Dataset):
    """Sequences of several datasets with the same keys, one dataset after the other.

    Config: ``{"class": "ConcatDataset", "datasets": [{"class": "HDFDataset", ...}, "b.hdf"]}``. With the default
    ``seq_ordering`` each part keeps its own order; any other ordering applies to all sequences together.
    """

    def __init__(self, datasets: Sequence[Any], **kwargs):
        super().__init__(**kwargs)
        if not datasets:
            raise DatasetError("ConcatDataset: \"datasets\" must be a non-empty list")
        self.datasets = [init_dataset(spec) for spec in datasets]
        first = self.datasets[0]
        for i, ds in enumerate(self.datasets[1:], start=1):
            if ds.get_data_keys() != first.get_data_keys():
                raise DatasetError(f"ConcatDataset: datasets[{i}] has keys {ds.get_data_keys()}, datasets[0] has {first.get_data_keys()}")
            for key in first.get_data_keys():
                if ds.num_outputs[key] != first.num_outputs[key]:
                    raise DatasetError(f"ConcatDataset: datasets[{i}] key {key!r}: dim {ds.num_outputs[key]}, "
                                       f"datasets[0] has {first.num_outputs[key]}")
        self.num_outputs = {k: list(v) for k, v in first.num_outputs.items()}
        self._dtypes = {k: first.get_data_dtype(k) for k in first.get_data_keys()}
        self.labels = dict(first.labels)
        self._starts = np.cumsum([0] + [ds._num_corpus_seqs() for ds in self.datasets])

    def init_seq_order(self, epoch: int | None = None, seq_list=None, seq_order=None) -> bool:
        """Start the epoch in every sub-dataset too (generated data depends on it), then order."""
        for ds in self.datasets:
            ds.init_seq_order(epoch)
        return super().init_seq_order(epoch, seq_list=seq_list, seq_order=seq_order)

    def _num_corpus_seqs(self) -> int:
        return int(self._starts[-1])

    def _locate(self, corpus_idx: int) -> tuple[Dataset, int]:
        """Sub-dataset and its corpus index."""
        j = int(np.searchsorted(self._starts, corpus_idx, side="right")) - 1
        return self.datasets[j], corpus_idx - int(self._starts[j])

    def _corpus_tag(self, corpus_idx: int) -> str:
        ds, local = self._locate(corpus_idx)
        return ds._corpus_tag(local)

    def _corpus_seq_lens(self, corpus_idx: int) -> dict[str, int]:
        ds, local = self._locate(corpus_idx)
        return ds._corpus_seq_lens(local)

    def _corpus_file(self, corpus_idx: int, key: str) -> str | None:
        ds, local = self._locate(corpus_idx)
        return ds._corpus_file(local, key)

    def _load_corpus_seq(self, corpus_idx: int) -> SeqDict:
        ds, local = self._locate(corpus_idx)
        return _load_sub(ds, [local])[0]

    def _full_epoch_order(self, epoch: int) -> np.ndarray:
        """Each part in its own order (default), else this dataset's ordering over all parts."""
        if self.seq_ordering != "default":
            return super()._full_epoch_order(epoch)
        allowed = set(self._allowed_corpus_indices().tolist())
        parts = [ds._full_epoch_order(epoch) + start for ds, start in zip(self.datasets, self._starts)]
        return np.array([i for i in np.concatenate(parts) if int(i) in allowed], dtype=np.int64)
