"""Cheap checks of a padded batch where data enters: sparse labels in ``[0, dim)``, dense floats finite.

Without them a label out of range surfaces as a TensorFlow gather error naming nothing, and a NaN in
the features as a non-finite training loss. Both checks are vectorized over the padded batch array
(padding is zero, which passes both); only a batch that fails is searched for the sequence and frame.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from returnn.datasets.base import Dataset
from returnn.datasets.chunking import SeqSlice
from returnn.errors import DatasetError


def check_batch_array(dataset: Dataset, key: str, data: np.ndarray, plan: Sequence[SeqSlice]) -> None:
    """DatasetError naming dataset, file, sequence tag, key and value if ``data`` [B, T, ...] of ``key`` is bad."""
    if data.size == 0:
        return
    if dataset.is_data_sparse(key):
        dim = dataset.get_data_dim(key)
        if dim > 0 and (data.min() < 0 or data.max() >= dim):
            _raise_first_bad(dataset, key, data, plan, (data < 0) | (data >= dim),
                             f"class index {{value}} is out of range [0, {dim}) (the sparse dim of {key!r})")
    elif data.dtype.kind == "f" and not np.isfinite(data).all():
        _raise_first_bad(dataset, key, data, plan, ~np.isfinite(data),
                         "value {value} is not finite; input features must be finite (a data problem, not a learning-rate one)")


def _raise_first_bad(dataset: Dataset, key: str, data: np.ndarray, plan: Sequence[SeqSlice], bad: np.ndarray,
                     what: str) -> None:
    """Raise for the first bad entry of ``bad`` (same shape as ``data``)."""
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    seq, frame = index[0], index[1] + plan[index[0]].start[key]
    where = f"dataset {dataset.name!r}"
    path = dataset.get_seq_file(plan[seq].seq_idx, key)
    if path is not None:
        where += f", file {path!r}"
    feature = f", feature {index[2]}" if len(index) > 2 else ""
    raise DatasetError(f"{where}, sequence {dataset.get_tag(plan[seq].seq_idx)!r}, key {key!r}, frame {frame}{feature}: "
                       + what.format(value=data[index].item()))
